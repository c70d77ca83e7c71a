import CHDF5
import Foundation
import HDF5Kit
import Testing
import TestSupport
@testable import ReIDData

// MARK: Writers for the tests

/// Writes a MATLAB v7.3-style `cuhk-03.mat`: `labeled`/`detected` cells of
/// per-camera-pair (persons x 10) cells of uint8 images (HDF5 dims (3, W, H)),
/// empty cells as MATLAB writes them, and `testsets` of (pair, person) lists.
enum TestMat73 {
    static func write(path: String, labeled: [[[RGB8Image?]]], detected: [[[RGB8Image?]]], testsets: [[(Int, Int)]]) {
        withHDF5Lock {
            let fid = H5Fcreate(path, mancs_h5f_acc_trunc(), mancs_h5p_default(), mancs_h5p_default())
            precondition(fid >= 0)
            defer { H5Fclose(fid) }
            H5Gclose(H5Gcreate2(fid, "/#refs#", mancs_h5p_default(), mancs_h5p_default(), mancs_h5p_default()))
            var counter = 0
            func dataset<T>(_ name: String?, _ type: hid_t, _ dims: [Int], _ values: [T]) -> hobj_ref_t {
                counter += 1
                let full = name ?? "/#refs#/o\(counter)"
                let hd = dims.map { hsize_t($0) }
                let space = H5Screate_simple(Int32(dims.count), hd, nil)
                let d = H5Dcreate2(fid, full, type, space, mancs_h5p_default(), mancs_h5p_default(), mancs_h5p_default())
                precondition(d >= 0, "cannot create \(full)")
                _ = values.withUnsafeBytes { H5Dwrite(d, type, mancs_h5s_all(), mancs_h5s_all(), mancs_h5p_default(), $0.baseAddress) }
                H5Dclose(d); H5Sclose(space)
                var ref = hobj_ref_t()
                H5Rcreate(&ref, fid, full, H5R_OBJECT, -1)
                return ref
            }
            func image(_ im: RGB8Image?) -> hobj_ref_t {
                guard let im else { return dataset(nil, mancs_h5t_native_uint64(), [2], [UInt64(0), 0]) } // MATLAB's empty array
                var data = [UInt8](repeating: 0, count: im.pixels.count)
                for c in 0..<3 { for x in 0..<im.width { for y in 0..<im.height {
                    data[c * im.width * im.height + x * im.height + y] = im.pixels[(y * im.width + x) * 3 + c]
                } } }
                return dataset(nil, mancs_h5t_native_uint8(), [3, im.width, im.height], data)
            }
            for (kind, pairs) in [("labeled", labeled), ("detected", detected)] {
                var pairRefs: [hobj_ref_t] = []
                for persons in pairs {
                    let n = persons.count
                    var cells = [hobj_ref_t](repeating: 0, count: 10 * n)
                    for (j, slots) in persons.enumerated() { for k in 0..<10 { cells[k * n + j] = image(slots[k]) } }
                    pairRefs.append(dataset(nil, mancs_h5t_std_ref_obj(), [10, n], cells))
                }
                _ = dataset("/" + kind, mancs_h5t_std_ref_obj(), [1, pairRefs.count], pairRefs)
            }
            let splitRefs = testsets.map { list -> hobj_ref_t in
                let values = list.map { Double($0.0) } + list.map { Double($0.1) }
                return dataset(nil, mancs_h5t_native_double(), [2, list.count], values)
            }
            _ = dataset("/testsets", mancs_h5t_std_ref_obj(), [1, splitRefs.count], splitRefs)
        }
    }
}

/// Writes an uncompressed level-5 MAT-file of double column vectors and cells of strings.
enum TestMatV5 {
    enum Value { case numbers([Double]), strings([String]) }

