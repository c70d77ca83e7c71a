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
    /// rename, fsync the directory. Then keeps the newest `keep` checkpoints.
    /// A failure leaves every earlier checkpoint untouched.
    @discardableResult
    public static func save(parameters: ParameterStore, buffers: ParameterStore, adam: AdamMoments,
                            state: TrainingState, runDirectory: URL, keep: Int = 3) throws -> URL {
        precondition(keep >= 1, "keep must be at least 1, got \(keep)")
        let dir = directory(runDirectory: runDirectory)
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        removeStaleTemporaries(in: dir)
        let final = dir.appendingPathComponent(fileName(step: state.globalStep))
        let temp = dir.appendingPathComponent(".\(fileName(step: state.globalStep)).tmp-\(getpid())")
        do {
            try write(to: temp.path, parameters: parameters, buffers: buffers, adam: adam, state: state)
            try fsyncPath(temp.path, directory: false)
            _ = try verify(temp)
            guard rename(temp.path, final.path) == 0 else {
                throw CheckpointError("\(final.path): cannot rename the new checkpoint into place: \(String(cString: strerror(errno)))")
            }
            try fsyncPath(dir.path, directory: true)
        } catch {
            try? FileManager.default.removeItem(at: temp)
            throw error
        }
        for old in checkpointFiles(in: dir).dropLast(keep) { try? FileManager.default.removeItem(at: old.url) }
        return final
    }

    /// Temporaries left by a save that was killed (only rank 0 writes here).
    static func removeStaleTemporaries(in dir: URL) {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: dir.path)) ?? []
        for n in names where n.hasPrefix(".step-") && n.contains(".h5.tmp-") {
            try? FileManager.default.removeItem(at: dir.appendingPathComponent(n))
        }
    }

    static func fsyncPath(_ path: String, directory: Bool) throws {
        let fd = open(path, directory ? O_RDONLY | O_DIRECTORY : O_RDONLY)
        guard fd >= 0 else { throw CheckpointError("\(path): cannot open to fsync: \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        guard fsync(fd) == 0 else { throw CheckpointError("\(path): fsync failed: \(String(cString: strerror(errno)))") }
    }

    // MARK: Verification

    /// Opens a checkpoint (or a weights-only file), checks its format and version,
    /// and reads every dataset back (Fletcher32 detects damaged bytes).
    public static func verify(_ url: URL) throws -> CheckpointSummary {
        let path = url.path
        let file = try openWeights(path)
        defer { file.close() }
        let root = file.root
        var s = CheckpointSummary(path: path, format: nil, version: nil, globalStep: nil, epoch: nil, worldSize: nil,
                                  seed: nil, config: nil, parameterTensors: 0, parameterCount: 0, bufferTensors: 0,
                                  bufferCount: 0, adamStep: nil, hasState: root.exists("state"), datasetsVerified: 0,
                                  fileBytes: ((try? FileManager.default.attributesOfItem(atPath: path)[.size]) as? Int) ?? 0)
        if root.hasAttribute("format") {
            s.format = try root.stringAttribute("format")
            s.version = try root.attribute("version", as: Int64.self).first
            s.globalStep = try root.attribute("global_step", as: Int64.self).first
            s.epoch = try root.attribute("epoch", as: Int64.self).first
            s.worldSize = try root.attribute("world_size", as: Int64.self).first
            s.seed = try root.attribute("seed", as: Int64.self).first.map { UInt64(bitPattern: $0) }
        }
        if root.hasAttribute("config") { s.config = try root.stringAttribute("config") }
        if root.exists("optimizer"), try root.group("optimizer").hasAttribute("step") {
            s.adamStep = try root.group("optimizer").attribute("step", as: Int64.self).first
        }
        func walk(_ g: HDF5Group) throws {
            for name in try g.members() {
                if g.isGroup(name) { try walk(try g.group(name)); continue }
                let (values, _) = try g.read(name, as: Double.self)
                s.datasetsVerified += 1
                if g.path == "/model" { s.parameterTensors += 1; s.parameterCount += values.count }
                if g.path == "/buffers" { s.bufferTensors += 1; s.bufferCount += values.count }
            }
        }
        do { try walk(root) } catch let e as HDF5Error {
            throw CheckpointError(e.message)  // already names the file and the dataset
        }
        if s.format != nil {
            for required in ["model", "buffers", "optimizer/exp_avg", "optimizer/exp_avg_sq", "state/sampler", "state/rng"]
            where !root.exists(required) {
                throw CheckpointError("\(path): incomplete checkpoint: /\(required) is missing")
            }
        }
        return s
    }

    /// For `--resume auto`: the newest checkpoint of `dir` that opens and verifies.
    /// Damaged or truncated files are skipped, each with a warning line; nil when none is usable.
    public static func latestValidCheckpoint(in dir: URL) -> (url: URL?, warnings: [String]) {
        var warnings: [String] = []
        for candidate in checkpointFiles(in: dir).reversed() {
            do {
                let s = try verify(candidate.url)
                guard s.format == formatName, s.globalStep == candidate.step else {
                    warnings.append("skipping \(candidate.url.path): its global_step \(s.globalStep.map(String.init) ?? "none") does not match its name")
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
