import Foundation
import Testing
import TestSupport
@testable import ReIDData

/// The message of the error `body` throws ("" when it throws none).
private func failure(_ body: () throws -> Any) -> String {
    do { _ = try body(); return "" } catch { return "\(error)" }
}

private func write(_ text: String, to path: String) {
    try! FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
    try! Data(text.utf8).write(to: URL(fileURLWithPath: path))
}

// MARK: - The list-file parsers, line by line

@Suite struct ListFileParserTests {
    @Test func readsListLinesWithCommentsBlanksTabsAndWindowsLineEnds() throws {
        let text = "\u{FEFF}# path pid camid split\r\n\nimages/a.jpg 7 0 train\r\n  images/b.jpg\t7\t1\ttrain  \n./c.jpg 3 2 query\ngallery/d.jpg -1 2 gallery\nc.jpg 3 2 gallery\n"
        let entries = try parseImageList(Data(text.utf8), file: "list.txt")
        #expect(entries == [
            ImageListEntry(path: "images/a.jpg", pid: 7, camera: 0, split: .train, line: 3),
            ImageListEntry(path: "images/b.jpg", pid: 7, camera: 1, split: .train, line: 4),
            ImageListEntry(path: "c.jpg", pid: 3, camera: 2, split: .query, line: 5),
            ImageListEntry(path: "gallery/d.jpg", pid: -1, camera: 2, split: .gallery, line: 6),
            ImageListEntry(path: "c.jpg", pid: 3, camera: 2, split: .gallery, line: 7),   // query image also in the gallery
        ])
        #expect(try parseImageList(Data(), file: "empty.txt").isEmpty)
    }

    /// Every hostile line gets one error naming the file and the line, and what is wrong.
    @Test func hostileListLinesAreClearErrors() {
        let good = "ok/a.jpg 1 0 train\n"
        let cases: [(line: String, expect: String)] = [
            ("x.jpg 1 0", "expected 4 fields"),
            ("x.jpg 1 0 train extra", "expected 4 fields"),
            ("/etc/passwd 1 0 train", "absolute path"),
            ("../outside.jpg 1 0 train", "leaves the dataset folder"),
            ("a/../../outside.jpg 1 0 train", "leaves the dataset folder"),
            ("a/b/.. 1 0 train", "leaves the dataset folder"),
            ("./. 1 0 train", "names no file"),
            ("x.jpg 1.5 0 train", "pid '1.5' is not an integer"),
            ("x.jpg 0x10 0 train", "not an integer"),
            ("x.jpg +3 0 train", "not an integer"),
            ("x.jpg - 0 train", "not an integer"),
            ("x.jpg 99999999999 0 train", "not an integer"),
            ("x.jpg 2147483648 0 train", "pid 2147483648 is out of range"),
            ("x.jpg -2 0 train", "pid -2 is out of range"),
            ("x.jpg 1 -1 train", "camid -1 is out of range"),
            ("x.jpg 1 c1 train", "camid 'c1' is not an integer"),
            ("x.jpg 1 0 val", "split 'val' is not one of train, query, gallery"),
            ("x.jpg 1 0 Train", "split 'Train'"),
            ("ok/a.jpg 1 0 train", "ok/a.jpg is already listed in train at line 1"),
            ("./ok//a.jpg 1 0 train", "ok/a.jpg is already listed in train at line 1"),
            ("ok/a.jpg 2 0 gallery", "has pid 2 camid 0 here but pid 1 camid 0 at line 1"),
            ("x.jpg\u{0}y 1 0 train", "control character U+0000"),
            ("x.jpg 1 0 train\u{1B}", "control character U+001B"),
            (String(repeating: "a/", count: 3000) + "x.jpg 1 0 train", "longer than 4096"),
        ]
        for c in cases {
            let message = failure { try parseImageList(Data((good + c.line + "\n").utf8), file: "data/list.txt") }
            #expect(message.hasPrefix("data/list.txt line 2: "), "\(c.line) -> \(message)")
            #expect(message.contains(c.expect), "\(c.line) -> \(message)")
        }
        // Bytes that are not UTF-8, on line 3.
        var bytes = Data((good + "# fine\n").utf8)
        bytes.append(contentsOf: [0x78, 0xFF, 0xFE, 0x20, 0x31, 0x20, 0x30, 0x20, 0x74, 0x72, 0x61, 0x69, 0x6E])
        #expect(failure { try parseImageList(bytes, file: "l.txt") } == "l.txt line 3: not UTF-8 text")
    }

    @Test func readsMSMT17ListsAndTheirCameras() throws {
        let text = "0000/0000_000_01_0303morning_0015_0.jpg 0\n0000/0000_001_15_0303noon_0016_0.jpg 0\n1040/1040_007_03_0113afternoon_0502_1.jpg 1040\n"
        let entries = try parseMSMT17List(Data(text.utf8), file: "list_train.txt")
        #expect(entries.map(\.camera) == [1, 15, 3])
        #expect(entries.map(\.pid) == [0, 0, 1040])
        #expect(entries[2] == MSMT17Entry(path: "1040/1040_007_03_0113afternoon_0502_1.jpg", pid: 1040, camera: 3, line: 3))
        #expect(msmt17Camera(fileName: "0000_000_00_x_1_0.jpg") == nil)   // cameras count from 1
        #expect(msmt17Camera(fileName: "0000_000_1a_x_1_0.jpg") == nil)
        #expect(msmt17Camera(fileName: "0000_c1s1_000451_03.jpg") == nil) // a Market name
    }

    @Test func hostileMSMT17LinesAreClearErrors() {
        let good = "0000/0000_000_01_0303morning_0015_0.jpg 0\n"
        let cases: [(line: String, expect: String)] = [
            ("0000/0000_001_01_0303morning_0016_0.jpg", "expected 2 fields 'path pid', found 1"),
            ("0000/0000_001_01_0303morning_0016_0.jpg 0 1", "found 3"),
            ("0000/0000_001_01_0303morning_0016_0.jpg -1", "pid -1 is out of range"),
            ("0000/0000_001_01_0303morning_0016_0.jpg zero", "not an integer"),
            ("0000/0000_001_0303morning.jpg 0", "no camera in the name"),
            ("0000/0000_001_00_0303morning_0016_0.jpg 0", "no camera in the name"),
            ("../0000_001_01_0303morning_0016_0.jpg 0", "leaves the dataset folder"),
            ("/data/0000_001_01_0303morning_0016_0.jpg 0", "absolute path"),
            ("0000/0000_000_01_0303morning_0015_0.jpg 0", "already listed at line 1"),
            ("# 0000/0000_001_01_0303morning_0016_0.jpg 0", "found 3"),   // no comments in MSMT17's lists
        ]
        for c in cases {
            let message = failure { try parseMSMT17List(Data((good + c.line + "\n").utf8), file: "MSMT17_V1/list_val.txt") }
            #expect(message.hasPrefix("MSMT17_V1/list_val.txt line 2: "), "\(c.line) -> \(message)")
            #expect(message.contains(c.expect), "\(c.line) -> \(message)")
        }
    }

    @Test func oversizedAndMissingListFilesAreNamed() throws {
        let dir = SharedFiles.temporaryDirectory("listfile").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        #expect(failure { try readListFile(dir + "/none.txt", what: "x") }.contains("\(dir)/none.txt: missing list file"))
        #expect(failure { try readListFile(dir, what: "x") }.contains("a folder, not a list file"))
        let big = dir + "/big.txt"
        #expect(FileManager.default.createFile(atPath: big, contents: nil))
        let handle = FileHandle(forWritingAtPath: big)!
        try handle.truncate(atOffset: UInt64(maxListFileBytes + 1))   // sparse: no disk used
        try handle.close()
        #expect(failure { try readListFile(big, what: "x") }.contains("more than a list file may hold"))
        // A FIFO would block the reader forever; a link to a regular file is read.
        #expect(mkfifo(dir + "/fifo.txt", 0o644) == 0)
        #expect(failure { try readListFile(dir + "/fifo.txt", what: "x") }.contains("not a regular file"))
        write("a.jpg 1 0 train\n", to: dir + "/real.txt")
        try FileManager.default.createSymbolicLink(atPath: dir + "/link.txt", withDestinationPath: dir + "/real.txt")
        #expect(try readListFile(dir + "/link.txt", what: "x") == Data("a.jpg 1 0 train\n".utf8))
    }
}

