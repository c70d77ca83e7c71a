import Foundation
import Kernels

// `mancs bench --gemm-shapes N`: the GEMM shapes of the timed steps that take the most
// time, each with its rate against the sgemm timed between the steps (GEMMShapeProfile).

extension BenchCommand {
    /// The `gemmShapes` shapes with the most time (per step), and the totals over all of them.
    func gemmShapesJSON(_ records: [GEMMShapeRecord], sgemm: Double) -> [String: Any] {
        let perStep = 1 / Double(steps)
        let listed: [[String: Any]] = records.prefix(gemmShapes).map { r in
            ["op": r.operation, "m": r.m, "n": r.n, "k": r.k, "split": r.split, "kernel": r.kernel,
             "calls_per_step": round3(Double(r.calls) * perStep), "seconds_per_step": round4(r.seconds * perStep),
             "gflops": round3(r.gflops), "of_sgemm": sgemm > 0 ? round3(r.gflops / sgemm) : 0]
        }
        let all = Self.gemmTotals(records)
        return ["shapes": listed, "shape_count": records.count, "seconds_per_step": round4(all.seconds * perStep),
                "gflops": round3(all.gflops)]
    }

    /// Seconds and GFLOP/s over all the shapes.
    private static func gemmTotals(_ records: [GEMMShapeRecord]) -> (seconds: Double, gflops: Double) {
        let seconds = records.reduce(0) { $0 + $1.seconds }, flops = records.reduce(0) { $0 + $1.flops }
        return (seconds, seconds > 0 ? flops / seconds / 1e9 : 0)
    }

    func printGEMMShapes(_ records: [GEMMShapeRecord], sgemm: Double) {
        let perStep = 1 / Double(steps)
        let all = Self.gemmTotals(records)
        print(String(format: "GEMM shapes entering sgemm (rank 0; blocked Winograd GEMMs not included): %d shapes, %.3f s per step, %.1f GFLOP/s; the %d with the most time:",
                     records.count, all.seconds * perStep, all.gflops, min(gemmShapes, records.count)))
        print("  op        m      n      k  split    kernel    calls/step  s/step   GFLOP/s  of sgemm")
        for r in records.prefix(gemmShapes) {
            print(String(format: "  %@ %8d %6d %6d  %@ %@ %10.1f %7.4f %9.1f %8.2f", r.operation, r.m, r.n, r.k,
                         r.split.padding(toLength: 8, withPad: " ", startingAt: 0),
                         r.kernel.padding(toLength: 9, withPad: " ", startingAt: 0),
                         Double(r.calls) * perStep, r.seconds * perStep, r.gflops, sgemm > 0 ? r.gflops / sgemm : 0))
        }
    }
}
