// Where the synthetic dataset's pictures go in each layout `mancs synth` writes:
// Market-1501 folders, an MSMT17 release (V1 or V2) with its list files, or a
// generic list dataset. The pictures themselves (the plan) are the same.
import Foundation

extension SyntheticDataset {
    public enum Layout: String, CaseIterable, Sendable {
        /// bounding_box_train/, query/, bounding_box_test/ (distractors and junk included).
        case market1501
        /// MSMT17_V1/{train,test}/PPPP/*.jpg with list_{train,val,query,gallery}.txt.
        case msmt17V1 = "msmt17-v1"
        /// MSMT17_V2/{mask_train_v2,mask_test_v2}/PPPP/*.jpg with the four lists.
        case msmt17V2 = "msmt17-v2"
        /// images/{train,query,gallery}/*.jpg and list.txt (`path pid camid split`).
        case list

        /// A layout by name; `msmt17` is the current release, V2.
        public init?(parsing text: String) {
            if text == "msmt17" { self = .msmt17V2 } else if let l = Layout(rawValue: text) { self = l } else { return nil }
        }

        /// The dataset name `mancs data` / `mancs-dist --dataset` reads it with.
        public var datasetName: DatasetName {
            switch self {
            case .market1501: return .market1501
            case .msmt17V1, .msmt17V2: return .msmt17
            case .list: return .list
            }
        }

        var msmt17Release: String? { self == .msmt17V1 ? "MSMT17_V1" : self == .msmt17V2 ? "MSMT17_V2" : nil }

        /// What `write` creates directly under the output folder (checked to be absent or empty first).
        var topLevel: [String] {
            switch self {
            case .market1501: return [trainFolder, queryFolder, galleryFolder]
            case .msmt17V1, .msmt17V2: return [msmt17Release!]
            case .list: return ["images", "list.txt"]
            }
        }
    }

    /// A picture of the plan at its place in a layout.
    struct PlacedImage {
        var image: PlannedImage
        /// Relative to the output folder.
        var path: String
        /// train, val (MSMT17 only), query or gallery.
        var split: String
        /// The pid the layout names it with (-1 junk, 0 distractor in Market-1501 and list).
        var pid: Int
    }

    /// Places the plan's pictures in `layout` and returns them with the list
    /// files to write (relative path -> text). MSMT17 has no distractors and no
    /// junk, so those pictures are left out; its train and test pids each count
    /// from 0 (as in the release), and the last picture of each training
    /// identity with at least 3 goes to list_val.txt.
    static func place(_ images: [PlannedImage], trainPIDs: [Int], testPIDs: [Int], layout: Layout)
        -> (images: [PlacedImage], lists: [(path: String, text: String)]) {
        func split(_ folder: String) -> String {
            folder == trainFolder ? "train" : folder == queryFolder ? "query" : "gallery"
        }
        switch layout {
        case .market1501:
            return (images.map { PlacedImage(image: $0, path: $0.folder + "/" + $0.fileName, split: split($0.folder), pid: $0.pid) }, [])

        case .list:
            let placed = images.map { i -> PlacedImage in
                let s = split(i.folder)
                return PlacedImage(image: i, path: "images/\(s)/\(i.fileName)", split: s, pid: i.pid)
            }
            let lines = placed.map { "\($0.path) \($0.pid) \($0.image.camera - 1) \($0.split)\n" }
            return (placed, [("list.txt", "# path pid camid split (mancs synth --layout list)\n" + lines.joined())])

        case .msmt17V1, .msmt17V2:
            let release = layout.msmt17Release!
            let (trainDir, testDir) = layout == .msmt17V1 ? ("train", "test") : ("mask_train_v2", "mask_test_v2")
            let trainIndex = Dictionary(uniqueKeysWithValues: trainPIDs.enumerated().map { ($1, $0) })
            let testIndex = Dictionary(uniqueKeysWithValues: testPIDs.enumerated().map { ($1, $0) })
            let perTrainID = Dictionary(grouping: images.filter { $0.folder == trainFolder }, by: \.pid).mapValues(\.count)
            var seen: [String: Int] = [:]   // pictures so far per (folder, pid): the name's second field
            var placed: [PlacedImage] = []
            var lists: [String: [String]] = [:]
            for image in images where image.pid > 0 {
                let isTrain = image.folder == trainFolder
                let pid = isTrain ? trainIndex[image.pid]! : testIndex[image.pid]!
                let n = seen[image.folder + "\(pid)", default: 0]
                seen[image.folder + "\(pid)"] = n + 1
                // Names as the release's: pid_index_camera_dateTime_frame_0.jpg.
                let name = "\(padded(pid, 4))/\(padded(pid, 4))_\(padded(n, 3))_\(padded(image.camera, 2))_0302morning_\(padded(placed.count, 4))_0.jpg"
                var s = split(image.folder)
                if isTrain, let count = perTrainID[image.pid], count >= 3, n == count - 1 { s = "val" }
                placed.append(PlacedImage(image: image, path: "\(release)/\(isTrain ? trainDir : testDir)/\(name)", split: s, pid: pid))
                lists["\(release)/list_\(s).txt", default: []].append("\(name) \(pid)\n")
            }
            let order = ["train", "val", "query", "gallery"].map { "\(release)/list_\($0).txt" }
            return (placed, order.map { ($0, (lists[$0] ?? []).joined()) })
        }
    }

    /// Counts of one split as its parser reads them: junk (pid -1) dropped, pid 0 one identity.
    static func counts(_ placed: [PlacedImage], split: String) -> SplitCounts {
        let kept = placed.filter { $0.split == split && $0.pid != -1 }
        return SplitCounts(ids: Set(kept.map(\.pid)).count, images: kept.count, cameras: Set(kept.map(\.image.camera)).count)
    }
}
