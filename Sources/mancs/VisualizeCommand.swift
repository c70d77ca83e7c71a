import ArgumentParser
import Distributed
import FeatureExtraction
import Foundation
import Kernels
import ReIDData
import ReIDEval

/// `mancs visualize`: ranking strips and attention heat maps of a few queries.
struct VisualizeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "visualize", abstract: "Draw query rankings and attention masks as JPEGs with an index.html.",
        discussion: """
            For --queries random valid queries (--seed): query_NNN_ranking.jpg (the query, then its top 10 \
            gallery images under the Market-1501 protocol, green frame = right identity, red = wrong) and \
            query_NNN_attention.jpg (the query, then each FAB stage's mask: channel mean, upsampled, as a heat \
            map over the image). Extracts the whole gallery first (one process). See docs/visual.md.
            """)

    @Option(help: "Checkpoint or weights file (.h5), or a safetensors file written by mancs export.") var checkpoint: String
    @Option(help: "Dataset folder (or its parent; --dataset list: the list file, or the folder holding list.txt).") var data: String
    @Option(help: "\(DatasetName.helpList).") var dataset = "market1501"
    @Option(help: "Output folder.") var out: String
    @Option(help: "Number of queries to draw.") var queries = 8
    @Option(help: "Seed of the query choice.") var seed: UInt64 = 0
    @Option(help: "Gallery images per ranking.") var top = 10
    @Option(help: "Picture height of each image.") var tileHeight = 256
    @Option(help: "Picture width of each image.") var tileWidth = 128
    @Option(help: ArgumentHelp(BatchFlag.help)) var batch = 32
    @OptionGroup var compute: ThreadsOption
    @Option(help: "Input height (overrides the checkpoint's config).") var height: Int?
    @Option(help: "Input width (overrides the checkpoint's config).") var width: Int?

    func validate() throws {
        try FlagCheck.int("queries", queries, 1...10_000)
        try FlagCheck.int("top", top, 1...1_000)
        try FlagCheck.int("tile-height", tileHeight, 8...4096)
        try FlagCheck.int("tile-width", tileWidth, 8...4096)
        try FlagCheck.int("batch", batch, FlagCheck.batch)
        try FlagCheck.int("height", height, FlagCheck.height)
        try FlagCheck.int("width", width, FlagCheck.width)
    }

    func run() throws {
        setComputeThreads(compute.resolved)
        do {
            let d = try loadDataset(name: dataset, root: data)
            let network = try loadInferenceNetwork(checkpoint: checkpoint, maxBatch: batch, height: height, width: width)
            var options = VisualizationOptions(queries: queries, seed: seed, topK: top, tileHeight: tileHeight, tileWidth: tileWidth)
            options.batchSize = batch
            let drawn = try writeVisualization(network: network, dataset: d, directory: out, options: options) { print("visualize: \($0)") }
            let hits = drawn.map { $0.matches.first?.correct == true ? 1 : 0 }.reduce(0, +)
            print("visualize: \(drawn.count) queries (\(hits) right at rank 1) -> \(out)/index.html")
        } catch {
            FileHandle.standardError.write(Data("mancs visualize: \(error)\n".utf8))
            throw ExitCode.failure
        }
    }
}
