import Foundation
import Testing
@testable import Kernels

// GEMMShapeProfile: the per-shape timing behind `mancs bench --gemm-shapes`.

private func gemm(_ transA: Bool, _ transB: Bool, _ m: Int, _ n: Int, _ k: Int) {
    let a = [Float](repeating: 0.5, count: m * k), b = [Float](repeating: 0.25, count: k * n)
    var c = [Float](repeating: 0, count: m * n)
    sgemm(transA: transA, transB: transB, m: m, n: n, k: k, alpha: 1, a: a, lda: transA ? m : k,
          b: b, ldb: transB ? k : n, beta: 0, c: &c, ldc: n)
    #expect(c[0] == Float(k) * 0.125)  // the profiled call still computes
}

@Test("the GEMM shape profile counts calls and time per shape, only while on, from any thread")
func gemmShapeProfile() {
    // Off: nothing is recorded.
    GEMMShapeProfile.start()
    _ = GEMMShapeProfile.stop()
    gemm(false, false, 40, 32, 24)
    #expect(GEMMShapeProfile.stop().isEmpty)

    GEMMShapeProfile.start()
    gemm(false, false, 40, 32, 24)
    gemm(false, false, 40, 32, 24)
    gemm(true, false, 16, 48, 512)
    gemm(false, true, 8, 64, 20)
    DispatchQueue.concurrentPerform(iterations: 8) { _ in gemm(false, true, 24, 16, 8) }
    let records = GEMMShapeProfile.stop()
    #expect(records.count == 4)
    func find(_ op: String, _ m: Int) -> GEMMShapeRecord? { records.first { $0.operation == op && $0.m == m } }
    let nn = find("NN", 40), tn = find("TN", 16), nt = find("NT", 8), shared = find("NT", 24)
    #expect(nn?.calls == 2 && nn?.n == 32 && nn?.k == 24 && nn?.split == "rows")
    #expect(nn?.flops == Double(2 * 40 * 32 * 24 * 2))
    #expect(tn?.calls == 1 && tn?.split == "k" && tn?.kernel == "openblas")  // the own kernel never takes Aᵀ
    #expect(nt?.split == "columns")
    #expect(shared?.calls == 8)
    #expect(nn?.kernel == (GEMMKernel.ownKernelEnabled ? "mancs" : "openblas"))
    #expect(records.allSatisfy { $0.nanoseconds > 0 && $0.gflops > 0 })
    // Most time first.
    #expect(zip(records, records.dropFirst()).allSatisfy { $0.nanoseconds >= $1.nanoseconds })

    // After stop nothing more is added; start forgets.
    gemm(false, false, 40, 32, 24)
    #expect(GEMMShapeProfile.stop() == records)
    GEMMShapeProfile.start()
    #expect(GEMMShapeProfile.stop().isEmpty)
}
