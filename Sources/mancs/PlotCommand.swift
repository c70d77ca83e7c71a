import ArgumentParser
import Foundation
import ReIDEval

/// `mancs plot`: the losses and evaluation rates of a run as an SVG.
struct PlotCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "plot", abstract: "Plot a run's losses and rank-1/mAP (from metrics.jsonl) as an SVG.",
        discussion: "Reads RUN_DIR/metrics.jsonl: \"kind\":\"train\" objects give loss, loss_rank, loss_cls, loss_att against step; \"kind\":\"eval\" objects give rank1 and mAP (percent) against step.")

    @Argument(help: "Run directory (holding metrics.jsonl).") var runDir: String
    @Option(help: "Output SVG (default RUN_DIR/training.svg).") var out: String?

    func run() throws {
        let input = (runDir as NSString).appendingPathComponent("metrics.jsonl")
        let output = out ?? (runDir as NSString).appendingPathComponent("training.svg")
        do {
            let metrics = try TrainingMetrics.read(input)
            let svg = trainingPlotSVG(metrics, title: (runDir as NSString).lastPathComponent)
            do { try svg.write(toFile: output, atomically: true, encoding: .utf8) } catch {
                throw EvalError("\(output): cannot write (\(error.localizedDescription))")
            }
            let counts = (metrics.losses + metrics.rates).map { "\($0.name) \($0.points.count)" }.joined(separator: ", ")
            print("plot: \(counts.isEmpty ? "no points" : counts) -> \(output)")
        } catch {
            FileHandle.standardError.write(Data("mancs plot: \(error)\n".utf8))
            throw ExitCode.failure
        }
    }
}