// MARK: - The `list` dataset

/// A small list dataset: train pids 30 and 4, a query and gallery, junk, a
/// missing file, a non-JPEG and a truncated JPEG.
private struct MiniList {
    let root: String
    init(extraLines: String = "") {
        root = SharedFiles.temporaryDirectory("listdata").path
        var seed = 0
        func jpeg(_ path: String) { seed += 1; TestJPEG.write(root + "/" + path, width: 16, height: 32, seed: seed) }
        for n in 0..<3 { jpeg("img/train/30_\(n).jpg"); jpeg("img/train/4_\(n).jpg") }
        jpeg("img/test/q1.jpg"); jpeg("img/test/g1.jpg"); jpeg("img/test/g2.jpg"); jpeg("img/test/junk.jpg")
        write("not a picture", to: root + "/img/test/notes.txt")
        TestJPEG.writeTruncated(root + "/img/test/broken.jpg", seed: 99)
        var lines = "# synthetic\n"
        for n in 0..<3 { lines += "img/train/30_\(n).jpg 30 \(n) train\nimg/train/4_\(n).jpg 4 \(n % 2) train\n" }
        lines += """
            img/test/q1.jpg 0 0 query
            img/test/g1.jpg 0 5 gallery
            img/test/g2.jpg 8 1 gallery
            img/test/junk.jpg -1 1 gallery
            img/test/missing.jpg 8 2 gallery
            img/test/notes.txt 8 2 gallery
            img/test/broken.jpg 8 3 gallery

            """
        write(lines + extraLines, to: root + "/list.txt")
    }
}