    static func element(_ type: UInt32, _ payload: [UInt8]) -> [UInt8] {
        var out = le(type) + le(UInt32(payload.count)) + payload
        while out.count % 8 != 0 { out.append(0) }
        return out
    }
    static func le(_ v: UInt32) -> [UInt8] { (0..<4).map { UInt8(truncatingIfNeeded: v >> (8 * $0)) } }
    static func matrix(name: String, classID: UInt32, dims: [Int], data: [UInt8]) -> [UInt8] {
        let body = element(6, le(classID) + le(0)) + element(5, dims.flatMap { le(UInt32($0)) })
            + element(1, Array(name.utf8)) + data
        return element(14, body)
    }
    static func value(_ name: String, _ v: Value) -> [UInt8] {
        switch v {
        case .numbers(let xs):
            return matrix(name: name, classID: 6, dims: [xs.count, 1], data: element(9, xs.flatMap { x -> [UInt8] in
                let b = x.bitPattern
                return (0..<8).map { UInt8(truncatingIfNeeded: b >> (8 * $0)) }
            }))
        case .strings(let ss):
            let cells = ss.flatMap { s in
                matrix(name: "", classID: 4, dims: [1, s.utf16.count],
                       data: element(4, s.utf16.flatMap { [UInt8($0 & 0xFF), UInt8($0 >> 8)] }))
            }
            return matrix(name: name, classID: 1, dims: [ss.count, 1], data: cells)
        }
    }
    static func write(path: String, _ vars: [(String, Value)]) {
        var header = Array("MATLAB 5.0 MAT-file, written by the mancs tests".utf8)
        header += [UInt8](repeating: 0x20, count: 116 - header.count) + [UInt8](repeating: 0, count: 8) + [0x00, 0x01] + Array("IM".utf8)
        let bytes = header + vars.flatMap { value($0.0, $0.1) }
        try! Data(bytes).write(to: URL(fileURLWithPath: path))
    }
}

// MARK: Tests

@Suite(.serialized) struct CUHK03Tests {
    /// A distinct small image per (kind, pair, person, slot).
    static func picture(_ kind: Int, _ p: Int, _ j: Int, _ k: Int) -> RGB8Image {
        let w = 3 + k % 3, h = 5 + j % 2
        let px = (0..<(w * h * 3)).map { UInt8(truncatingIfNeeded: kind * 101 + p * 53 + j * 29 + k * 7 + $0 * 3) }
        return RGB8Image(width: w, height: h, pixels: px)
    }

    /// Pair 1: 3 persons, pair 2: 2 persons; each person has images in slots 0, 1, 5, 6
    /// (views 1 and 2) and empty cells elsewhere; person (2, 2) has no view-2 image.
    static func layout(kind: Int) -> [[[RGB8Image?]]] {
        [3, 2].enumerated().map { p, persons in
            (0..<persons).map { j in
                (0..<10).map { k -> RGB8Image? in
                    let used = [0, 1, 5, 6].contains(k) && !(p == 1 && j == 1 && k >= 5)
                    return used ? picture(kind, p, j, k) : nil
                }
            }
        }
    }

    /// All image names of the layout, as torchreid writes them.
    static var names: [(name: String, pair: Int, person: Int)] {
        var out: [(String, Int, Int)] = []
        for (p, persons) in layout(kind: 0).enumerated() {
            for (j, slots) in persons.enumerated() {
                for k in 0..<10 where slots[k] != nil {
                    out.append((String(format: "%d_%03d_%d_%02d.png", p + 1, j + 1, k < 5 ? 1 : 2, k + 1), p + 1, j + 1))
                }
            }
        }
        return out
    }

    func makeRoot(withConfig: Bool = true) -> String {
        let root = SharedFiles.temporaryDirectory("cuhk03").path
        try! FileManager.default.createDirectory(atPath: root + "/cuhk03_release", withIntermediateDirectories: true)
        TestMat73.write(path: root + "/cuhk03_release/cuhk-03.mat", labeled: Self.layout(kind: 0), detected: Self.layout(kind: 1),
                        testsets: [[(1, 2), (2, 1)], [(1, 1)]])
        if withConfig {
            // Train on persons (1,1) and (1,3); query view 1 / gallery view 2 of (1,2), (2,1), (2,2).
            let all = Self.names
            let pid = all.map { Double($0.pair * 10 + $0.person) }
            let trainIdx = all.indices.filter { [1, 3].contains(all[$0].person) && all[$0].pair == 1 }.map { Double($0 + 1) }
            let test = all.indices.filter { !trainIdx.contains(Double($0 + 1)) }
            let query = test.filter { all[$0].name.split(separator: "_")[2] == "1" }.map { Double($0 + 1) }
            let gallery = test.filter { all[$0].name.split(separator: "_")[2] == "2" }.map { Double($0 + 1) }
            for kind in ["labeled", "detected"] {
                TestMatV5.write(path: root + "/cuhk03_new_protocol_config_\(kind).mat", [
                    ("filelist", .strings(all.map(\.name))), ("labels", .numbers(pid)), ("camId", .numbers(all.map { _ in 1 })),
                    ("train_idx", .numbers(trainIdx)), ("query_idx", .numbers(query)), ("gallery_idx", .numbers(gallery)),
                ])
            }
        }
        return root
    }

