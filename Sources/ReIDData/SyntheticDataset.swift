// The synthetic dataset's plan: which identities go to which split, which camera sees each picture,
// the Market-1501 file names, and writing the JPEGs. Drawing lives in SyntheticRenderer.swift; the
// other layouts (MSMT17, list file) in SyntheticLayouts.swift.
import Foundation

/// A synthetic person re-ID dataset, for demos and tests. In the Market-1501 layout (the default):
/// `bounding_box_train/`, `query/`, `bounding_box_test/`, files named `PPPP_cCsS_FFFFFF_NN.jpg`;
/// also as an MSMT17 release or a list dataset (`Layout`).
/// Test identities are disjoint from training identities; every test identity has one query in each of
/// at least two cameras and gallery pictures in at least one camera that holds none of its queries.
/// The gallery also holds distractors (pid 0) and junk (pid -1). Output is bit-identical for a seed.
public enum SyntheticDataset {
    public static let trainFolder = "bounding_box_train"
    public static let queryFolder = "query"
    public static let galleryFolder = "bounding_box_test"

    // MARK: Options and summary

    public struct Options: Sendable, Equatable {
        public var trainIDs = 100
        public var testIDs = 50
        /// Training pictures per training identity, and gallery pictures per test identity.
        public var imagesPerID = 8
        public var cameras = 4
        public var seed: UInt64 = 0
        public var height = 128
        public var width = 64
        /// Distractor pictures (pid 0) in the gallery; nil = a fifth of the genuine gallery pictures.
        public var distractors: Int? = nil
        /// Junk pictures (pid -1) in the gallery; nil = a tenth of the genuine gallery pictures.
        public var junk: Int? = nil
        public var jpegQuality = 90
        public var layout = Layout.market1501

        public init(trainIDs: Int = 100, testIDs: Int = 50, imagesPerID: Int = 8, cameras: Int = 4, seed: UInt64 = 0,
                    height: Int = 128, width: Int = 64, distractors: Int? = nil, junk: Int? = nil, jpegQuality: Int = 90,
                    layout: Layout = .market1501) {
            self.trainIDs = trainIDs; self.testIDs = testIDs; self.imagesPerID = imagesPerID; self.cameras = cameras
            self.seed = seed; self.height = height; self.width = width
            self.distractors = distractors; self.junk = junk; self.jpegQuality = jpegQuality; self.layout = layout
        }

        public var distractorCount: Int { distractors ?? max(1, testIDs * imagesPerID / 5) }
        public var junkCount: Int { junk ?? max(1, testIDs * imagesPerID / 10) }

        /// Throws a one-line error naming the first bad option.
        public func validate() throws {
            func check(_ ok: Bool, _ message: String) throws { if !ok { throw SyntheticDatasetError(message) } }
            try check(trainIDs >= 0, "synth: --train-ids must be >= 0 (got \(trainIDs))")
            try check(testIDs >= 1, "synth: --test-ids must be >= 1 (got \(testIDs))")
            try check(trainIDs + testIDs <= 9999, "synth: --train-ids + --test-ids must be <= 9999 (4-digit pids; got \(trainIDs + testIDs))")
            try check(imagesPerID >= 2, "synth: --images-per-id must be >= 2 so every query has a gallery match (got \(imagesPerID))")
            try check((2...9).contains(cameras), "synth: --cameras must be in 2...9 (one-digit camera ids; got \(cameras))")
            try check(height >= 32 && width >= 16, "synth: image size \(height)x\(width) is too small (at least 32x16)")
            try check(height <= 2048 && width <= 2048, "synth: image size \(height)x\(width) is too large (at most 2048x2048)")
            try check(distractorCount >= 0, "synth: distractor count must be >= 0 (got \(distractorCount))")
            try check(junkCount >= 0, "synth: junk count must be >= 0 (got \(junkCount))")
            try check((1...100).contains(jpegQuality), "synth: JPEG quality must be in 1...100 (got \(jpegQuality))")
        }
    }

    /// What a parser reports for one split (junk excluded, pid 0 counted as one identity).
    public struct SplitCounts: Sendable, Equatable, CustomStringConvertible {
        public var ids: Int
        public var images: Int
        public var cameras: Int
        public init(ids: Int, images: Int, cameras: Int) { self.ids = ids; self.images = images; self.cameras = cameras }
        public var description: String { "\(ids) ids, \(images) images, \(cameras) cameras" }
    }

    public struct Summary: Sendable, Equatable, CustomStringConvertible {
        public var layout: Layout
        /// MSMT17: list_train.txt only (list_val.txt is `val`).
        public var train: SplitCounts
        /// MSMT17's list_val.txt (nil in the other layouts).
        public var val: SplitCounts?
        public var query: SplitCounts
        /// Includes the distractors (as images and as the one identity pid 0); excludes junk.
        public var gallery: SplitCounts
        public var distractors: Int
        public var junk: Int
        /// Every picture written (junk included).
        public var filesWritten: Int
        /// The plan's pids, sorted (MSMT17 names them 0..<count in this order).
        public var trainPIDs: [Int]
        public var testPIDs: [Int]

