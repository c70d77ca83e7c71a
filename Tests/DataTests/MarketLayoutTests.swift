import Foundation
import Testing
import TestSupport
@testable import ReIDData

/// Builds a small Market-1501 (or Duke) tree one level down, with junk,
/// distractors, stray files, a truncated and a grayscale JPEG.
struct MiniMarket {
    let root: String
    let base: String

    init(duke: Bool = false, gtBbox: Bool = false) {
        root = SharedFiles.temporaryDirectory(duke ? "duke" : "market").path
        base = root + (duke ? "/DukeMTMC-reID" : "/Market-1501-v15.09.15")
        func name(_ pid: Int, _ cam: Int, _ n: Int) -> String {
            let p = pid < 0 ? "-1" : String(format: "%04d", pid)
            return duke ? "\(p)_c\(cam)_f\(String(format: "%07d", n)).jpg" : "\(p)_c\(cam)s1_\(String(format: "%06d", n))_01.jpg"
        }
        // Train: pids 7, 3, 12 (relabelled 1, 0, 2); pid 12 has one grayscale image.
        var seed = 0
        for (pid, count) in [(7, 5), (3, 4), (12, 2)] {
            for n in 0..<count { seed += 1; TestJPEG.write("\(base)/bounding_box_train/\(name(pid, 1 + n % 2, n))", seed: seed, gray: pid == 12 && n == 1) }
        }
        TestJPEG.write("\(base)/bounding_box_train/\(name(-1, 1, 9))", seed: 50)   // junk
        try! Data("x".utf8).write(to: URL(fileURLWithPath: base + "/bounding_box_train/Thumbs.db"))
        // Query: pids 20, 21 at cameras 1 and 3.
        TestJPEG.write("\(base)/query/\(name(20, 1, 1))", seed: 60)
        TestJPEG.write("\(base)/query/\(name(21, 3, 2))", seed: 61)
        // Gallery: matches, a distractor, junk, a stray name and a truncated JPEG.
        TestJPEG.write("\(base)/bounding_box_test/\(name(20, 2, 3))", seed: 62)
        TestJPEG.write("\(base)/bounding_box_test/\(name(21, duke ? 8 : 6, 4))", seed: 63)
        TestJPEG.write("\(base)/bounding_box_test/\(name(0, 4, 5))", seed: 64)
        TestJPEG.write("\(base)/bounding_box_test/\(name(-1, 4, 6))", seed: 65)
        TestJPEG.write("\(base)/bounding_box_test/hello.jpg", seed: 66)
        TestJPEG.writeTruncated("\(base)/bounding_box_test/\(name(22, 5, 7))", seed: 67)
        if gtBbox {
            for n in 0..<3 { TestJPEG.write("\(base)/gt_bbox/\(name(20, 1, 10 + n))", seed: 70 + n) }
        }
    }
}

@Suite struct MarketLayoutTests {
    @Test func parsesMarketWithJunkDistractorsAndStrays() throws {
        let m = MiniMarket(gtBbox: true)
        let d = try loadDataset(name: "market1501", root: m.root)
        #expect(d.train.count == 11)
        #expect(d.trainClasses == 3)
        // Relabelled by sorted original pid: 3 -> 0, 7 -> 1, 12 -> 2.
        for image in d.train.images {
            #expect(image.pid == [3: 0, 7: 1, 12: 2][image.originalPID])
            #expect(image.camera == 0 || image.camera == 1)
        }
        #expect(d.query.count == 2 && d.query.identityCount == 2)
        #expect(Set(d.query.images.map(\.camera)) == [0, 2])   // 1-based in names, 0-based stored
        #expect(Set(d.query.images.map(\.pid)) == [20, 21])
        // Gallery keeps the distractor (pid 0) and, without --verify, the truncated file.
        #expect(d.gallery.count == 4)
        #expect(d.gallery.images.contains { $0.pid == 0 })
        #expect(d.gallery.cameraCount == 4)
        #expect(d.multiQuery?.count == 3)
        let skippedNames = Set(d.skipped.map { ($0.path as NSString).lastPathComponent })
        #expect(skippedNames == ["Thumbs.db", "hello.jpg"])
        #expect(!d.skipped.contains { $0.path.contains("-1_") }, "junk is ignored, not listed")
    }

    @Test func verifyMovesUndecodableImagesToSkipped() throws {
        let m = MiniMarket()
        let d = try loadDataset(name: "market1501", root: m.root, options: DatasetOptions(verify: true))
        #expect(d.gallery.count == 3)
        #expect(d.train.count == 11, "the grayscale JPEG decodes")
        #expect(d.skipped.contains { $0.path.hasSuffix("0022_c5s1_000007_01.jpg") && $0.reason.contains("JPEG") })
        #expect(d.multiQuery == nil)
    }

    @Test func parsesDuke() throws {
        let m = MiniMarket(duke: true)
        let d = try loadDataset(name: "dukemtmc", root: m.base)
        #expect(d.train.count == 11 && d.trainClasses == 3)
        #expect(d.gallery.images.contains { $0.camera == 7 })
        #expect(d.gallery.count == 4)
        // A Market-style name is not a Duke name.
        #expect(parseMarketName("0002_c1s1_000451_03.jpg", style: .dukemtmc) == nil)
        #expect(parseMarketName("0001_c2_f0046182.jpg", style: .market1501) == nil)
        #expect(parseMarketName("0001_c2_f0046182.jpg", style: .dukemtmc)! == (1, 2))
        #expect(parseMarketName("-1_c3s2_000001_00.jpg", style: .market1501)! == (-1, 3))
    }

    @Test func missingFoldersAndEmptyTrainingAreClearErrors() throws {
        let m = MiniMarket()
        try FileManager.default.removeItem(atPath: m.base + "/query")
        do { _ = try loadDataset(name: "market1501", root: m.root); Issue.record("no error") } catch let e as DatasetError {
            #expect(e.message.contains(m.base + "/query") && e.message.contains("missing folder"))
        }
        let empty = SharedFiles.temporaryDirectory("empty").path
        do { _ = try loadDataset(name: "market1501", root: empty); Issue.record("no error") } catch let e as DatasetError {
            #expect(e.message.contains(empty) && e.message.contains("bounding_box_train"))
        }
        #expect(throws: DatasetError.self) { try loadDataset(name: "market1501", root: empty + "/nope") }
        #expect(throws: DatasetError.self) { try loadDataset(name: "viper", root: m.root) }
        // Only junk in training: no usable identity.
        let junk = SharedFiles.temporaryDirectory("junk").path
        TestJPEG.write(junk + "/bounding_box_train/-1_c1s1_000001_00.jpg")
        TestJPEG.write(junk + "/query/0001_c1s1_000001_00.jpg")
        TestJPEG.write(junk + "/bounding_box_test/0001_c2s1_000001_00.jpg")
        do { _ = try loadDataset(name: "market1501", root: junk); Issue.record("no error") } catch let e as DatasetError {
            #expect(e.message.contains("no usable training identity"))
        }
    }
}
