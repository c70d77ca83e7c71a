import ArgumentParser
import Foundation
import ReIDData

struct DataCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "data", abstract: "Summarise (and verify) a re-ID dataset.",
        discussion: "Prints identities, images and cameras of train / query / gallery, and every file skipped and why. Junk (pid -1) is not counted; distractors (pid 0) are.")

    @Option(name: .long, help: "Dataset folder (or its parent); for --dataset list, the list file or the folder holding list.txt.")
    var data: String

    @Option(name: .long, help: "\(DatasetName.helpList) (default market1501, also the layout `mancs synth` writes by default).")
    var dataset: String = "market1501"

    @Flag(name: .long, help: "Decode every image; undecodable ones are listed as skipped.")
    var verify = false

    @Flag(name: .long, help: "Print one JSON object.")
    var json = false

    @Option(name: .customLong("cuhk03-classic-split"), help: "CUHK03: use the classic 1367/100 split with this index (0-19) instead of the 767/700 protocol.")
    var cuhk03ClassicSplit: Int?

    @Option(name: .long, help: "Also time N training images decoded + augmented on one thread and print images per second.")
    var benchmark: Int?

    func validate() throws {
        try FlagCheck.int("cuhk03-classic-split", cuhk03ClassicSplit, 0...19)
        try FlagCheck.int("benchmark", benchmark, 1...10_000_000)
    }

    struct SplitSummary: Codable { var ids: Int; var images: Int; var cameras: Int }
    struct Summary: Codable { var train: SplitSummary; var query: SplitSummary; var gallery: SplitSummary; var skipped: [SkippedFile] }

    func run() throws {
        let options = DatasetOptions(verify: verify, cuhk03Protocol: cuhk03ClassicSplit.map { .classic(split: $0) } ?? .new)
        let d: ReIDDataset
        do { d = try loadDataset(name: dataset, root: data, options: options) } catch {
            FileHandle.standardError.write(Data("mancs data: \(error)\n".utf8))
            throw ExitCode.failure
        }
        func summary(_ s: ReIDSplit) -> SplitSummary { SplitSummary(ids: s.identityCount, images: s.count, cameras: s.cameraCount) }
        let sum = Summary(train: summary(d.train), query: summary(d.query), gallery: summary(d.gallery), skipped: d.skipped)
        if let n = benchmark, n > 0 {
            try runBenchmark(d.train, count: n)
        }
        if json {
            let enc = JSONEncoder()
            enc.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
            print(String(decoding: try enc.encode(sum), as: UTF8.self))
            return
        }
        print("dataset \(d.name) at \(data)\(verify ? " (every image decoded)" : "")")
        if let layout = d.layout { print("read: \(layout)") }
        print("split        ids   images  cameras")
        for (name, s) in [("train", sum.train), ("query", sum.query), ("gallery", sum.gallery)] {
            print(name.padding(toLength: 8, withPad: " ", startingAt: 0)
                  + String(format: "%7d %8d %8d", s.ids, s.images, s.cameras))
        }
        if let mq = d.multiQuery { print("gt_bbox (multi-query): \(mq.identityCount) ids, \(mq.count) images") }
        print("skipped \(d.skipped.count) file(s)\(d.skipped.isEmpty ? "" : ":")")
        for s in d.skipped { print("  \(s.path): \(s.reason)") }
    }

    /// Single-thread decode + training augmentation throughput, in wall-clock
    /// and in this thread's CPU time (which other load on the machine does not
    /// change). To stderr, so --json stays one object.
    func runBenchmark(_ split: ReIDSplit, count: Int) throws {
        func cpuSeconds() -> Double {
            var t = timespec()
            clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t)
            return Double(t.tv_sec) + Double(t.tv_nsec) * 1e-9
        }
        let decoder = JPEGDecoder()
        let transform = ImageTransform()
        var out = [Float](repeating: 0, count: transform.settings.imageSize)
        var decodeCPU = 0.0
        let wall0 = Date(), cpu0 = cpuSeconds()
        try out.withUnsafeMutableBufferPointer { buffer in
            for i in 0..<count {
                let c = cpuSeconds()
                let image = try decodeImage(split.images[i % split.count], decoder: decoder)
                decodeCPU += cpuSeconds() - c
                transform.training(image, key: UInt64(i), into: buffer.baseAddress!)
            }
        }
        let wall = Date().timeIntervalSince(wall0), cpu = cpuSeconds() - cpu0
        let line = String(format: "benchmark: %d images decoded + augmented to %dx%d on one thread: %.0f images/s wall-clock, %.0f images/s of CPU time (decoding %.0f%% of it)\n",
                          count, transform.settings.height, transform.settings.width, Double(count) / wall, Double(count) / cpu, 100 * decodeCPU / cpu)
        FileHandle.standardError.write(Data(line.utf8))
    }
}