    @Test func newProtocolLabeledAndDetected() throws {
        let root = makeRoot()
        for (kind, name) in [(0, "cuhk03-labeled"), (1, "cuhk03-detected")] {
            let d = try loadDataset(name: name, root: root, options: DatasetOptions(verify: true))
            #expect(d.train.count == 8 && d.trainClasses == 2)
            #expect(Set(d.train.images.map(\.pid)) == [0, 1])
            #expect(Set(d.train.images.map(\.originalPID)) == [11, 13])
            #expect(d.query.count == 6 && d.gallery.count == 4, "2 view-1 images each; person (2,2) has no view-2 image")
            #expect(d.query.images.allSatisfy { $0.camera == 0 } && d.gallery.images.allSatisfy { $0.camera == 1 })
            #expect(Set(d.query.images.map(\.pid)) == [12, 21, 22])
            #expect(d.skipped.isEmpty)
            // Pixels come back as stored (transposed MATLAB arrays).
            let q = d.query.images[0]
            let parts = q.path.split(separator: "/").last!.split(separator: "_").map { Int($0)! }
            let decoded = try decodeImage(q, decoder: JPEGDecoder())
            #expect(decoded == Self.picture(kind, parts[0] - 1, parts[1] - 1, parts[3] - 1))
        }
    }

    @Test func classicSplit() throws {
        let root = makeRoot(withConfig: false)
        let d = try loadDataset(name: "cuhk03-labeled", root: root, options: DatasetOptions(cuhk03Protocol: .classic(split: 0)))
        #expect(d.trainClasses == 3)                           // (1,1), (1,3), (2,2)
        #expect(d.query.count == 8 && d.gallery.count == 8)    // (1,2) and (2,1), 4 images each
        #expect(d.query.identityCount == 2 && d.query.cameraCount == 2)
        let s1 = try loadDataset(name: "cuhk03-detected", root: root, options: DatasetOptions(cuhk03Protocol: .classic(split: 1)))
        #expect(s1.trainClasses == 4 && s1.query.count == 4)
        do {
            _ = try loadDataset(name: "cuhk03-labeled", root: root, options: DatasetOptions(cuhk03Protocol: .classic(split: 5)))
            Issue.record("no error")
        } catch { #expect("\(error)".contains("split 5")) }
        // Without the protocol config, the default (new) protocol names the missing file.
        do { _ = try loadDataset(name: "cuhk03-labeled", root: root); Issue.record("no error") } catch {
            #expect("\(error)".contains("cuhk03_new_protocol_config_labeled.mat"))
        }
        do { _ = try loadDataset(name: "cuhk03-labeled", root: SharedFiles.temporaryDirectory("nocuhk").path); Issue.record("no error") } catch {
            #expect("\(error)".contains("cuhk-03.mat"))
        }
    }

    @Test func loaderReadsStoredImages() throws {
        let d = try loadDataset(name: "cuhk03-labeled", root: makeRoot())
        let sampler = try PKSampler(split: d.train, p: 2, k: 3, seed: 3)
        let loader = BatchLoader(split: d.train, sampler: sampler, threads: 2)
        let b = try loader.next()
        loader.stop()
        #expect(b.count == 6 && b.images.count == 6 * 256 * 128 * 3)
        #expect(b.images.contains { $0 != 0 })
    }
}

@Suite struct MatV5Tests {
    /// Written by scipy.io.savemat(..., do_compression=True): filelist (3x1 cell),
    /// labels [1;1;7] double, train_idx [1;3] uint16, camId [1;2;1] int32.
    static let compressed = "TUFUTEFCIDUuMCBNQVQtZmlsZSBQbGF0Zm9ybTogcG9zaXgsIENyZWF0ZWQgb246IFRodSBOb3YgMjYgMjM6NTQ6MDggMjAyNgAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAABSU0PAAAAWgAAAHic42NgYOBgZGBgA9FADGSCASuUzwwVY4Ty0zJzUnMyi0v4gGwHBoQ+FjR9IPV8SOYJQPmG8QYGhvFA0lCvIC8dIka+OUbxBmaUmQM0wcAY5B4jiDkAuxIRJA8AAAAzAAAAeJzjY2BgCABiNiDmgNIgwArlMwMxIxSD5HISk1JzihkYOIFsCQYY+GCPSss4AACrHwXZDwAAADIAAAB4nONjYGBwAGI2IOYAYm4GCGCF8pmAmBGKOYG4pCgxMy8+M6UCqo4FCBkZmBkAal4EUA8AAAAuAAAAeJzjY2Bg8ABiNiDmAGIeBghghfKZgZgRikFiyYm5nilQNg9UnAlKgwAAXuICew=="

