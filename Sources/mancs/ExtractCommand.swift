import ArgumentParser
import Distributed
import FeatureExtraction
import Foundation
import Kernels
import ReIDData
import ReIDEval

/// `mancs extract`: f_rank features of a dataset's query and gallery (and
/// Market-1501 multi-query) images, written as the features file of docs/method.md §7.
struct ExtractCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "extract", abstract: "Extract query/gallery features with a checkpoint.",
        discussion: """
            Runs the network in inference mode (evaluation transform: resize + normalise) and writes \
            /query, /gallery (and /multiquery when the dataset has gt_bbox) with features, pids, camids, paths. \
            Under mpirun the images are split across ranks in contiguous blocks and rank 0 writes the file; \
            the result does not depend on the number of ranks or the batch size. The architecture and input \
            size come from the checkpoint's config (a `mancs export` safetensors file: its metadata); a weights-only \
            file (/model and /buffers) gets its architecture from the tensor shapes and its input size from \
            --height/--width (default 256x128).
            """)

    @Option(help: "Checkpoint or weights file (.h5), or a safetensors file written by mancs export.") var checkpoint: String
    @Option(help: "Dataset folder (or its parent; --dataset list: the list file, or the folder holding list.txt).") var data: String
    @Option(help: "\(DatasetName.helpList).") var dataset = "market1501"
    @Option(help: "Output features file (.h5).") var out: String
    @Option(help: ArgumentHelp(BatchFlag.help)) var batch = 32
    @OptionGroup var compute: ThreadsOption
    @Option(help: "Image decoding threads per rank.") var loaderThreads = 2
    @Option(help: "Input height (overrides the checkpoint's config).") var height: Int?
    @Option(help: "Input width (overrides the checkpoint's config).") var width: Int?
    @Flag(help: "Do not store image paths.") var noPaths = false
    @Flag(help: "Flip test: average each image's features with those of its mirror image.") var flip = false
    @Flag(help: "Write L2-normalised features.") var normalize = false

    func validate() throws {
        try FlagCheck.int("batch", batch, FlagCheck.batch)
        try FlagCheck.int("loader-threads", loaderThreads, FlagCheck.loaderThreads)
        try FlagCheck.int("height", height, FlagCheck.height)
        try FlagCheck.int("width", width, FlagCheck.width)
    }

    func run() throws {
        let terminal = StageProgress.stdoutIsTerminal  // before MPI_Init sets mpirun's variables
        let comm = try Communicator.world()
        defer { comm.finalize() }
        setComputeThreads(compute.resolved)
        let start = Date()
        let options = ExtractionOptions(batchSize: batch, loaderThreads: loaderThreads, height: height, width: width,
                                        paths: !noPaths, flip: flip)
        do {
            let progress = ExtractionProgress(label: comm.size > 1 ? "extract (rank 0 of \(comm.size))" : "extract",
                                              enabled: comm.isRoot, interactive: terminal)
            let extracted = try extractFeatures(checkpoint: checkpoint, data: data, dataset: dataset, options: options,
                                                comm: comm, progress: progress.callback)
            progress.finish()
            guard let file = extracted else { return }
            let written = try normalize ? file.l2Normalized() : file
            try written.write(to: out)
            let n = file.query.count + file.gallery.count + (file.multiQuery?.count ?? 0)
            let seconds = Date().timeIntervalSince(start)
            print("extract: \(file.query.count) query + \(file.gallery.count) gallery"
                  + (file.multiQuery.map { " + \($0.count) multi-query" } ?? "")
                  + " images, E = \(file.dim), \(comm.size) rank(s): "
                  + String(format: "%.1f s (%.1f images/s)", seconds, Double(n) / max(seconds, 1e-9)) + " -> \(out)")
        } catch {
            if comm.isRoot { for line in "\(error)".split(separator: "\n") { FileHandle.standardError.write(Data("mancs extract: \(line)\n".utf8)) } }
            throw ExitCode.failure
        }
    }
}