        public var description: String {
            switch layout {
            case .market1501, .list:
                let (t, q, g) = layout == .list ? ("list.txt train", "list.txt query", "list.txt gallery")
                    : (SyntheticDataset.trainFolder, SyntheticDataset.queryFolder, SyntheticDataset.galleryFolder)
                return """
                    train   (\(t)): \(train)
                    query   (\(q)): \(query)
                    gallery (\(g)): \(gallery), of which \(distractors) distractor images (pid 0)
                    junk    (pid -1, in \(g), not counted): \(junk) images
                    """
            case .msmt17V1, .msmt17V2:
                let r = layout.msmt17Release!
                return """
                    train   (\(r)/list_train.txt): \(train)
                    val     (\(r)/list_val.txt): \(val ?? SplitCounts(ids: 0, images: 0, cameras: 0))
                    query   (\(r)/list_query.txt): \(query)
                    gallery (\(r)/list_gallery.txt): \(gallery)
                    """
            }
        }
    }

    // MARK: Plan

    /// One file to write.
    struct PlannedImage {
        var folder: String
        var fileName: String
        var pid: Int          // -1 junk, 0 distractor
        var camera: Int       // 1-based
        var shot: SyntheticShot
    }

    /// Lays out every picture of the dataset (identities, cameras, names), without drawing anything.
    static func plan(_ options: Options) -> (images: [PlannedImage], trainPIDs: [Int], testPIDs: [Int]) {
        var rng = SyntheticRNG(seed: options.seed, stream: 0)
        // Camera light and scene tone: evenly spread levels, shuffled over the cameras; the dimmest
        // camera gets the lightest scene so no camera is much darker overall than the others.
        var lightOrder = Array(0..<options.cameras)
        rng.shuffle(&lightOrder)
        let toneOrder = lightOrder.map { options.cameras - 1 - $0 }
        let cameras = (0..<options.cameras).map { c -> SyntheticCamera in
            var cameraRNG = SyntheticRNG(seed: options.seed, stream: 1, UInt64(c))
            let n = Float(options.cameras)
            return SyntheticCamera.random(index: c, lightLevel: (Float(lightOrder[c]) + cameraRNG.unit()) / n,
                                          toneLevel: (Float(toneOrder[c]) + cameraRNG.unit()) / n, using: &cameraRNG)
        }
        func person(_ pid: Int) -> SyntheticPerson {
            var personRNG = SyntheticRNG(seed: options.seed, stream: 2, UInt64(pid))
            return .random(using: &personRNG)
        }

        // Identities: a shuffled 1...N, so train and test pids interleave as in Market-1501.
        var pids = Array(1...(options.trainIDs + options.testIDs))
        rng.shuffle(&pids)
        let trainPIDs = pids[..<options.trainIDs].sorted(), testPIDs = pids[options.trainIDs...].sorted()

        var images: [PlannedImage] = []
        var usedNames: Set<String> = []
        func add(_ folder: String, pid: Int, camera: Int, subject: SyntheticShot.Subject) {
            var name: String
            repeat {
                let frame = rng.int(0...999_999), sequence = rng.int(1...6), box = pid == -1 ? 0 : rng.int(1...4)
                let pidText = pid == -1 ? "-1" : padded(pid, 4)
                name = "\(pidText)_c\(camera)s\(sequence)_\(padded(frame, 6))_\(padded(box, 2)).jpg"
            } while !usedNames.insert(folder + "/" + name).inserted
            var shotRNG = SyntheticRNG(seed: options.seed, stream: 3, UInt64(images.count))
            let shotSeed = shotRNG.next()
            images.append(PlannedImage(folder: folder, fileName: name, pid: pid, camera: camera,
                                       shot: SyntheticShot(subject: subject, camera: cameras[camera - 1], seed: shotSeed)))
        }
        func shuffledCameras() -> [Int] { var c = Array(1...options.cameras); rng.shuffle(&c); return c }
        let k = options.imagesPerID

        // Training: each identity seen by 2...C cameras, the first pictures covering every one of them.
        for pid in trainPIDs {
            let seenBy = Array(shuffledCameras().prefix(rng.int(2...options.cameras)))
            let p = person(pid)
            for j in 0..<k {
                add(trainFolder, pid: pid, camera: j < seenBy.count ? seenBy[j] : rng.pick(seenBy), subject: .person(p))
            }
        }
        // Test: one query in each of 2 (or 3) cameras; gallery pictures start with the cameras that
        // hold no query, so every query has a match in another camera.
        for pid in testPIDs {
            let seenBy = Array(shuffledCameras().prefix(rng.int(min(3, options.cameras)...options.cameras)))
            let queryCount = seenBy.count >= 4 ? rng.int(2...3) : 2
            let p = person(pid)
            for camera in seenBy.prefix(queryCount) { add(queryFolder, pid: pid, camera: camera, subject: .person(p)) }
            let galleryOrder = Array(seenBy[queryCount...]) + Array(seenBy[..<queryCount])
            for j in 0..<k {
                add(galleryFolder, pid: pid, camera: j < galleryOrder.count ? galleryOrder[j] : rng.pick(galleryOrder), subject: .person(p))
            }
        }
        // Distractors: half other people (never seen again), half scenes without a person.
        for d in 0..<options.distractorCount {
            let camera = rng.int(1...options.cameras)
            if rng.chance(0.5) {
                var strangerRNG = SyntheticRNG(seed: options.seed, stream: 4, UInt64(d))
                add(galleryFolder, pid: 0, camera: camera, subject: .person(.random(using: &strangerRNG)))
            } else {
                add(galleryFolder, pid: 0, camera: camera, subject: .scenery)
            }
        }
        // Junk: pieces of test identities (bad detections), ignored by the protocol.
        for _ in 0..<options.junkCount {
            add(galleryFolder, pid: -1, camera: rng.int(1...options.cameras), subject: .fragment(person(rng.pick(testPIDs))))
        }
        return (images, trainPIDs, testPIDs)
    }