    @Test func readsCompressedVariables() throws {
        let path = SharedFiles.temporaryDirectory("matv5").path + "/c.mat"
        try Data(base64Encoded: Self.compressed)!.write(to: URL(fileURLWithPath: path))
        let vars = try readMatFileV5(path: path)
        #expect(vars["filelist"]?.strings == ["1_001_1_01.png", "1_001_2_06.png", "2_003_1_02.png"])
        #expect(vars["labels"]?.numbers == [1, 1, 7])
        #expect(vars["train_idx"]?.numbers == [1, 3])
        #expect(vars["camId"]?.numbers == [1, 2, 1])
    }

    @Test func readsUncompressedAndRejectsDamage() throws {
        let dir = SharedFiles.temporaryDirectory("matv5").path
        TestMatV5.write(path: dir + "/u.mat", [("labels", .numbers([3, -2.5])), ("filelist", .strings(["a", "bc"]))])
        let vars = try readMatFileV5(path: dir + "/u.mat")
        #expect(vars["labels"]?.numbers == [3, -2.5])
        #expect(vars["filelist"]?.strings == ["a", "bc"])
        // Truncated: an element runs past the end.
        let bytes = try Data(contentsOf: URL(fileURLWithPath: dir + "/u.mat"))
        try bytes.prefix(bytes.count - 20).write(to: URL(fileURLWithPath: dir + "/t.mat"))
        #expect(throws: MatFileError.self) { try readMatFileV5(path: dir + "/t.mat") }
        // A damaged compressed stream.
        var c = [UInt8](Data(base64Encoded: Self.compressed)!)
        c[150] ^= 0xFF
        try Data(c).write(to: URL(fileURLWithPath: dir + "/d.mat"))
        #expect(throws: MatFileError.self) { try readMatFileV5(path: dir + "/d.mat") }
        #expect(throws: MatFileError.self) { try readMatFileV5(path: dir + "/missing.mat") }
    }

    /// A MAT-file of raw top-level elements.
    static func rawFile(_ dir: String, _ name: String, _ elements: [UInt8]) -> String {
        var header = Array("MATLAB 5.0 MAT-file, hostile".utf8)
        header += [UInt8](repeating: 0x20, count: 116 - header.count) + [UInt8](repeating: 0, count: 8) + [0x00, 0x01] + Array("IM".utf8)
        let path = dir + "/" + name
        try! Data(header + elements).write(to: URL(fileURLWithPath: path))
        return path
    }

    func message(_ path: String) -> String {
        do { _ = try readMatFileV5(path: path); return "no error" } catch { return "\(error)" }
    }

    @Test func hostileFilesAreRefused() throws {
        let dir = SharedFiles.temporaryDirectory("matv5").path
        func doubles(_ xs: [Double]) -> [UInt8] {
            TestMatV5.element(9, xs.flatMap { x in (0..<8).map { UInt8(truncatingIfNeeded: x.bitPattern >> (8 * $0)) } })
        }
        func matrix(classID: UInt32, dims: [UInt8], data: [UInt8]) -> [UInt8] {
            TestMatV5.element(14, TestMatV5.element(6, TestMatV5.le(classID) + TestMatV5.le(0)) + dims + TestMatV5.element(1, Array("x".utf8)) + data)
        }
        // A char array claiming 10^9 rows for no characters (was: a billion newlines).
        let rows = Self.rawFile(dir, "rows.mat", matrix(classID: 4, dims: doubles([1e9, 0]), data: TestMatV5.element(4, [])))
        #expect(message(rows).contains("rows"), "\(message(rows))")
        // NaN and infinite dims (Int(Double) of them traps).
        for (label, d) in [("nan", Double.nan), ("inf", Double.infinity), ("neg", -3)] {
            let p = Self.rawFile(dir, "\(label).mat", matrix(classID: 6, dims: doubles([d, 1]), data: doubles([1])))
            #expect(message(p).contains("dimension"), "\(label): \(message(p))")
        }
        // A cell claiming 10^12 entries in a few bytes.
        let cells = Self.rawFile(dir, "cells.mat", matrix(classID: 1, dims: doubles([1e6, 1e6]), data: []))
        #expect(message(cells).contains("entries") || message(cells).contains("dimension"), "\(message(cells))")
        // Cells nested 100 deep.
        var nested = matrix(classID: 6, dims: doubles([1, 1]), data: doubles([1]))
        for _ in 0..<100 { nested = matrix(classID: 1, dims: doubles([1, 1]), data: nested) }
        let deep = Self.rawFile(dir, "deep.mat", nested)
        #expect(message(deep).contains("nested"), "\(message(deep))")
    }