@Suite struct ListDatasetTests {
    @Test func loadsAListDatasetFromItsFolderOrItsFile() throws {
        let m = MiniList()
        defer { try? FileManager.default.removeItem(atPath: m.root) }
        let d = try loadDataset(name: "list", root: m.root)
        #expect(d.name == "list" && d.layout == "list file \(m.root)/list.txt")
        #expect(d.train.count == 6 && d.trainClasses == 2)
        // Relabelled by sorted original pid: 4 -> 0, 30 -> 1; cameras as listed.
        for image in d.train.images { #expect(image.pid == [4: 0, 30: 1][image.originalPID]) }
        #expect(d.train.cameraCount == 3)
        #expect(d.query.images.map(\.pid) == [0] && d.query.images[0].path == m.root + "/img/test/q1.jpg")
        // pid 0 is a person here (it matches the query); junk is dropped and not listed.
        #expect(d.gallery.images.map(\.pid) == [0, 8, 8] && d.gallery.images.map(\.camera) == [5, 1, 3])
        #expect(d.skipped.map { ($0.path as NSString).lastPathComponent } == ["missing.jpg", "notes.txt"])
        #expect(d.skipped[0].reason == "listed at \(m.root)/list.txt line 12 but missing")
        #expect(d.skipped[1].reason.contains("not a .jpg file"))
        // The list file itself names the same dataset.
        let same = try loadDataset(name: "list", root: m.root + "/list.txt")
        #expect(same.listingDigest == d.listingDigest)
        // --verify moves the truncated JPEG to skipped.
        let verified = try loadDataset(name: "list", root: m.root, options: DatasetOptions(verify: true))
        #expect(verified.gallery.count == 2 && verified.skipped.count == 3)
        #expect(verified.skipped.contains { $0.path.hasSuffix("broken.jpg") })
    }

    @Test func aBadLineOrAMissingListIsOneErrorNamingIt() throws {
        let m = MiniList(extraLines: "img/test/g1.jpg 9 5 query\n")
        defer { try? FileManager.default.removeItem(atPath: m.root) }
        do { _ = try loadDataset(name: "list", root: m.root); Issue.record("no error") } catch let e as DatasetError {
            #expect(e.message.hasPrefix("\(m.root)/list.txt line 15: img/test/g1.jpg has pid 9 camid 5 here but pid 0 camid 5 at line 9"), "\(e.message)")
        }
        let empty = SharedFiles.temporaryDirectory("nolist").path
        defer { try? FileManager.default.removeItem(atPath: empty) }
        #expect(failure { try loadDataset(name: "list", root: empty) }.hasPrefix("\(empty)/list.txt: missing list file"))
        #expect(failure { try loadDataset(name: "list", root: empty + "/other.txt") }.hasPrefix("\(empty)/other.txt: no such file or folder"))
        // Only query and gallery lines: nothing to train on.
        write("a.jpg 1 0 query\n", to: empty + "/list.txt")
        TestJPEG.write(empty + "/a.jpg")
        #expect(failure { try loadDataset(name: "list", root: empty) }.contains("no usable training identity"))
    }
}

// MARK: - MSMT17

/// A small MSMT17 release (V1 or V2 folder names) under `root/parent/MSMT17_Vn`.
private struct MiniMSMT17 {
    let root: String
    let base: String
    init(version: Int, parent: String = "msmt17") {
        root = SharedFiles.temporaryDirectory("msmt17").path
        base = root + "/" + parent + (parent.isEmpty ? "" : "/") + "MSMT17_V\(version)"
        let (train, test) = version == 1 ? ("train", "test") : ("mask_train_v2", "mask_test_v2")
        var seed = 0, frame = 0
        func list(_ name: String, folder: String, _ items: [(pid: Int, camera: Int)]) {
            var text = ""
            var perPID: [Int: Int] = [:]
            for item in items {
                let n = perPID[item.pid, default: 0]; perPID[item.pid] = n + 1; frame += 1; seed += 1
                let path = String(format: "%04d/%04d_%03d_%02d_0302morning_%04d_0.jpg", item.pid, item.pid, n, item.camera, frame)
                TestJPEG.write(base + "/" + folder + "/" + path, width: 16, height: 32, seed: seed)
                text += "\(path) \(item.pid)\n"
            }
            write(text, to: base + "/list_\(name).txt")
        }
        list("train", folder: train, [(0, 1), (0, 2), (1, 3), (1, 15), (2, 1), (2, 2)])
        list("val", folder: train, [(1, 4), (3, 5), (3, 6)])
        list("query", folder: test, [(0, 1), (1, 2)])
        list("gallery", folder: test, [(0, 3), (1, 3), (1, 4), (2, 7)])
    }
}

@Suite struct MSMT17Tests {
    @Test func loadsV1AndV2WithTheirListsFromTheReleaseOrItsParents() throws {
        for version in [1, 2] {
            let m = MiniMSMT17(version: version)
            defer { try? FileManager.default.removeItem(atPath: m.root) }
            for root in [m.root, m.root + "/msmt17", m.base] {
                let d = try loadDataset(name: "msmt17", root: root)
                #expect(d.name == "msmt17" && d.layout == "MSMT17_V\(version) layout at \(m.base)")
                #expect(d.train.count == 6 && d.trainClasses == 3, "V\(version) from \(root)")
                #expect(d.train.images.map(\.camera) == [0, 1, 2, 14, 0, 1])
                #expect(d.train.images.allSatisfy { $0.path.hasPrefix(m.base + (version == 1 ? "/train/" : "/mask_train_v2/")) })
                #expect(d.query.images.map(\.pid) == [0, 1] && d.query.images.map(\.camera) == [0, 1])
                #expect(d.gallery.images.map(\.pid) == [0, 1, 1, 2] && d.gallery.identityCount == 3)
                #expect(d.gallery.images.allSatisfy { $0.path.hasPrefix(m.base + (version == 1 ? "/test/" : "/mask_test_v2/")) })
                #expect(d.skipped.isEmpty)
            }
            // train + val: val's pid 1 images join pid 1, pid 3 is a new identity.
            let tv = try loadDataset(name: "msmt17-trainval", root: m.root)
            #expect(tv.name == "msmt17-trainval")
            #expect(tv.train.count == 9 && tv.trainClasses == 4)
            #expect(tv.query.count == 2 && tv.gallery.count == 4)
        }
    }

