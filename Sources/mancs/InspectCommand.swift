import ArgumentParser
import Checkpoint
import Foundation
import HDF5Kit

struct InspectCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "inspect", abstract: "Describe and verify a Mancs checkpoint.",
        discussion: "Reads every dataset back through its Fletcher32 checksum; exits non-zero with one line for a file that is not a Mancs checkpoint or is damaged. A safetensors file (mancs export) is described from its metadata, every tensor read once.")

    @Argument(help: "The checkpoint (.h5) or safetensors file to inspect.") var file: String
    @Flag(help: "Print one JSON object instead of text.") var json = false

    func run() throws {
        let summary: CheckpointSummary
        do {
            let url = URL(fileURLWithPath: file)
            if Checkpoint.isSafetensors(file) {
                summary = try Checkpoint.summarizeSafetensors(url)
            } else {
                try FileProbe.check(file, kind: "checkpoint")  // libhdf5 may crash on a crafted file: a child reads it first
                summary = try Checkpoint.verify(url)
            }
        } catch {
            FileHandle.standardError.write(Data("mancs inspect: \(error)\n".utf8))
            throw ExitCode(1)
        }
        print(json ? Self.json(summary) : Self.text(summary))
    }

    static func text(_ s: CheckpointSummary) -> String {
        func v<T>(_ x: T?) -> String { x.map { "\($0)" } ?? "-" }
        let mb = Double(s.parameterCount * 4) / 1_048_576
        var lines = [
            "file:         \(s.path) (\(s.fileBytes) bytes)",
            "format:       \(s.format ?? "weights only (no format attribute)") version \(v(s.version))",
            "global step:  \(v(s.globalStep))",
            "epoch:        \(v(s.epoch))",
            "world size:   \(v(s.worldSize))",
            "seed:         \(v(s.seed))",
            "parameters:   \(s.parameterCount) in \(s.parameterTensors) tensors (\(String(format: "%.2f", Double(s.parameterCount) / 1e6)) M, \(String(format: "%.1f", mb)) MB float32)",
            "buffers:      \(s.bufferCount) in \(s.bufferTensors) tensors",
            "optimizer:    \(s.adamStep.map { "Adam, step \($0)" } ?? "none (weights only)")",
            s.format?.hasPrefix("safetensors") == true ? "tensors:      \(s.datasetsVerified) read back (safetensors: no checksums)"
                : "checksums:    OK (\(s.datasetsVerified) datasets read back)",
        ]
        if let c = s.config { lines.append("settings:     \(c)") }
        return lines.joined(separator: "\n")
    }

    static func json(_ s: CheckpointSummary) -> String {
        var o: [String: Any] = [
            "file": s.path, "file_bytes": s.fileBytes, "parameter_count": s.parameterCount,
            "parameter_tensors": s.parameterTensors, "parameter_bytes": s.parameterCount * 4,
            "buffer_count": s.bufferCount, "buffer_tensors": s.bufferTensors,
            "datasets_verified": s.datasetsVerified, "checksums": s.format?.hasPrefix("safetensors") == true ? "none" : "ok", "has_state": s.hasState,
        ]
        if let x = s.format { o["format"] = x }
        if let x = s.version { o["version"] = x }
        if let x = s.globalStep { o["global_step"] = x }
        if let x = s.epoch { o["epoch"] = x }
        if let x = s.worldSize { o["world_size"] = x }
        if let x = s.seed { o["seed"] = x }
        if let x = s.adamStep { o["optimizer_step"] = x }
        if let c = s.config {
            o["config"] = (try? JSONSerialization.jsonObject(with: Data(c.utf8))) ?? c
        }
        let data = (try? JSONSerialization.data(withJSONObject: o, options: [.sortedKeys, .withoutEscapingSlashes])) ?? Data("{}".utf8)
        return String(decoding: data, as: UTF8.self)
    }
}
