import Foundation
import Testing
import TestSupport
@testable import Kernels

// mancs's own AVX-512 GEMM kernel (CGEMMKernels) and the choice of it.

private func cpu(_ level: ISALevel) -> CPUFeatures {
    var f = CPUFeatures(vendor: .intel, family: 6, model: 207)
    if level >= .avx { f.avx = true; f.osAVX = true }
    if level >= .avx2 { f.avx2 = true; f.fma = true }
    if level >= .avx512 {
        f.avx512f = true; f.avx512bw = true; f.avx512dq = true; f.avx512vl = true; f.avx512cd = true; f.osAVX512 = true
    }
    return f
}

@Test("the own kernel runs on AVX-512 CPUs unless MANCS_GEMM=openblas; settings are checked")
func gemmKernelChoice() {
    #expect(GEMMKernel.choose(cpu: cpu(.avx512), built: true, setting: .auto) == .init(ownKernel: true, note: nil))
    #expect(GEMMKernel.choose(cpu: cpu(.avx512), built: true, setting: .mancs) == .init(ownKernel: true, note: nil))
    let off = GEMMKernel.choose(cpu: cpu(.avx512), built: true, setting: .openblas)
    #expect(!off.ownKernel && off.note?.contains("MANCS_GEMM=openblas") == true)
    // No AVX-512 (or the OS does not save its registers), or a build without the kernel: OpenBLAS, silently.
    #expect(GEMMKernel.choose(cpu: cpu(.avx2), built: true, setting: .auto) == .init(ownKernel: false, note: nil))
    var noOS = cpu(.avx512)
    noOS.osAVX512 = false
    #expect(!GEMMKernel.choose(cpu: noOS, built: true, setting: .auto).ownKernel)
    #expect(!GEMMKernel.choose(cpu: cpu(.avx512), built: false, setting: .auto).ownKernel)
    // Asked for, but impossible: said.
    let impossible = GEMMKernel.choose(cpu: cpu(.avx2), built: true, setting: .mancs)
    #expect(!impossible.ownKernel && impossible.note?.contains("no AVX-512") == true)
    // A typo is an error naming the values.
    #expect(GEMMKernelSettingError(value: "openblass").description == "MANCS_GEMM=openblass: expected one of auto, mancs, openblas")
    // Only thin A·B and A·Bᵀ with n a multiple of 16.
    #expect(GEMMKernel.handles(transA: false, n: 64, k: 256) && GEMMKernel.handles(transA: false, n: 512, k: 128))
    #expect(GEMMKernel.handles(transA: false, n: 16, k: 1))
    #expect(!GEMMKernel.handles(transA: true, n: 64, k: 64) && !GEMMKernel.handles(transA: false, n: 144 + 3, k: 64))
    #expect(!GEMMKernel.handles(transA: false, n: 256, k: 1024))
}

@Test("own AVX-512 kernel: passes the start-up self-check", .enabled(if: GEMMKernel.ownKernelEnabled, "this CPU has no AVX-512"))
func ownKernelSelfCheck() {
    #expect(BLASKernelSelection.sgemmSelfCheck(using: GEMMKernel.ownSgemm, handles: GEMMKernel.handles) == nil)
}

@Test("own AVX-512 kernel: equals OpenBLAS across its blocks (rows, reduction, columns, edges), alpha, beta, strides",
      .enabled(if: GEMMKernel.ownKernelEnabled, "this CPU has no AVX-512"))
func ownKernelMatchesOpenBLAS() {
    var state: UInt64 = 42
    func next() -> Float {
        state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
        return Float(Int32(truncatingIfNeeded: state >> 32)) / Float(Int32.max)
    }
    // m across the 6-row tiles and 96-row blocks, k across the 256-deep blocks,
    // n across the 64-column panels and the 1024-column blocks.
    let shapes: [(m: Int, n: Int, k: Int)] = [
        (1, 16, 1), (6, 64, 256), (7, 80, 257), (95, 48, 513), (97, 1040, 40), (250, 128, 64), (13, 2064, 300),
    ]
    for (m, n, k) in shapes {
        for transB in [false, true] {
            for (alpha, beta): (Float, Float) in [(1, 0), (1, 1), (0.5, -2)] {
                let lda = k + 5, ldb = (transB ? k : n) + 3, ldc = n + 16
                let a = (0..<(m * lda)).map { _ in next() }
                let b = (0..<((transB ? n : k) * ldb)).map { _ in next() }
                let c0 = (0..<(m * ldc)).map { _ in next() }
                var expected = c0, got = c0
                // beta 0 must not read C: NaN there would show.
                if beta == 0 { for i in 0..<m { for j in 0..<n { got[i * ldc + j] = .nan } } }
                a.withUnsafeBufferPointer { a in b.withUnsafeBufferPointer { b in
                    expected.withUnsafeMutableBufferPointer { e in
                        openblasSgemm(false, transB, m, n, k, alpha, a.baseAddress!, lda, b.baseAddress!, ldb, beta, e.baseAddress!, ldc)
                    }
                    got.withUnsafeMutableBufferPointer { g in
                        GEMMKernel.ownSgemm(false, transB, m, n, k, alpha, a.baseAddress!, lda, b.baseAddress!, ldb, beta, g.baseAddress!, ldc)
                    }
                } }
                var worst: Float = 0
                for i in 0..<m {
                    for j in 0..<n { worst = max(worst, abs(got[i * ldc + j] - expected[i * ldc + j])) }
                    // The padding between rows is untouched.
                    for j in n..<ldc where got[i * ldc + j] != c0[i * ldc + j] {
                        Issue.record("\(m)x\(n)x\(k) transB \(transB): wrote C[\(i),\(j)] outside the matrix")
                    }
                }
                // Float32 sums of k terms of magnitude < 1 in two orders.
                #expect(worst <= 1e-5 * Float(k + 4), "\(m)x\(n)x\(k) transB \(transB) alpha \(alpha) beta \(beta): off by \(worst)")
            }
        }
    }
}

