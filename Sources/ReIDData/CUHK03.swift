import Foundation
import HDF5Kit

// MARK: CUHK03 (cuhk-03.mat, MATLAB v7.3 = HDF5)

/// Object-reference access to a MATLAB v7.3 file through HDF5Kit (which holds
/// its lock around every call, refuses links and external storage, and checks
/// sizes against the file before allocating).
final class MatV73File: @unchecked Sendable {
    let path: String
    private let file: HDF5File

    init(path: String) throws {
        self.path = path
        do { file = try HDF5File(openForReading: path) } catch {
            throw DatasetError("\(path): not a readable MATLAB v7.3 (HDF5) file")
        }
    }

    /// A dataset's dims (HDF5 order, i.e. MATLAB's reversed), class and contents.
    enum Contents {
        case references(dims: [Int], [HDF5Reference])
        case numbers(dims: [Int], [Double])
        case bytes(dims: [Int], [UInt8])
    }

    /// Elements one dataset read may hold (the largest CUHK03 array, the
    /// detected images' references, is far below).
    static let maxElements = 1 << 27

    private func read(_ d: HDF5Dataset) throws -> Contents {
        let dims = try d.shape()
        guard dims.count <= 8 else { throw DatasetError("\(path): \(d.what) has a damaged dataspace") }
        // Sizes come from the file: checked before anything is allocated.
        var n = 1
        for v in dims {
            let (p, overflow) = n.multipliedReportingOverflow(by: v)
            guard !overflow, p <= Self.maxElements else { throw DatasetError("\(path): \(d.what) has dims \(dims): too large") }
            n = p
        }
        switch try d.dataClass() {
        case .objectReferences: return .references(dims: dims, try d.readReferences().references)
        case .integer(bytes: 1): return .bytes(dims: dims, try d.read(as: UInt8.self).values)
        case .integer, .float: return .numbers(dims: dims, try d.read(as: Double.self).values)
        default: throw DatasetError("\(path): \(d.what) is neither numbers nor references")
        }
    }

    /// The dataset at an absolute path.
    func dataset(_ name: String) throws -> Contents {
        guard file.root.exists(name) else {
            throw DatasetError("\(path): no variable '\(name.dropFirst())' (expected a CUHK03 cuhk-03.mat)")
        }
        return try read(try file.dataset(name))
    }

    /// The dataset an object reference points to.
    func dereference(_ ref: HDF5Reference, what: String) throws -> Contents {
        try read(file.dataset(ref, what: what))
    }

    /// Only the dims of the referenced dataset (cheap: no data read).
    func dimensions(_ ref: HDF5Reference, what: String) throws -> [Int] {
        try file.dataset(ref, what: what).shape()
    }
}

/// CUHK03's images, read on demand from `cuhk-03.mat` (uint8 arrays stored
/// MATLAB-style: HDF5 dims (3, W, H), transposed here to H x W x 3).
final class CUHK03Store: RawImageStore, @unchecked Sendable {
    let file: MatV73File
    let kind: String
    var refs: [HDF5Reference] = []
    var names: [String] = []   // torchreid's names: campair_pid_view_imgid (1-based)

    init(file: MatV73File, kind: String) { self.file = file; self.kind = kind }

    func name(of index: Int) -> String { "\(file.path):\(kind)/\(names[index])" }

    func image(at index: Int) throws -> RGB8Image {
        let what = name(of: index)
        guard case .bytes(let dims, let data) = try file.dereference(refs[index], what: what), dims.count == 3, dims[0] == 3 else {
            throw ImageDecodeError(path: what, reason: "not a uint8 H x W x 3 image")
        }
        let W = dims[1], H = dims[2]
        guard (1...4096).contains(W), (1...4096).contains(H), data.count == W * H * 3 else {
            throw ImageDecodeError(path: what, reason: "implausible image dims \(dims) for \(data.count) bytes")
        }
        var pixels = [UInt8](repeating: 0, count: W * H * 3)
        for c in 0..<3 {
            for x in 0..<W {
                let column = c * W * H + x * H
                for y in 0..<H { pixels[(y * W + x) * 3 + c] = data[column + y] }
            }
        }
        return RGB8Image(width: W, height: H, pixels: pixels)
    }
}

/// Finds a file in `root`, or one or two folder levels below it.
func findFile(_ name: String, under root: String) -> String? {
    let fm = FileManager.default
    var frontier = [root]
    for _ in 0..<3 {
        var next: [String] = []
        for dir in frontier {
            if fm.fileExists(atPath: dir + "/" + name) { return dir + "/" + name }
            for sub in ((try? fm.contentsOfDirectory(atPath: dir)) ?? []).sorted() {
                var isDir: ObjCBool = false
                if fm.fileExists(atPath: dir + "/" + sub, isDirectory: &isDir), isDir.boolValue { next.append(dir + "/" + sub) }
            }
        }
        frontier = next
    }
    return nil
}

