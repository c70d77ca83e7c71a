import Foundation
import HDF5Kit
import MancsModel
#if canImport(Glibc)
import Glibc
#endif

/// What a verified checkpoint says about itself (`mancs inspect`).
public struct CheckpointSummary: Sendable {
    public var path: String
    /// "mancs-checkpoint", or nil for a weights-only file written by another tool.
    public var format: String?
    public var version: Int64?
    public var globalStep: Int64?
    public var epoch: Int64?
    public var worldSize: Int64?
    public var seed: UInt64?
    public var config: String?
    public var parameterTensors: Int
    public var parameterCount: Int
    public var bufferTensors: Int
    public var bufferCount: Int
    /// Present when the file can resume training.
    public var adamStep: Int64?
    public var hasState: Bool
    /// Datasets read back whole (each through its Fletcher32 checksum).
    public var datasetsVerified: Int
    public var fileBytes: Int
}

extension Checkpoint {
    // MARK: Names

    /// `RUN_DIR/checkpoints`.
    public static func directory(runDirectory: URL) -> URL { runDirectory.appendingPathComponent("checkpoints") }

    /// `step-XXXXXXXX.h5` (8-digit global step).
    public static func fileName(step: Int64) -> String { String(format: "step-%08lld.h5", step) }

    /// The global step a checkpoint file name encodes, or nil for other names.
    public static func step(ofFileName name: String) -> Int64? {
        guard name.hasPrefix("step-"), name.hasSuffix(".h5") else { return nil }
        let digits = name.dropFirst(5).dropLast(3)
        guard digits.count == 8, digits.allSatisfy(\.isASCII), digits.allSatisfy(\.isNumber) else { return nil }
        return Int64(digits)
    }

