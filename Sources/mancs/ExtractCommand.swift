import ArgumentParser
import Distributed
import FeatureExtraction
import Foundation
import Kernels
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
            size come from the checkpoint's config; a weights-only file (/model and /buffers) gets its \
            architecture from the tensor shapes and its input size from --height/--width (default 256x128).
            """)

    @Option(help: "Checkpoint or weights file (.h5).") var checkpoint: String
    @Option(help: "Dataset folder (or its parent).") var data: String
    @Option(help: "market1501, dukemtmc, cuhk03-labeled or cuhk03-detected.") var dataset = "market1501"
    @Option(help: "Output features file (.h5).") var out: String
    @Option(help: "Images per forward pass.") var batch = 32
    @Option(help: "Compute threads per rank (default: this rank's share of its node: the cores it may run on, at most cores / ranks on the node).") var threads: Int?
    @Option(help: "JPEG decoding threads per rank.") var loaderThreads = 2
    @Option(help: "Input height (overrides the checkpoint's config).") var height: Int?
    @Option(help: "Input width (overrides the checkpoint's config).") var width: Int?
    @Flag(help: "Do not store image paths.") var noPaths = false
    @Flag(help: "Flip test: average each image's features with those of its mirror image.") var flip = false
    @Flag(help: "Write L2-normalised features.") var normalize = false

    func validate() throws {
        guard batch >= 1 else { throw ValidationError("--batch must be at least 1") }
        if let t = threads, t < 1 { throw ValidationError("--threads must be at least 1") }
        guard loaderThreads >= 1 else { throw ValidationError("--loader-threads must be at least 1") }
        if let h = height, h < 32 { throw ValidationError("--height must be at least 32") }
        if let w = width, w < 16 { throw ValidationError("--width must be at least 16") }
    }

    func run() throws {
        let terminal = StageProgress.stdoutIsTerminal  // before MPI_Init sets mpirun's variables
        let comm = try Communicator.world()
        defer { comm.finalize() }
        setComputeThreads(threads ?? NodeShare.defaultComputeThreads)
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