func parseCUHK03(root: String, detected: Bool, protocol: CUHK03Protocol) throws -> RawDataset {
    var isDir: ObjCBool = false
    guard FileManager.default.fileExists(atPath: root, isDirectory: &isDir), isDir.boolValue else {
        throw DatasetError("\(root): no such folder (expected the CUHK03 folder holding cuhk-03.mat)")
    }
    guard let matPath = findFile("cuhk-03.mat", under: root) else {
        throw DatasetError("\(root): no cuhk-03.mat here or in a subfolder (expected the CUHK03 release)")
    }
    let kind = detected ? "detected" : "labeled"
    let file = try MatV73File(path: matPath)
    let store = CUHK03Store(file: file, kind: kind)

    // labeled / detected: a cell of camera pairs, each a (persons x 10) cell of images.
    guard case .references(_, let pairRefs) = try file.dataset("/" + kind) else {
        throw DatasetError("\(matPath): '\(kind)' is not a cell array")
    }
    var byName: [String: Int] = [:]
    var persons: [(pair: Int, person: Int, images: [Int])] = []
    for (p, pairRef) in pairRefs.enumerated() {
        guard case .references(let dims, let cells) = try file.dereference(pairRef, what: "\(kind){\(p + 1)}"), dims.count == 2 else {
            throw DatasetError("\(matPath): \(kind){\(p + 1)} is not a 2-D cell array")
        }
        let slots = dims[0], count = dims[1] // HDF5 (10, persons) = MATLAB persons x 10
        for j in 0..<count {
            var images: [Int] = []
            for k in 0..<slots {
                let ref = cells[k * count + j]
                let what = "\(kind){\(p + 1)}{\(j + 1),\(k + 1)}"
                guard try file.dimensions(ref, what: what).count == 3 else { continue } // empty cell
                let name = String(format: "%d_%03d_%d_%02d", p + 1, j + 1, k < slots / 2 ? 1 : 2, k + 1)
                byName[name] = store.refs.count
                images.append(store.refs.count)
                store.refs.append(ref)
                store.names.append(name)
            }
            if !images.isEmpty { persons.append((p + 1, j + 1, images)) }
        }
    }
    func image(_ index: Int, pid: Int) -> ReIDImage {
        // Camera = view within the pair (torchreid's camid), 0-based.
        let view = Int(store.names[index].split(separator: "_")[2])! - 1
        return ReIDImage(source: .stored(store, index: index), pid: pid, camera: view)
    }

    switch `protocol` {
    case .classic(let split):
        guard case .references(_, let splitRefs) = try file.dataset("/testsets") else {
            throw DatasetError("\(matPath): 'testsets' is not a cell array")
        }
        guard split >= 0 && split < splitRefs.count else {
            throw DatasetError("\(matPath): classic split \(split) does not exist (0..<\(splitRefs.count))")
        }
        guard case .numbers(let dims, let v) = try file.dereference(splitRefs[split], what: "testsets{\(split + 1)}"), dims.count == 2,
              dims.contains(2) else {
            throw DatasetError("\(matPath): testsets{\(split + 1)} is not an N x 2 list of (camera pair, person)")
        }
        var test = Set<[Int]>()
        if dims[0] == 2 {
            let n = dims[1]
            for r in 0..<n { test.insert([Int(v[r]), Int(v[n + r])]) }
        } else {
            for r in 0..<dims[0] { test.insert([Int(v[2 * r]), Int(v[2 * r + 1])]) }
        }
        var train: [ReIDImage] = [], testImages: [ReIDImage] = []
        for person in persons {
            let pid = person.pair * 1000 + person.person // unique, ordered like torchreid's counter
            let list = person.images.map { image($0, pid: pid) }
            if test.contains([person.pair, person.person]) { testImages += list } else { train += list }
        }
        return RawDataset(train: train, query: testImages, gallery: testImages, multiQuery: nil, skipped: [],
                          trainDescription: "\(matPath) (\(kind), classic split \(split))")

    case .new:
        let configName = "cuhk03_new_protocol_config_\(kind).mat"
        guard let configPath = findFile(configName, under: root) else {
            throw DatasetError("\(root): no \(configName) here or in a subfolder (needed for the 767/700 protocol; pass a classic split instead to use testsets)")
        }
        let config = try readMatFileV5(path: configPath)
        func numbers(_ key: String) throws -> [Int] {
            guard let v = config[key]?.numbers else { throw DatasetError("\(configPath): missing numeric variable '\(key)'") }
            return v.map { Int($0) }
        }
        guard let filelist = config["filelist"]?.strings else {
            throw DatasetError("\(configPath): missing cell array of names 'filelist'")
        }
        let labels = try numbers("labels")
        guard labels.count == filelist.count else {
            throw DatasetError("\(configPath): \(labels.count) labels for \(filelist.count) files")
        }
        var skipped: [SkippedFile] = []
        func images(_ key: String) throws -> [ReIDImage] {
            try numbers(key).compactMap { idx in
                guard idx >= 1 && idx <= filelist.count else {
                    throw DatasetError("\(configPath): \(key) has index \(idx) outside 1...\(filelist.count)")
                }
                let name = filelist[idx - 1]
                let stem = name.hasSuffix(".png") ? String(name.dropLast(4)) : name
                guard let index = byName[stem] else {
                    skipped.append(SkippedFile(path: "\(configPath):\(name)", reason: "not in \(matPath) \(kind) (empty cell?)"))
                    return nil
                }
                return image(index, pid: labels[idx - 1])
            }
        }
        let train = try images("train_idx"), query = try images("query_idx"), gallery = try images("gallery_idx")
        return RawDataset(train: train, query: query, gallery: gallery, multiQuery: nil, skipped: skipped,
                          trainDescription: "\(configPath) train_idx")
    }
}
