import ArgumentParser
import Foundation
import ReIDData

struct SynthCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "synth",
        abstract: "Write a synthetic re-ID dataset (Market-1501, MSMT17 or list-file layout).",
        discussion: """
            Draws people whose identity lies in clothing colours and patterns, carried items, build and hair, \
            seen by cameras that differ in background, light, colour cast, blur and noise. Layouts: \
            market1501 writes DIR/bounding_box_train, DIR/query and DIR/bounding_box_test (with pid 0 \
            distractors and pid -1 junk); msmt17-v1 / msmt17-v2 (msmt17 = v2) write DIR/MSMT17_V1 (train/, \
            test/) or DIR/MSMT17_V2 (mask_train_v2/, mask_test_v2/) with list_train/val/query/gallery.txt \
            (no distractors or junk; the last picture of each training identity goes to list_val.txt); \
            list writes DIR/images/ and DIR/list.txt of 'path pid camid split' lines (distractors pid 0, \
            junk pid -1). Read them back with `mancs data --data DIR --dataset market1501|msmt17|list`. \
            The files are bit-identical for a seed.
            """)

    @Option(name: .long, help: "Output directory.") var out: String
    @Option(name: .long, help: "market1501, msmt17-v1, msmt17-v2 (or msmt17) or list.") var layout = "market1501"
    @Option(name: .long, help: "Training identities.") var trainIds = 100
    @Option(name: .long, help: "Test identities (disjoint from the training ones).") var testIds = 50
    @Option(name: .long, help: "Pictures per training identity, and gallery pictures per test identity.") var imagesPerId = 8
    @Option(name: .long, help: "Cameras (2...9).") var cameras = 4
    @Option(name: .long, help: "Random seed.") var seed: UInt64 = 0
    @Option(name: .long, help: "Image height in pixels.") var height = 128
    @Option(name: .long, help: "Image width in pixels.") var width = 64
    @Option(name: .long, help: "Distractor pictures (pid 0) in the gallery (default: a fifth of the genuine gallery).") var distractors: Int?
    @Option(name: .long, help: "Junk pictures (pid -1) in the gallery (default: a tenth of the genuine gallery).") var junk: Int?
    @Flag(name: .long, help: "Delete what the layout writes under --out (split folders, release folder, list) first.") var force = false

    func validate() throws {
        try FlagCheck.int("train-ids", trainIds, 0...9_998)
        try FlagCheck.int("test-ids", testIds, 1...9_999)
        try FlagCheck.int("images-per-id", imagesPerId, 2...10_000)
        try FlagCheck.int("cameras", cameras, 2...9)
        try FlagCheck.int("height", height, 32...2048)
        try FlagCheck.int("width", width, 16...2048)
        try FlagCheck.int("distractors", distractors, 0...1_000_000)
        try FlagCheck.int("junk", junk, 0...1_000_000)
    }

    func run() throws {
        guard let layout = SyntheticDataset.Layout(parsing: layout) else {
            throw ValidationError("synth: --layout must be one of \(SyntheticDataset.Layout.allCases.map(\.rawValue).joined(separator: ", ")) or msmt17, got '\(self.layout)'")
        }
        let options = SyntheticDataset.Options(
            trainIDs: trainIds, testIDs: testIds, imagesPerID: imagesPerId, cameras: cameras, seed: seed,
            height: height, width: width, distractors: distractors, junk: junk, layout: layout)
        do {
            try options.validate()
        } catch let error as SyntheticDatasetError {
            throw ValidationError(error.description)
        }
        let start = Date()
        let summary = try SyntheticDataset.write(to: URL(fileURLWithPath: out), options: options, replacingExisting: force)
        let seconds = Date().timeIntervalSince(start)
        print("synth: wrote \(summary.filesWritten) \(width)x\(height) JPEGs to \(out) in the \(layout.rawValue) layout (seed \(seed), \(String(format: "%.2f", seconds)) s; read with --dataset \(layout.datasetName.rawValue))")
        print(summary.description)
    }
}