    @Test func missingPiecesAndHostileListsAreClearErrors() throws {
        let m = MiniMSMT17(version: 2, parent: "")
        defer { try? FileManager.default.removeItem(atPath: m.root) }
        let fm = FileManager.default
        // A listed image that is gone is skipped with its list and line.
        let first = try String(contentsOfFile: m.base + "/list_gallery.txt", encoding: .utf8).split(separator: " ")[0]
        try fm.removeItem(atPath: m.base + "/mask_test_v2/" + first)
        let d = try loadDataset(name: "msmt17", root: m.root)
        #expect(d.gallery.count == 3)
        #expect(d.skipped == [SkippedFile(path: m.base + "/mask_test_v2/" + first, reason: "listed at \(m.base)/list_gallery.txt line 1 but missing")])
        // The same image in list_train.txt and list_val.txt: an error naming both.
        let trainLine = try String(contentsOfFile: m.base + "/list_train.txt", encoding: .utf8).split(separator: "\n")[3]
        let val = try String(contentsOfFile: m.base + "/list_val.txt", encoding: .utf8)
        write(val + trainLine + "\n", to: m.base + "/list_val.txt")
        #expect(try loadDataset(name: "msmt17", root: m.root).train.count == 6, "list_val.txt is not read without train+val")
        #expect(failure { try loadDataset(name: "msmt17-trainval", root: m.root) }
            == "\(m.base)/list_val.txt line 4: \(trainLine.split(separator: " ")[0]) is already listed in \(m.base)/list_train.txt at line 4")
        // A hostile line.
        write(val + "../../etc/0000_000_01_x_1_0.jpg 1\n", to: m.base + "/list_val.txt")
        #expect(failure { try loadDataset(name: "msmt17-trainval", root: m.root) }.hasPrefix("\(m.base)/list_val.txt line 4: '../../etc/"))
        // Missing list file, missing folder, no release at all.
        try fm.removeItem(atPath: m.base + "/list_query.txt")
        #expect(failure { try loadDataset(name: "msmt17", root: m.root) } == "\(m.base)/list_query.txt: missing list file (expected MSMT17 'path pid' lines)")
        try fm.removeItem(atPath: m.base + "/mask_test_v2")
        #expect(failure { try loadDataset(name: "msmt17", root: m.root) }.hasPrefix("\(m.base)/mask_test_v2: missing folder"))
        try fm.removeItem(atPath: m.base + "/mask_train_v2")
        #expect(failure { try loadDataset(name: "msmt17", root: m.root) }.contains("neither train/ + test/ (MSMT17_V1) nor mask_train_v2/"))
        try fm.removeItem(atPath: m.base + "/list_train.txt")
        #expect(failure { try loadDataset(name: "msmt17", root: m.root) }.hasPrefix("\(m.root): no MSMT17 release found"))
        #expect(failure { try loadDataset(name: "msmt17", root: m.root + "/nope") }.hasPrefix("\(m.root)/nope: no such folder"))
    }
}

