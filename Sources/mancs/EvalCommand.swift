import ArgumentParser
import Distributed
import FeatureExtraction
import Foundation
import HDF5Kit
import Kernels
import ReIDData
import ReIDEval

/// `mancs eval`: CMC / mAP / mINP from a features file (docs/method.md §5 and §7).
struct EvalCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "eval", abstract: "Evaluate features (CMC, mAP, mINP).",
        discussion: """
            Reads an HDF5 features file (/query and /gallery with features, pids, camids) and prints \
            rank-1/5/10/20, mAP and mINP in percent. --json prints the same numbers as fractions in 0..1 instead; --json-out FILE also writes them to FILE. \
            See docs/evaluation.md.
            """)

    @Option(help: "Features file (HDF5) to evaluate.")
    var features: String?

    @Option(name: .customLong("protocol"), help: "market (also Duke, MSMT17, list datasets, CUHK03 767/700) or cuhk03-classic (single-gallery-shot).")
    var evalProtocol: EvalProtocol = .market

    @Flag(help: "Market-1501 multi-query: average each query over the file's /multiquery images of its identity and camera.")
    var multiQuery = false

    @Flag(help: "Print the metrics as one JSON object (fractions in 0..1) instead of the table.")
    var json = false

    @Option(help: "Also write the metrics as JSON (fractions in 0..1) to this file. (The old spelling --json FILE still works.)")
    var jsonOut: String?

    @Option(help: "Keep the CMC up to this rank.")
    var maxRank = 50

    @OptionGroup var compute: ThreadsOption

    @Option(help: "Queries per distance block (default: 2^26 / gallery size, i.e. 256 MiB of distances).")
    var blockRows: Int?

    @Option(help: "Seed of the cuhk03-classic gallery draws.")
    var seed: UInt64 = 0

    @Option(help: "Checkpoint (or weights file, or mancs export safetensors file) to extract features with (instead of --features), with --data and --dataset.")
    var checkpoint: String?

    @Option(help: "Dataset root folder, with --checkpoint (--dataset list: the list file, or the folder holding list.txt).")
    var data: String?

    @Option(help: "Dataset name, with --checkpoint: \(DatasetName.helpList).")
    var dataset: String = "market1501"

    @Option(help: ArgumentHelp(BatchFlag.help + " Used with --checkpoint."))
    var batch = 32

    @Option(help: "With --checkpoint: also write the extracted features to this file.")
    var saveFeatures: String?

    @Flag(help: "With --checkpoint: average each image's features with those of its mirror image.")
    var flip = false

    @OptionGroup(title: "Distances and re-ranking")
    var scoring: ScoringFlags

    func validate() throws {
        try FlagCheck.int("max-rank", maxRank, 1...1_000_000)
        try FlagCheck.int("block-rows", blockRows, 1...(1 << 30))
        try FlagCheck.int("batch", batch, FlagCheck.batch)
        switch (features, checkpoint) {
        case (nil, nil): throw ValidationError("eval: pass --features FILE, or --checkpoint FILE --data DIR [--dataset NAME]")
        case (.some, .some): throw ValidationError("eval: pass either --features or --checkpoint, not both")
        case (nil, .some): if data == nil { throw ValidationError("eval: --checkpoint needs --data DIR (the dataset's root folder)") }
        default: break
        }
        if flip && checkpoint == nil {
            throw ValidationError("--flip needs --checkpoint (it changes how features are extracted; for a features file use mancs extract --flip)")
        }
    }

    func run() throws {
        let threads = compute.resolved
        setComputeThreads(threads)
        let start = Date()
        let source = features ?? checkpoint!
        let file: FeaturesFile
        if let features {
            try FileProbe.check(features, kind: "features")  // libhdf5 may crash on a crafted file: a child reads it first
            file = try FeaturesFile.read(features)
        } else {
            let progress = ExtractionProgress(label: "extract", enabled: !json)  // --json: stdout is one object
            let result = try extractFeatures(checkpoint: checkpoint!, data: data!, dataset: dataset,
                                             options: ExtractionOptions(batchSize: batch, flip: flip),
                                             progress: progress.callback)
            progress.finish()
            guard let extracted = result else {
                throw EvalError("\(checkpoint!): extraction returned no features")
            }
            file = extracted
            if let out = saveFeatures { try file.write(to: out) }
        }
        let readTime = Date().timeIntervalSince(start)
        let profile = EvalProfile()
        let options = scoring.apply(to: EvalOptions(maxRank: maxRank, threads: threads, blockRows: blockRows,
                                                    profile: profile))
        let result: EvalResult
        do {
            result = try evaluate(file, protocol: evalProtocol, multiQuery: multiQuery, options: options, seed: seed)
        } catch let e as EvalError {
            throw EvalError("\(source): \(e.message)")
        }
        let total = Date().timeIntervalSince(start)
        let settings = [flip ? "flip" : "", scoring.summary].filter { !$0.isEmpty }.joined(separator: ", ")
        let title = "\(source): \(evalProtocol.rawValue)\(multiQuery ? " multi-query" : ""), E = \(file.dim)"
            + (settings.isEmpty ? "" : ", \(settings)")
        let blas = BLASKernelSelection.report
        var object = result.jsonObject()
        object["blas_core"] = blas.core
        object["blas_core_selected_by"] = blas.source.rawValue
        let jsonData = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
        if json {
            print(String(decoding: jsonData, as: UTF8.self))
        } else {
            print(result.table(title: title))
            print(String(format: "  time     %.2f s (reading %.2f s, distances %.2f s, ranking %.2f s", total, readTime,
                     profile.distanceSeconds, profile.rankingSeconds)
              + (scoring.rerank ? String(format: ", re-ranking set-up %.2f s", profile.rerankSeconds) : "")
              + String(format: "; cpu %.2f s)", processCPUSeconds()))
            print("  kernels  \(blas.core) (\(blas.source == .mancs ? "selected by mancs" : blas.source == .environment ? "OPENBLAS_CORETYPE" : "OpenBLAS's choice"))")
        }
        if let jsonOut {
            try jsonData.write(to: URL(fileURLWithPath: jsonOut))
        }
    }
}

/// User + system CPU time of this process so far (all threads).
func processCPUSeconds() -> Double {
    var u = rusage()
    getrusage(RUSAGE_SELF.rawValue, &u)
    return Double(u.ru_utime.tv_sec + u.ru_stime.tv_sec) + Double(u.ru_utime.tv_usec + u.ru_stime.tv_usec) * 1e-6
}

extension EvalProtocol: ExpressibleByArgument {}
