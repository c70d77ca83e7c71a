import Foundation

// MARK: MSMT17 (V1 and V2 releases), as torchreid and fast-reid read it

/// An MSMT17 release folder: `MSMT17_V1` holds `train/` and `test/`,
/// `MSMT17_V2` `mask_train_v2/` and `mask_test_v2/` (faces blurred); both hold
/// `list_train.txt`, `list_val.txt`, `list_query.txt`, `list_gallery.txt`.
/// Train and val list images under the train folder, query and gallery under the test folder.
struct MSMT17Layout: Equatable {
    var base: String
    var version: Int
    var trainFolder: String { base + (version == 1 ? "/train" : "/mask_train_v2") }
    var testFolder: String { base + (version == 1 ? "/test" : "/mask_test_v2") }
    func list(_ name: String) -> String { base + "/list_\(name).txt" }
}

/// Finds the release folder: `root` itself, or up to two levels below it
/// (`root/MSMT17_V2`, torchreid's `root/msmt17/MSMT17_V1`), the first holding
/// `list_train.txt` in sorted order (so MSMT17_V1 before MSMT17_V2, as torchreid).
func locateMSMT17(root: String) throws -> MSMT17Layout {
    var isDir: ObjCBool = false
    guard FileManager.default.fileExists(atPath: root, isDirectory: &isDir), isDir.boolValue else {
        throw DatasetError("\(root): no such folder (expected the MSMT17 folder: MSMT17_V1 or MSMT17_V2, or its parent)")
    }
    guard let list = findFile("list_train.txt", under: root) else {
        throw DatasetError("\(root): no MSMT17 release found (expected list_train.txt with train/ + test/ (MSMT17_V1) or mask_train_v2/ + mask_test_v2/ (MSMT17_V2), here or up to two folders below)")
    }
    let base = (list as NSString).deletingLastPathComponent
    func isFolder(_ path: String) -> Bool { FileManager.default.fileExists(atPath: path, isDirectory: &isDir) && isDir.boolValue }
    let v1 = MSMT17Layout(base: base, version: 1), v2 = MSMT17Layout(base: base, version: 2)
    for layout in [v1, v2] where isFolder(layout.trainFolder) || isFolder(layout.testFolder) {
        for folder in [layout.trainFolder, layout.testFolder] where !isFolder(folder) {
            throw DatasetError("\(folder): missing folder (the MSMT17_V\(layout.version) images listed by list_*.txt)")
        }
        return layout
    }
    throw DatasetError("\(base): holds list_train.txt but neither train/ + test/ (MSMT17_V1) nor mask_train_v2/ + mask_test_v2/ (MSMT17_V2)")
}

/// MSMT17 with torchreid's splits: train = list_train.txt (with `trainVal`, also
/// list_val.txt, torchreid's `combineall`), query and gallery from their lists.
/// Pids are as listed (test pids count from 0: pid 0 is a person, not a
/// distractor); cameras 1-based in names, 0-based stored.
func parseMSMT17(root: String, trainVal: Bool) throws -> RawDataset {
    let layout = try locateMSMT17(root: root)
    var skipped: [SkippedFile] = []
    func entries(_ list: String) throws -> [MSMT17Entry] {
        try parseMSMT17List(try readListFile(layout.list(list), what: "MSMT17 'path pid' lines"), file: layout.list(list))
    }
    func images(_ entries: [MSMT17Entry], _ list: String, folder: String) -> [ReIDImage] {
        entries.compactMap { e in
            listedImagePath(base: folder, relative: e.path, listedAt: "\(layout.list(list)) line \(e.line)", skipped: &skipped)
                .map { ReIDImage(source: .jpeg(path: $0), pid: e.pid, camera: e.camera - 1) }
        }
    }
    let trainEntries = try entries("train")
    var train = images(trainEntries, "train", folder: layout.trainFolder)
    if trainVal {
        let valEntries = try entries("val")
        // An image in both lists would count twice in the training set.
        let trainLines = Dictionary(trainEntries.map { ($0.path, $0.line) }, uniquingKeysWith: { a, _ in a })
        if let twice = valEntries.first(where: { trainLines[$0.path] != nil }) {
            throw ListFileError(file: layout.list("val"), line: twice.line,
                                "\(twice.path) is already listed in \(layout.list("train")) at line \(trainLines[twice.path]!)")
        }
        train += images(valEntries, "val", folder: layout.trainFolder)
    }
    let query = images(try entries("query"), "query", folder: layout.testFolder)
    let gallery = images(try entries("gallery"), "gallery", folder: layout.testFolder)
    return RawDataset(train: train, query: query, gallery: gallery, multiQuery: nil, skipped: skipped,
                      trainDescription: trainVal ? "\(layout.list("train")) + list_val.txt" : layout.list("train"),
                      layout: "MSMT17_V\(layout.version) layout at \(layout.base)")
}
