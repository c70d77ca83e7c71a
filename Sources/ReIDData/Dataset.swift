import Foundation

// MARK: Images and splits

/// Where an image's pixels come from.
public enum ImageSource: Sendable {
    /// A JPEG file.
    case jpeg(path: String)
    /// An image held in a container file (CUHK03's `cuhk-03.mat`), by index.
    case stored(RawImageStore, index: Int)
}

/// A container of raw RGB images (e.g. CUHK03's MATLAB file). Must be safe to
/// read from several threads.
public protocol RawImageStore: AnyObject, Sendable {
    func image(at index: Int) throws -> RGB8Image
    /// A name for messages, e.g. `cuhk-03.mat:labeled[2][5,17]`.
    func name(of index: Int) -> String
}

/// One image of a split.
public struct ReIDImage: Sendable {
    public var source: ImageSource
    /// Training: the label 0..<classes (original pids sorted). Query/gallery:
    /// the original pid (0 = distractor).
    public var pid: Int
    /// The pid as the dataset names it.
    public var originalPID: Int
    /// Camera, 0-based.
    public var camera: Int

    public init(source: ImageSource, pid: Int, originalPID: Int? = nil, camera: Int) {
        self.source = source
        self.pid = pid
        self.originalPID = originalPID ?? pid
        self.camera = camera
    }

    /// The file path (or container reference) for messages and feature files.
    public var path: String {
        switch source {
        case .jpeg(let path): return path
        case .stored(let store, let index): return store.name(of: index)
        }
    }
}

/// A list of images with its summary numbers.
public struct ReIDSplit: Sendable {
    public var images: [ReIDImage]
    public init(images: [ReIDImage]) { self.images = images }
    public var count: Int { images.count }
    /// Distinct pids (distractors count as one identity, pid 0).
    public var identityCount: Int { Set(images.map(\.pid)).count }
    public var cameraCount: Int { Set(images.map(\.camera)).count }
}

/// A file left out of a dataset, and why.
public struct SkippedFile: Sendable, Equatable, Codable {
    public var path: String
    public var reason: String
    public init(path: String, reason: String) { self.path = path; self.reason = reason }
}

/// A dataset with its three splits. Training labels are 0..<trainClasses.
public struct ReIDDataset: Sendable {
    public var name: String
    public var train: ReIDSplit
    public var query: ReIDSplit
    public var gallery: ReIDSplit
    /// Market-1501's `gt_bbox` images (multi-query protocol), when present:
    /// pids and cameras as in `query`.
    public var multiQuery: ReIDSplit?
    /// Files not used, with the reason (junk pid -1 is not listed).
    public var skipped: [SkippedFile]
    /// What was read, where the name leaves it open (e.g. `MSMT17_V2 at DIR`, `list file FILE`).
    public var layout: String? = nil
    /// Number of training identities (classifier width).
    public var trainClasses: Int { train.identityCount }
}

/// A dataset that cannot be loaded: names the path and what was expected.
public struct DatasetError: Error, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

// MARK: Loading by name

/// The datasets `loadDataset` knows.
public enum DatasetName: String, CaseIterable, Sendable {
    case market1501
    case dukemtmc
    case cuhk03Labeled = "cuhk03-labeled"
    case cuhk03Detected = "cuhk03-detected"
    /// MSMT17_V1 or MSMT17_V2; training on list_train.txt.
    case msmt17
    /// MSMT17 training on list_train.txt + list_val.txt (torchreid's `combineall`).
    case msmt17TrainVal = "msmt17-trainval"
    /// A text file of `path pid camid split` lines.
    case list

    /// "market1501, dukemtmc, ... or list", for --help texts.
    public static var helpList: String {
        let names = allCases.map(\.rawValue)
        return names.dropLast().joined(separator: ", ") + " or " + names.last!
    }

    public init(parsing text: String) throws {
        guard let n = DatasetName(rawValue: text.lowercased()) else {
            throw DatasetError("unknown dataset '\(text)' (expected one of: \(DatasetName.allCases.map(\.rawValue).joined(separator: ", ")))")
        }
        self = n
    }
}

