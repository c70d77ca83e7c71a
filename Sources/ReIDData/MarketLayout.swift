import Foundation

// MARK: Market-1501 / DukeMTMC-reID folder layout

enum MarketStyle {
    case market1501, dukemtmc
    var title: String { self == .market1501 ? "Market-1501" : "DukeMTMC-reID" }
    var example: String { self == .market1501 ? "0002_c1s1_000451_03.jpg" : "0001_c2_f0046182.jpg" }
}

/// The three folders, found in `root` or one level below it (e.g. `root/Market-1501-v15.09.15/`).
func locateMarketLayout(root: String, style: MarketStyle) throws -> String {
    let fm = FileManager.default
    var isDir: ObjCBool = false
    guard fm.fileExists(atPath: root, isDirectory: &isDir), isDir.boolValue else {
        throw DatasetError("\(root): no such folder (expected the \(style.title) folder)")
    }
    func hasAny(_ dir: String) -> Bool {
        ["bounding_box_train", "query", "bounding_box_test"].contains { fm.fileExists(atPath: dir + "/" + $0) }
    }
    if hasAny(root) { return root }
    let subs = ((try? fm.contentsOfDirectory(atPath: root)) ?? []).sorted()
    for sub in subs where hasAny(root + "/" + sub) { return root + "/" + sub }
    throw DatasetError("\(root): no \(style.title) layout found (expected folders bounding_box_train, query, bounding_box_test here or in a subfolder)")
}

/// Parses `NNNN_cX...` names: pid (may be -1) and 1-based camera digits after `c`.
func parseMarketName(_ file: String, style: MarketStyle) -> (pid: Int, camera: Int)? {
    let parts = file.split(separator: "_", omittingEmptySubsequences: false)
    guard parts.count >= 3, let pid = Int(parts[0]), pid >= -1 else { return nil }
    let cam = parts[1]
    guard cam.first == "c" else { return nil }
    let digits = cam.dropFirst().prefix { $0.isASCII && $0.isNumber }
    guard !digits.isEmpty, let camera = Int(digits) else { return nil }
    switch style {
    case .market1501: guard cam.dropFirst(1 + digits.count).first == "s" else { return nil }
    case .dukemtmc: guard digits.count == cam.count - 1 else { return nil }
    }
    return (pid, camera)
}

/// Lists one folder's images. Junk (pid -1) is dropped; distractors (pid 0)
/// kept only where `keepDistractors`.
func parseMarketFolder(_ dir: String, style: MarketStyle, keepDistractors: Bool, skipped: inout [SkippedFile]) throws -> [ReIDImage] {
    let fm = FileManager.default
    var isDir: ObjCBool = false
    guard fm.fileExists(atPath: dir, isDirectory: &isDir), isDir.boolValue else {
        throw DatasetError("\(dir): missing folder (expected \(style.title) images named like \(style.example))")
    }
    let names = try fm.contentsOfDirectory(atPath: dir).sorted()
    var images: [ReIDImage] = []
    for name in names {
        let path = dir + "/" + name
        let ext = (name as NSString).pathExtension.lowercased()
        guard ext == "jpg" || ext == "jpeg" else {
            fm.fileExists(atPath: path, isDirectory: &isDir)
            skipped.append(SkippedFile(path: path, reason: isDir.boolValue ? "a folder, not an image" : "not a .jpg file"))
            continue
        }
        guard let (pid, camera) = parseMarketName(name, style: style) else {
            skipped.append(SkippedFile(path: path, reason: "name does not match the \(style.title) pattern (like \(style.example))"))
            continue
        }
        guard camera >= 1 else {
            skipped.append(SkippedFile(path: path, reason: "camera \(camera) in the name (cameras are numbered from 1)"))
            continue
        }
        if pid == -1 { continue } // junk
        if pid == 0 && !keepDistractors {
            skipped.append(SkippedFile(path: path, reason: "distractor (pid 0) outside the gallery"))
            continue
        }
        images.append(ReIDImage(source: .jpeg(path: path), pid: pid, camera: camera - 1))
    }
    return images
}

func parseMarketLayout(root: String, style: MarketStyle) throws -> RawDataset {
    let base = try locateMarketLayout(root: root, style: style)
    var skipped: [SkippedFile] = []
    let train = try parseMarketFolder(base + "/bounding_box_train", style: style, keepDistractors: false, skipped: &skipped)
    let query = try parseMarketFolder(base + "/query", style: style, keepDistractors: false, skipped: &skipped)
    let gallery = try parseMarketFolder(base + "/bounding_box_test", style: style, keepDistractors: true, skipped: &skipped)
    var multiQuery: [ReIDImage]? = nil
    if style == .market1501, FileManager.default.fileExists(atPath: base + "/gt_bbox") {
        multiQuery = try parseMarketFolder(base + "/gt_bbox", style: style, keepDistractors: false, skipped: &skipped)
    }
    return RawDataset(train: train, query: query, gallery: gallery, multiQuery: multiQuery, skipped: skipped,
                      trainDescription: base + "/bounding_box_train")
}
