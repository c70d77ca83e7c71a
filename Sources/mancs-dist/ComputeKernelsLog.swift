import Distributed
import Foundation
import Kernels

extension Trainer {
    /// First log lines about speed: which BLAS kernels run and who chose them, every
    /// rank's sgemm rate with the trainer's threads, and a warning naming any rank
    /// under half of rank 0's (a slow node slows every synchronous step). Collective.
    static func logComputeKernels(comm: Communicator, log: RunLog, threads: Int) throws {
        let report = BLASKernelSelection.report
        let gflops = measureSgemmGFLOPs(size: 1024, repeats: 2)
        guard let all = try comm.gatherKernels(core: report.core, sgemmGFLOPs: gflops) else { return }
        log.info("BLAS: \(report.summary)")
        log.info("GEMM: \(GEMMKernel.summary)")
        log.info("sgemm 1024^3 with \(threads) thread(s) per rank: "
                 + all.map { String(format: "rank %d %.0f GFLOP/s (%@)", $0.rank, $0.sgemmGFLOPs, $0.core) }.joined(separator: ", "))
        for k in RankKernels.slow(all) { log.warning(k.slowWarning(comparedTo: all[0])) }
    }
}