@Test("sgemm with the own kernel, split over threads, equals OpenBLAS alone",
      .enabled(if: GEMMKernel.ownKernelEnabled, "this CPU has no AVX-512"))
func ownKernelThreaded() {
    let m = 4099, n = 64, k = 256
    let a = (0..<(m * k)).map { Float(($0 * 7919) % 1000) / 1000 - 0.5 }
    let w = (0..<(n * k)).map { Float(($0 * 104_729) % 1000) / 1000 - 0.5 }
    var expected = [Float](repeating: 0, count: m * n), got = expected
    setComputeThreads(2)
    defer { setComputeThreads(1) }
    a.withUnsafeBufferPointer { a in w.withUnsafeBufferPointer { w in
        expected.withUnsafeMutableBufferPointer { e in
            openblasSgemm(false, true, m, n, k, 1, a.baseAddress!, k, w.baseAddress!, k, 0, e.baseAddress!, n)
        }
        got.withUnsafeMutableBufferPointer { g in
            sgemm(transA: false, transB: true, m: m, n: n, k: k, alpha: 1, a: a.baseAddress!, lda: k, b: w.baseAddress!, ldb: k,
                  beta: 0, c: g.baseAddress!, ldc: n)
        }
    } }
    let worst = zip(got, expected).map { abs($0 - $1) }.max()!
    #expect(worst <= 1e-3, "off by \(worst)")
}

/// The own kernel against OpenBLAS on the network's convolutions (256x128, batch
/// 64, two threads), alternating so drift of the machine hits both alike; the
/// figures behind docs/performance.md. Opt-in: `MANCS_GEMM_TIMING=1 swift test -c
/// release -Xswiftc -enable-testing --filter gemmKernelTiming` (with
/// OPENBLAS_CORETYPE set where OpenBLAS falls back: test binaries do not re-execute).
@Test("own GEMM kernel vs OpenBLAS on the network's convolutions (opt-in)",
      .enabled(if: ProcessInfo.processInfo.environment["MANCS_GEMM_TIMING"] != nil && GEMMKernel.ownKernelEnabled))
func gemmKernelTiming() {
    setComputeThreads(2)
    let saved = GEMMKernel.decision
    defer { setComputeThreads(1); GEMMKernel.decision = saved }
    var shapes: [Conv2DShape] = []
    for (h, w, c) in [(64, 32, 64), (32, 16, 128), (16, 8, 256), (8, 4, 512)] {
        shapes.append(Conv2DShape(batch: 64, inHeight: h, inWidth: w, inChannels: 4 * c, outChannels: c, kernel: 1, stride: 1, padding: 0))
        shapes.append(Conv2DShape(batch: 64, inHeight: h, inWidth: w, inChannels: c, outChannels: 4 * c, kernel: 1, stride: 1, padding: 0))
        shapes.append(Conv2DShape(batch: 64, inHeight: h, inWidth: w, inChannels: c, outChannels: c, kernel: 3, stride: 1, padding: 1))
    }
    var total = [0.0, 0.0]
    for s in shapes {
        // Slot 0 OpenBLAS alone, slot 1 the own kernel, alternating after two warm-up passes.
        let best = timeConvolution(s, algorithm: s.supportsWinograd ? .winograd : .gemm, repetitions: 10, warmUp: 2,
                                   slots: 2) { rep in
            GEMMKernel.decision.ownKernel = rep % 2 == 1
            return rep % 2
        }.best
        total[0] += best[0].forward + best[0].backward
        total[1] += best[1].forward + best[1].backward
        print(String(format: "%@ %dx%d %d->%d: forward %.1f ms OpenBLAS, %.1f own; backward %.1f, %.1f", s.kernel == 1 ? "1x1" : "3x3",
                     s.inHeight, s.inWidth, s.inChannels, s.outChannels, best[0].forward, best[1].forward,
                     best[0].backward, best[1].backward))
    }
    print(String(format: "sum of best forward + backward: %.0f ms OpenBLAS, %.0f ms own", total[0], total[1]))
}
