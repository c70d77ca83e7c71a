import Distributed
import HDF5Kit
import Foundation
import MancsModel

/// Collective helpers for the trainer: rank 0 touches the file system, every
/// rank ends with the same values (`Communicator.onRootThenShare`): a failure
/// on rank 0 is thrown on every rank, so all stop with the same one-line error.
extension Checkpoint {
    /// `--resume auto`: rank 0 looks for the newest valid checkpoint in
    /// `RUN_DIR/checkpoints`; every rank gets its path (nil: start fresh) and rank 0's warnings.
    public static func latestValidCheckpoint(runDirectory: URL, comm: Communicator) throws -> (url: URL?, warnings: [String]) {
        let shared = try comm.onRootThenShare {
            let (url, warnings) = latestValidCheckpoint(in: directory(runDirectory: runDirectory))
            return try JSONEncoder().encode([url?.path ?? ""] + warnings)
        }
        let lines = try JSONDecoder().decode([String].self, from: shared)
        return (lines[0].isEmpty ? nil : URL(fileURLWithPath: lines[0]), Array(lines.dropFirst()))
    }

    /// Rank 0 reads a checkpoint's `config` attribute ("{}" when absent); every rank gets it.
    public static func storedConfig(_ url: URL, comm: Communicator) throws -> String {
        let shared = try comm.onRootThenShare {
            try FileProbe.check(url.path, kind: "checkpoint")  // --resume FILE: first read; libhdf5 may crash on it
            let file = try openWeights(url.path)
            defer { file.close() }
            return Data((file.root.hasAttribute("config") ? try file.root.stringAttribute("config") : "{}").utf8)
        }
        return String(decoding: shared, as: UTF8.self)
    }

    /// Rank 0 loads a full checkpoint; every rank receives the parameters,
    /// buffers, Adam moments and training state.
    public static func loadAndBroadcast(_ url: URL, comm: Communicator, parameters: ParameterStore,
                                        buffers: ParameterStore, adam: AdamMoments) throws -> Loaded {
        let shared = try comm.onRootThenShare {
            let loaded = try load(url, parameters: parameters, buffers: buffers, adam: adam)
            return try JSONEncoder().encode(SharedHeader(state: loaded.state, adamStep: loaded.adamStep, path: loaded.path))
        }
        let header = try JSONDecoder().decode(SharedHeader.self, from: shared)
        try comm.broadcast(parameters.values)
        try comm.broadcast(buffers.values)
        try comm.broadcast(UnsafeMutableBufferPointer(rebasing: adam.m[0..<parameters.count]))
        try comm.broadcast(UnsafeMutableBufferPointer(rebasing: adam.v[0..<parameters.count]))
        return Loaded(state: header.state, adamStep: header.adamStep, path: header.path)
    }

    /// Rank 0 loads weights only (`loadWeights`); every rank receives them.
    /// Returns the file's config JSON if it has one.
    @discardableResult
    public static func loadWeightsAndBroadcast(_ url: URL, comm: Communicator, parameters: ParameterStore,
                                               buffers: ParameterStore) throws -> String? {
        let shared = try comm.onRootThenShare {
            Data((try loadWeights(url, parameters: parameters, buffers: buffers) ?? "").utf8)
        }
        try broadcastWeights(comm: comm, parameters: parameters, buffers: buffers)
        return shared.isEmpty ? nil : String(decoding: shared, as: UTF8.self)
    }

    /// Rank 0's parameters and buffers to every rank (after rank 0 initialised the model).
    public static func broadcastWeights(comm: Communicator, parameters: ParameterStore, buffers: ParameterStore) throws {
        try comm.broadcast(parameters.values)
        try comm.broadcast(buffers.values)
    }

    /// Rank 0 saves (`save`); every rank learns the path or gets rank 0's error.
    @discardableResult
    public static func saveOnRoot(comm: Communicator, parameters: ParameterStore, buffers: ParameterStore,
                                  adam: AdamMoments, state: TrainingState, runDirectory: URL,
                                  retention: CheckpointRetention = CheckpointRetention()) throws -> URL {
        let shared = try comm.onRootThenShare {
            Data(try save(parameters: parameters, buffers: buffers, adam: adam, state: state,
                          runDirectory: runDirectory, retention: retention).path.utf8)
        }
        return URL(fileURLWithPath: String(decoding: shared, as: UTF8.self))
    }

    struct SharedHeader: Codable {
        var state: TrainingState
        var adamStep: Int
        var path: String
    }
}
