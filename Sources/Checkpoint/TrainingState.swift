import Foundation

/// The scalars exact resumption needs besides the tensors (docs/method.md §6, §7).
/// Root attributes hold the first few; the rest lives under `/state`.
public struct TrainingState: Codable, Equatable, Sendable {
    /// Optimizer steps taken over the whole run (names the file: step-XXXXXXXX.h5).
    public var globalStep: Int64 = 0
    /// Epoch the sampler is in (0-based) and the number of batches of it already done.
    public var epoch: Int64 = 0
    public var batchInEpoch: Int64 = 0
    public var worldSize: Int64 = 1
    public var seed: UInt64 = 0
    /// JSON text of the effective settings (root attribute `config`). The model
    /// settings are read back from its `model` object, or from the top level,
    /// with MancsConfig's property names.
    public var config: String = "{}"
    /// The best evaluation of the run so far (the model in RUN_DIR/best.h5), nil before the first.
    public var best: BestEvaluation? = nil

    public init(globalStep: Int64 = 0, epoch: Int64 = 0, batchInEpoch: Int64 = 0, worldSize: Int64 = 1,
                seed: UInt64 = 0, config: String = "{}", best: BestEvaluation? = nil) {
        self.globalStep = globalStep; self.epoch = epoch; self.batchInEpoch = batchInEpoch
        self.worldSize = worldSize; self.seed = seed; self.config = config; self.best = best
    }
}

/// An evaluation's mAP and the global step it was taken at (`/state` attributes
/// `best_map`, `best_step`). Checkpoints written before the step was kept hold
/// only the mAP, in the `/state` attribute `json` (`{"best_map": 0.61}`): their step is nil.
public struct BestEvaluation: Codable, Equatable, Sendable {
    public var mAP: Double
    public var step: Int64?
    public init(mAP: Double, step: Int64?) { self.mAP = mAP; self.step = step }
}

/// Adam's moments: flat buffers the size of the parameter store, in its
/// internal layout (conv weights OHWI), and the number of steps taken.
public struct AdamMoments: @unchecked Sendable {
    public var m: UnsafeMutableBufferPointer<Float>
    public var v: UnsafeMutableBufferPointer<Float>
    public var step: Int
    public init(m: UnsafeMutableBufferPointer<Float>, v: UnsafeMutableBufferPointer<Float>, step: Int) {
        self.m = m; self.v = v; self.step = step
    }
}

/// A checkpoint that cannot be written, read or used, with the file and the reason.
public struct CheckpointError: Error, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}
