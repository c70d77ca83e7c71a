import Foundation

// MARK: Images named by list files (MSMT17, the generic `list` dataset)

/// The full path of an image a list names, or nil with the reason in `skipped`:
/// the same rules as a Market-1501 folder (only `.jpg` / `.jpeg` files), plus a
/// listed file that is missing. `listedAt` is "FILE line N" for the message.
func listedImagePath(base: String, relative: String, listedAt: String, skipped: inout [SkippedFile]) -> String? {
    let path = base + "/" + relative
    let ext = (relative as NSString).pathExtension.lowercased()
    var isDir: ObjCBool = false
    let exists = FileManager.default.fileExists(atPath: path, isDirectory: &isDir)
    let reason: String? = !exists ? "listed at \(listedAt) but missing"
        : isDir.boolValue ? "a folder, not an image (listed at \(listedAt))"
        : (ext == "jpg" || ext == "jpeg") ? nil : "not a .jpg file (listed at \(listedAt))"
    if let reason {
        skipped.append(SkippedFile(path: path, reason: reason))
        return nil
    }
    return path
}

// MARK: The generic list dataset

/// The list file of a `list` dataset: `data` itself when it is a file, else `data/list.txt`.
func locateImageList(_ data: String) throws -> String {
    var isDir: ObjCBool = false
    guard FileManager.default.fileExists(atPath: data, isDirectory: &isDir) else {
        throw DatasetError("\(data): no such file or folder (expected a list file of 'path pid camid split' lines, or a folder holding list.txt)")
    }
    guard isDir.boolValue else { return data }
    let list = data + "/list.txt"
    guard FileManager.default.fileExists(atPath: list) else {
        throw DatasetError("\(list): missing list file (expected 'path pid camid split' lines; or pass the list file itself as the data path)")
    }
    return list
}

/// A `list` dataset: one text file of `path pid camid split` lines (see
/// `parseImageList`), image paths relative to the folder holding the file.
func parseImageListDataset(data: String) throws -> RawDataset {
    let file = try locateImageList(data)
    let folder = (file as NSString).deletingLastPathComponent
    let base = folder.isEmpty ? "." : folder
    let entries = try parseImageList(try readListFile(file, what: "'path pid camid split' lines"), file: file)
    var splits: [ListSplit: [ReIDImage]] = [:]
    var skipped: [SkippedFile] = []
    for e in entries where e.pid != -1 {   // junk, as in Market-1501: neither counted nor listed
        guard let path = listedImagePath(base: base, relative: e.path, listedAt: "\(file) line \(e.line)", skipped: &skipped) else { continue }
        splits[e.split, default: []].append(ReIDImage(source: .jpeg(path: path), pid: e.pid, camera: e.camera))
    }
    return RawDataset(train: splits[.train] ?? [], query: splits[.query] ?? [], gallery: splits[.gallery] ?? [],
                      multiQuery: nil, skipped: skipped, trainDescription: "\(file) (train lines)",
                      layout: "list file \(file)")
}
