import Foundation

/// The ranks as replicas that each hold one shard of a batch, for what the model
/// and the losses compute over the whole batch (SPEC section 6): BatchNorm's
/// per-channel sums (synchronised BatchNorm) and the rank-branch embeddings
/// (global triplet mining). It talks on a duplicate of the world communicator, so
/// its blocking collectives, made in the middle of forward and backward, never
/// match the gradient reducer's allreduces in flight on the world one.
///
/// The members have the names of `Kernels.BatchNormStatisticsReducer` and
/// `MancsTraining.ReplicaBatchGroup`, which the executables declare it to
/// conform to (this target stays beside the model, not above it). Those callers
/// cannot throw: an MPI failure here reports and ends the whole job.
public final class ShardGroup {
    public let comm: Communicator
    public var replicas: Int { comm.size }
    public var index: Int { comm.rank }

    /// Collective over the world.
    public init(world: Communicator) throws {
        comm = try world.duplicate()
    }

    /// Element-wise sum over the ranks, in place (one allreduce).
    public func sumOverReplicas(_ values: UnsafeMutableBufferPointer<Double>) {
        do { try comm.allreduceSum(values) } catch { fail("BatchNorm statistics allreduce", error) }
    }

    /// Every rank's `local`, concatenated in rank order (one allgather).
    public func allGather(_ local: [Float]) -> [Float] {
        do { return try comm.allgather(local) } catch { fail("embedding allgather", error) }
    }

    private func fail(_ what: String, _ error: Error) -> Never {
        FileHandle.standardError.write(Data("mancs: rank \(comm.rank): \(what) failed: \(error)\n".utf8))
        comm.abort(code: 1)
    }
}