/// Which CUHK03 split to use.
public enum CUHK03Protocol: Sendable, Equatable {
    /// 767 training / 700 test identities, from `cuhk03_new_protocol_config_{labeled,detected}.mat`.
    case new
    /// 1367 / 100 from `testsets` in `cuhk-03.mat` (split 0..<20); query = gallery = the test images.
    case classic(split: Int)
}

public struct DatasetOptions: Sendable {
    /// Decode every image up front; undecodable ones become skipped files.
    public var verify = false
    public var cuhk03Protocol: CUHK03Protocol = .new
    public init(verify: Bool = false, cuhk03Protocol: CUHK03Protocol = .new) {
        self.verify = verify
        self.cuhk03Protocol = cuhk03Protocol
    }
}

/// Loads a dataset by name from `root` (the folder holding it, or its parent;
/// for `list`, the list file or the folder holding `list.txt`).
public func loadDataset(name: String, root: String, options: DatasetOptions = DatasetOptions()) throws -> ReIDDataset {
    let which = try DatasetName(parsing: name)
    var raw: RawDataset
    do { raw = try parse(which, root: root, options: options) } catch let e as ListFileError { throw DatasetError(e.description) }
    if options.verify { raw.verify() }
    return try raw.finish(name: which.rawValue)
}

private func parse(_ which: DatasetName, root: String, options: DatasetOptions) throws -> RawDataset {
    switch which {
    case .market1501: return try parseMarketLayout(root: root, style: .market1501)
    case .dukemtmc: return try parseMarketLayout(root: root, style: .dukemtmc)
    case .cuhk03Labeled: return try parseCUHK03(root: root, detected: false, protocol: options.cuhk03Protocol)
    case .cuhk03Detected: return try parseCUHK03(root: root, detected: true, protocol: options.cuhk03Protocol)
    case .msmt17: return try parseMSMT17(root: root, trainVal: false)
    case .msmt17TrainVal: return try parseMSMT17(root: root, trainVal: true)
    case .list: return try parseImageListDataset(data: root)
    }
}

// MARK: Assembly shared by the parsers

/// Parser output before verification and relabelling (train pids original).
struct RawDataset {
    var train: [ReIDImage]
    var query: [ReIDImage]
    var gallery: [ReIDImage]
    var multiQuery: [ReIDImage]?
    var skipped: [SkippedFile]
    var trainDescription: String
    /// `ReIDDataset.layout`.
    var layout: String? = nil

    /// Decodes every image; moves the undecodable ones to `skipped`.
    mutating func verify() {
        let decoder = JPEGDecoder()
        func keep(_ list: [ReIDImage]) -> [ReIDImage] {
            list.filter { image in
                do { _ = try decodeImage(image, decoder: decoder); return true } catch {
                    skipped.append(SkippedFile(path: image.path, reason: "\(error is ImageDecodeError ? (error as! ImageDecodeError).reason : "\(error)")"))
                    return false
                }
            }
        }
        train = keep(train); query = keep(query); gallery = keep(gallery)
        multiQuery = multiQuery.map(keep)
    }

    /// Relabels training pids 0..N-1 in order of the original pid.
    func finish(name: String) throws -> ReIDDataset {
        let pids = Set(train.map(\.originalPID)).sorted()
        guard !pids.isEmpty else { throw DatasetError("\(trainDescription): no usable training identity") }
        let label = Dictionary(uniqueKeysWithValues: pids.enumerated().map { ($1, $0) })
        let relabelled = train.map { var i = $0; i.pid = label[i.originalPID]!; return i }
        return ReIDDataset(name: name, train: ReIDSplit(images: relabelled), query: ReIDSplit(images: query),
                           gallery: ReIDSplit(images: gallery), multiQuery: multiQuery.map { ReIDSplit(images: $0) },
                           skipped: skipped, layout: layout)
    }
}

/// Decodes one image of a dataset, whatever its source.
public func decodeImage(_ image: ReIDImage, decoder: JPEGDecoder) throws -> RGB8Image {
    switch image.source {
    case .jpeg(let path): return try decoder.decode(file: path)
    case .stored(let store, let index): return try store.image(at: index)
    }
}