    // MARK: Writing

    /// Renders and writes the dataset under `directory` (created if needed), in `options.layout`. What
    /// the layout writes at the top (the three split folders, the MSMT17 release folder, or images/ and
    /// list.txt) must not exist yet, or be an empty folder, unless `replacingExisting` is true, in which
    /// case it is deleted first.
    @discardableResult
    public static func write(to directory: URL, options: Options = Options(), replacingExisting: Bool = false) throws -> Summary {
        try options.validate()
        let fm = FileManager.default
        for name in options.layout.topLevel {
            let url = directory.appendingPathComponent(name)
            var isDir: ObjCBool = false
            guard fm.fileExists(atPath: url.path, isDirectory: &isDir) else { continue }
            let entries = isDir.boolValue ? (try? fm.contentsOfDirectory(atPath: url.path)) ?? [] : [name]
            guard !entries.isEmpty else { continue }
            guard replacingExisting else {
                throw SyntheticDatasetError("synth: \(url.path) already \(isDir.boolValue ? "holds \(entries.count) files" : "exists"); choose an empty output directory or pass --force")
            }
            try fm.removeItem(at: url)
        }

        let planned = plan(options)
        let (images, lists) = place(planned.images, trainPIDs: planned.trainPIDs, testPIDs: planned.testPIDs, layout: options.layout)
        do {
            for folder in Set(images.map { ($0.path as NSString).deletingLastPathComponent }).sorted() {
                try fm.createDirectory(at: directory.appendingPathComponent(folder), withIntermediateDirectories: true)
            }
            for list in lists { try Data(list.text.utf8).write(to: directory.appendingPathComponent(list.path)) }
        } catch {
            throw SyntheticDatasetError("synth: cannot create the folders and lists under \(directory.path): \(error.localizedDescription)")
        }

        let failures = FailureLog()
        // Pictures are independent (each has its own random stream), so they render in parallel.
        DispatchQueue.concurrentPerform(iterations: images.count) { i in
            let image = images[i].image
            let url = directory.appendingPathComponent(images[i].path)
            do {
                let rgb = SyntheticRenderer.render(image.shot, width: options.width, height: options.height)
                let jpeg = try encodeJPEG(rgb: rgb, width: options.width, height: options.height, quality: options.jpegQuality)
                try Data(jpeg).write(to: url)
            } catch {
                failures.record("synth: cannot write \(url.path): \(error)")
            }
        }
        if let failure = failures.first { throw SyntheticDatasetError(failure) }

        let isMSMT17 = options.layout.msmt17Release != nil
        return Summary(
            layout: options.layout, train: counts(images, split: "train"), val: isMSMT17 ? counts(images, split: "val") : nil,
            query: counts(images, split: "query"), gallery: counts(images, split: "gallery"),
            distractors: isMSMT17 ? 0 : images.filter { $0.pid == 0 }.count, junk: images.filter { $0.pid == -1 }.count,
            filesWritten: images.count, trainPIDs: planned.trainPIDs, testPIDs: planned.testPIDs)
    }

    static func padded(_ value: Int, _ digits: Int) -> String {
        let text = String(value)
        return String(repeating: "0", count: max(0, digits - text.count)) + text
    }
}

/// A synthetic dataset could not be made; the message names the option or file.
public struct SyntheticDatasetError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// The first error from parallel writers (lock-protected).
private final class FailureLog: @unchecked Sendable {
    private let lock = NSLock()
    private var messages: [String] = []
    func record(_ message: String) { lock.lock(); messages.append(message); lock.unlock() }
    var first: String? { lock.lock(); defer { lock.unlock() }; return messages.first }
}
