import Foundation
import Testing
@testable import Kernels
import MancsModel
import MancsTraining

/// Whole training steps (ResNet-50 Mancs, 256x128, batch 64, two threads) with
/// mancs's own GEMM kernel and with OpenBLAS alone, alternating step by step in
/// one process, so drift of the machine hits both alike; the figures behind
/// docs/performance.md. Opt-in: `MANCS_GEMM_TIMING=1 swift test -c release
/// -Xswiftc -enable-testing --filter gemmKernelStepTiming` (with OPENBLAS_CORETYPE
/// set where OpenBLAS falls back: test binaries do not re-execute).
@Test("training step with the own GEMM kernel vs OpenBLAS alone, alternating (opt-in)",
      .enabled(if: ProcessInfo.processInfo.environment["MANCS_GEMM_TIMING"] != nil && GEMMKernel.ownKernelEnabled))
func gemmKernelStepTiming() throws {
    setComputeThreads(2)
    let saved = GEMMKernel.decision
    defer { setComputeThreads(1); GEMMKernel.decision = saved }
    let batch = 64, pairs = Int(ProcessInfo.processInfo.environment["MANCS_GEMM_TIMING_PAIRS"] ?? "") ?? 4
    let network = try MancsNetwork(config: MancsConfig(), maxBatch: batch, seed: 1)
    let times = alternatingStepTimes(network: network, batch: batch, pairs: pairs) { GEMMKernel.decision.ownKernel = $0 }
    printStepComparison(times, batch: batch, names: ("OpenBLAS alone", "own kernel"))
}

/// Prints each setting's step seconds, and their means as seconds and images/s
/// with how much faster the second setting was.
func printStepComparison(_ times: [[Double]], batch: Int, names: (String, String)) {
    let mean = times.map { $0.reduce(0, +) / Double($0.count) }
    print("steps with \(names.0): " + times[0].map { String(format: "%.3f", $0) }.joined(separator: " "))
    print("steps with \(names.1): " + times[1].map { String(format: "%.3f", $0) }.joined(separator: " "))
    func f(_ format: String, _ value: Double) -> String { String(format: format, value) }
    print("mean \(f("%.3f", mean[0])) s (\(f("%.2f", Double(batch) / mean[0])) imgs/s) \(names.0), "
          + "\(f("%.3f", mean[1])) s (\(f("%.2f", Double(batch) / mean[1])) imgs/s) \(names.1): "
          + "\(f("%.1f", (mean[0] / mean[1] - 1) * 100))% faster")
}

/// Seconds of `2 * pairs` training steps of `network` on seeded images, alternating
/// `select(false)` and `select(true)` as 0 1 1 0 0 1 1 0 ... (each setting runs first
/// and second alike) after two warm-up steps; [steps with false, steps with true].
func alternatingStepTimes(network: MancsNetwork, batch: Int, pairs: Int, select: (Bool) -> Void) -> [[Double]] {
    let step = TrainStep(network: network)
    var seed: UInt64 = 7
    let images = (0..<(batch * 256 * 128 * 3)).map { _ -> Float in
        seed = seed &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
        return Float(Int64(bitPattern: seed >> 11) - (1 << 52)) / Float(1 << 52) * 2
    }
    let labels = (0..<batch).map { $0 / 4 }
    var times: [[Double]] = [[], []]
    var rng = SystemRandomNumberGenerator()
    for i in 0..<(2 * pairs + 2) {
        let second = (i / 2 + i) % 2
        select(second == 1)
        let t0 = DispatchTime.now().uptimeNanoseconds
        _ = images.withUnsafeBufferPointer { step.run(images: $0.baseAddress!, labels: labels, sampling: .hardest, rng: &rng) }
        let s = Double(DispatchTime.now().uptimeNanoseconds - t0) * 1e-9
        if i >= 2 { times[second].append(s) }  // the first two warm up
    }
    return times
}