// MARK: - What `mancs synth` writes in these layouts reads back with the same counts

@Suite struct SyntheticLayoutTests {
    @Test(arguments: [SyntheticDataset.Layout.msmt17V1, .msmt17V2, .list])
    func synthesisedLayoutsReadBackWithTheirCounts(layout: SyntheticDataset.Layout) throws {
        let dir = SharedFiles.temporaryDirectory("synth-\(layout.rawValue)")
        defer { try? FileManager.default.removeItem(at: dir) }
        let options = SyntheticDataset.Options(trainIDs: 5, testIDs: 4, imagesPerID: 3, cameras: 3, seed: 2,
                                               height: 32, width: 16, layout: layout)
        let summary = try SyntheticDataset.write(to: dir, options: options)
        func counts(_ s: ReIDSplit) -> SyntheticDataset.SplitCounts { .init(ids: s.identityCount, images: s.count, cameras: s.cameraCount) }
        let d = try loadDataset(name: layout.datasetName.rawValue, root: dir.path, options: DatasetOptions(verify: true))
        #expect(d.skipped.isEmpty)
        #expect(counts(d.train) == summary.train && counts(d.query) == summary.query && counts(d.gallery) == summary.gallery)
        if layout == .list {
            #expect(summary.val == nil && summary.distractors == options.distractorCount && summary.junk == options.junkCount)
            #expect(summary.train.images == 15 && summary.gallery.ids == 5)   // + pid 0
        } else {
            // The last of each identity's 3 pictures is in list_val.txt; no distractors, no junk.
            #expect(summary.train.images == 10 && summary.val == .init(ids: 5, images: 5, cameras: summary.val!.cameras))
            #expect(summary.distractors == 0 && summary.junk == 0 && summary.gallery.ids == 4)
            #expect(Set(d.train.images.map(\.originalPID)) == Set(0..<5) && Set(d.query.images.map(\.pid)) == Set(0..<4))
            let all = try loadDataset(name: "msmt17-trainval", root: dir.path)
            #expect(all.train.count == 15 && all.trainClasses == 5)
            #expect(summary.filesWritten == 15 + summary.query.images + summary.gallery.images)
        }
        // Written again: refused unless replacing.
        #expect(throws: SyntheticDatasetError.self) { try SyntheticDataset.write(to: dir, options: options) }
        #expect(try SyntheticDataset.write(to: dir, options: options, replacingExisting: true) == summary)
    }
}