    /// Checkpoint files of a directory, oldest first.
    public static func checkpointFiles(in dir: URL) -> [(step: Int64, url: URL)] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: dir.path)) ?? []
        return names.compactMap { n in step(ofFileName: n).map { ($0, dir.appendingPathComponent(n)) } }
            .sorted { $0.step < $1.step }
    }

    // MARK: Atomic save with retention

    /// Rank 0 only. Writes `RUN_DIR/checkpoints/step-XXXXXXXX.h5` atomically: a
    /// temporary name in the same directory, fsync, verify by reading it back,
    /// rename, fsync the directory. Then deletes what `retention` allows.
    /// A failure leaves every earlier checkpoint untouched.
    @discardableResult
    public static func save(parameters: ParameterStore, buffers: ParameterStore, adam: AdamMoments,
                            state: TrainingState, runDirectory: URL,
                            retention: CheckpointRetention = CheckpointRetention()) throws -> URL {
        let dir = directory(runDirectory: runDirectory)
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        removeStaleTemporaries(in: dir)
        let final = dir.appendingPathComponent(fileName(step: state.globalStep))
        try save(to: final, parameters: parameters, buffers: buffers, adam: adam, state: state)
        let files = checkpointFiles(in: dir)
        let victims = Set(retention.victims(existing: files.map(\.step), justWritten: state.globalStep))
        for old in files where victims.contains(old.step) { try? FileManager.default.removeItem(at: old.url) }
        return final
    }

    /// Rank 0 only. Writes a complete checkpoint to `final` (e.g. RUN_DIR/best.h5)
    /// through `HDF5File.replaceAtomically`, verified by reading it back: a failure
    /// leaves the previous file untouched.
    public static func save(to final: URL, parameters: ParameterStore, buffers: ParameterStore, adam: AdamMoments,
                            state: TrainingState) throws {
        try HDF5File.replaceAtomically(final, write: { try write(to: $0, parameters: parameters, buffers: buffers, adam: adam, state: state) },
                                       verify: { _ = try verify(URL(fileURLWithPath: $0)) })
    }

    /// Temporaries left by a save that was killed (only rank 0 writes here).
    static func removeStaleTemporaries(in dir: URL) {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: dir.path)) ?? []
        for n in names where n.hasPrefix(".step-") && n.contains(".h5.tmp-") {
            try? FileManager.default.removeItem(at: dir.appendingPathComponent(n))
        }
    }

    // MARK: Verification

    /// Opens a checkpoint (or a weights-only file), checks its format and version,
    /// and reads every dataset back (Fletcher32 detects damaged bytes).
    public static func verify(_ url: URL) throws -> CheckpointSummary {
        let path = url.path
        let file = try openWeights(path)
        defer { file.close() }
        let root = file.root
        var summary = CheckpointSummary(path: path, format: nil, version: nil, globalStep: nil, epoch: nil, worldSize: nil,
                                        seed: nil, config: nil, parameterTensors: 0, parameterCount: 0, bufferTensors: 0,
                                        bufferCount: 0, adamStep: nil, hasState: root.exists("state"), datasetsVerified: 0,
                                        fileBytes: ((try? FileManager.default.attributesOfItem(atPath: path)[.size]) as? Int) ?? 0)
        if root.hasAttribute("format") {
            summary.format = try root.stringAttribute("format")
            summary.version = try root.attribute("version", as: Int64.self).first
            summary.globalStep = try root.attribute("global_step", as: Int64.self).first
            summary.epoch = try root.attribute("epoch", as: Int64.self).first
            summary.worldSize = try root.attribute("world_size", as: Int64.self).first
            summary.seed = try root.attribute("seed", as: Int64.self).first.map { UInt64(bitPattern: $0) }
        }
        if root.hasAttribute("config") { summary.config = try root.stringAttribute("config") }
        if root.exists("optimizer"), try root.group("optimizer").hasAttribute("step") {
            summary.adamStep = try root.group("optimizer").attribute("step", as: Int64.self).first
        }
        // The walk refuses link cycles and links or storage in other files.
        func visit(_ g: HDF5Group, _ name: String) throws {
            let (values, _) = try g.read(name, as: Double.self)
            summary.datasetsVerified += 1
            if g.path == "/model" { summary.parameterTensors += 1; summary.parameterCount += values.count }
            if g.path == "/buffers" { summary.bufferTensors += 1; summary.bufferCount += values.count }
        }
        do { try root.walkDatasets(visit) } catch let e as HDF5Error {
            throw CheckpointError(e.message)  // already names the file and the dataset
        }
        if summary.format != nil {
            for required in ["model", "buffers", "optimizer/exp_avg", "optimizer/exp_avg_sq", "state/sampler", "state/rng"]
            where !root.exists(required) {
                throw CheckpointError("\(path): incomplete checkpoint: /\(required) is missing")
            }
        }
        return summary
    }

    /// For `--resume auto`: the newest checkpoint of `dir` that opens and verifies.
    /// Damaged or truncated files are skipped, each with a warning line; nil when none is usable.
    public static func latestValidCheckpoint(in dir: URL) -> (url: URL?, warnings: [String]) {
        var warnings: [String] = []
        for candidate in checkpointFiles(in: dir).reversed() {
            do {
                try FileProbe.check(candidate.url.path, kind: "checkpoint")  // libhdf5 may crash on a crafted file
                let summary = try verify(candidate.url)
                guard summary.format == formatName, summary.globalStep == candidate.step else {
                    warnings.append("skipping \(candidate.url.path): its global_step \(summary.globalStep.map(String.init) ?? "none") does not match its name")
                    continue
                }
                return (candidate.url, warnings)
            } catch {
                warnings.append("skipping \(candidate.url.path): \(error)")
            }
        }
        return (nil, warnings)
    }
}

/// Which checkpoints a run may delete. The run's own sequence is the files up
/// to the step it resumed from (0 for a fresh start) followed by the files it
/// wrote; retention keeps the newest `keep` of that sequence. A file newer
/// than the resume point that this run did not write (an earlier run's
/// progress, a file skipped as damaged, a run resumed from an older file) is
/// never deleted, nor is the file just written.
public final class CheckpointRetention: @unchecked Sendable {
    public let keep: Int
    public let resumedFrom: Int64
    /// Steps this run has saved.
    public private(set) var written: Set<Int64> = []

    public init(keep: Int = 3, resumedFrom: Int64 = 0) {
        precondition(keep >= 1, "keep must be at least 1, got \(keep)")
        self.keep = keep
        self.resumedFrom = resumedFrom
    }

    /// Records `justWritten` and returns the steps, among `existing`, to delete.
    public func victims(existing: [Int64], justWritten: Int64) -> [Int64] {
        written.insert(justWritten)
        let sequence = existing.filter { $0 <= resumedFrom || written.contains($0) }.sorted()
        return sequence.dropLast(keep).filter { $0 != justWritten }
    }
}
