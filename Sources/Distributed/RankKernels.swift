import Foundation

/// One rank's compute kernels: which BLAS core it runs and how fast its sgemm is.
/// A rank much slower than the others slows every synchronous step, so the
/// trainer and `mancs mpi-check` gather these and name the slow ones.
public struct RankKernels: Sendable, Equatable {
    public var rank: Int
    public var host: String
    public var core: String
    public var sgemmGFLOPs: Double

    public init(rank: Int, host: String, core: String, sgemmGFLOPs: Double) {
        self.rank = rank
        self.host = host
        self.core = core
        self.sgemmGFLOPs = sgemmGFLOPs
    }

    public var description: String {
        String(format: "sgemm of rank %d on %@: %.1f GFLOP/s (%@ kernels)", rank, host, sgemmGFLOPs, core)
    }

    /// Ranks whose sgemm is under half of rank 0's.
    public static func slow(_ all: [RankKernels]) -> [RankKernels] {
        guard let first = all.first(where: { $0.rank == 0 }) else { return [] }
        return all.filter { $0.sgemmGFLOPs < first.sgemmGFLOPs / 2 }
    }

    /// The warning for a slow rank.
    public func slowWarning(comparedTo root: RankKernels) -> String {
        String(format: "rank %d on %@ runs sgemm at %.1f GFLOP/s (%@ kernels), under half of rank 0's %.1f (%@): "
               + "a slow node slows every step (see docs/troubleshooting.md, \"BLAS kernels\")",
               rank, host, sgemmGFLOPs, core, root.sgemmGFLOPs, root.core)
    }
}

extension Communicator {
    /// Every rank's kernels, in rank order on `root`; nil elsewhere. Collective.
    public func gatherKernels(core: String, sgemmGFLOPs: Double, root: Int = 0) throws -> [RankKernels]? {
        let mine = "\(core)\n\(sgemmGFLOPs)\n\(hostname)"
        guard let all = try gather(data: Data(mine.utf8), root: root) else { return nil }
        return all.enumerated().map { r, d in
            let parts = String(decoding: d, as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: false)
            return RankKernels(rank: r, host: parts.count > 2 ? String(parts[2]) : "?",
                               core: parts.first.map(String.init) ?? "?",
                               sgemmGFLOPs: parts.count > 1 ? Double(parts[1]) ?? 0 : 0)
        }
    }
}