    /// Replaces the link `name` of a cuhk-03.mat by a [1, 1] cell whose one
    /// reference has the given address (the lock held).
    static func replaceByCell(_ f: hid_t, _ name: String, address: hobj_ref_t) {
        precondition(H5Ldelete(f, name, mancs_h5p_default()) >= 0)
        var dims: [hsize_t] = [1, 1], ref = address
        let sp = H5Screate_simple(2, &dims, nil); defer { H5Sclose(sp) }
        let d = H5Dcreate2(f, name, mancs_h5t_std_ref_obj(), sp, mancs_h5p_default(), mancs_h5p_default(), mancs_h5p_default())
        precondition(d >= 0); defer { H5Dclose(d) }
        precondition(H5Dwrite(d, mancs_h5t_std_ref_obj(), mancs_h5s_all(), mancs_h5s_all(), mancs_h5p_default(), &ref) >= 0)
    }

    @Test func hostileV73FilesGiveOneClearError() throws {
        func message(_ root: String, detected: Bool, _ proto: CUHK03Protocol = .classic(split: 0)) -> String {
            do { _ = try parseCUHK03(root: root, detected: detected, protocol: proto); return "no error" } catch { return "\(error)" }
        }
        let root = CUHK03Tests().makeRoot(withConfig: false)
        let mat = root + "/cuhk03_release/cuhk-03.mat"
        HostileHDF5.edit(mat) { f in
            // labeled: an external link (the reader must not open another file).
            precondition(H5Lmove(f, "/labeled", f, "/#refs#/labeled", mancs_h5p_default(), mancs_h5p_default()) >= 0)
            HostileHDF5.externalLink(f, file: root + "/elsewhere.mat", object: "/labeled", "/labeled")
            // detected: a cell of camera pairs whose one pair claims 10 x 10^7
            // references and stores none (a reader trusting the dims allocates 800 MB).
            var dims: [hsize_t] = [10, 10_000_000], chunk: [hsize_t] = [10, 1024]
            let sp = H5Screate_simple(2, &dims, nil); defer { H5Sclose(sp) }
            let dcpl = H5Pcreate(mancs_h5p_dataset_create()); defer { H5Pclose(dcpl) }
            H5Pset_chunk(dcpl, 2, &chunk)
            let d = H5Dcreate2(f, "/#refs#/huge", mancs_h5t_std_ref_obj(), sp, mancs_h5p_default(), dcpl, mancs_h5p_default())
            precondition(d >= 0); H5Dclose(d)
            var ref = hobj_ref_t()
            precondition(H5Rcreate(&ref, f, "/#refs#/huge", H5R_OBJECT, -1) >= 0)
            Self.replaceByCell(f, "/detected", address: ref)
            // testsets: a reference far beyond the end of the file.
            Self.replaceByCell(f, "/testsets", address: 1 << 40)
        }
        let labeled = message(root, detected: false)
        #expect(labeled.contains(mat) && labeled.contains("/labeled is an external link"), "\(labeled)")
        let detected = message(root, detected: true)
        #expect(detected.contains(mat) && detected.contains("detected{1}") && detected.contains("holds no data"), "\(detected)")
        // With labeled restored, the classic protocol reaches testsets.
        HostileHDF5.edit(mat) { f in
            precondition(H5Ldelete(f, "/labeled", mancs_h5p_default()) >= 0)
            precondition(H5Lmove(f, "/#refs#/labeled", f, "/labeled", mancs_h5p_default(), mancs_h5p_default()) >= 0)
        }
        let testsets = message(root, detected: false)
        #expect(testsets.contains(mat) && testsets.contains("outside the file"), "\(testsets)")
    }

    @Test func inflationIsCapped() throws {
        // zlib.compress(bytes(5000)): 24 bytes that inflate to 5,000.
        let bomb = [UInt8](Data(base64Encoded: "eJztwTEBAAAAwqD1T20KP6AAAAAAgLcBE4gAAQ==")!)
        #expect(try zlibInflate(bomb).count == 5000)
        let error = #expect(throws: MatFileError.self) { try zlibInflate(bomb, limit: 4096) }
        #expect(error?.description.contains("more than 4096") == true, "\(String(describing: error))")
        var damaged = bomb
        damaged[damaged.count - 1] ^= 1  // the Adler-32 trailer
        #expect(throws: MatFileError.self) { try zlibInflate(damaged) }
        #expect(throws: MatFileError.self) { try zlibInflate(Array(bomb.prefix(12))) }
    }
}
