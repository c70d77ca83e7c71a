import Foundation
import Testing
@testable import Kernels
import MancsModel
import MancsTraining

/// Whole training steps (ResNet-50 Mancs, 256x128, batch 64, two threads) with the
/// blocked F(4x4, 3x3) Winograd path and with the point-major F(2x2, 3x3) one
/// alone, alternating step by step in one process (as `gemmKernelStepTiming`).
/// Opt-in: `MANCS_WINOGRAD_TIMING=1 swift test -c release -Xswiftc -enable-testing
/// --filter winogradStepTiming`; with `MANCS_WINOGRAD_TIMING=all` the point-major
/// steps also run the Swift tile transforms (the Winograd code before the blocked
/// path and the AVX-512 transforms, as a whole).
@Test("training step with blocked F(4x4) Winograd vs point-major F(2x2) alone, alternating (opt-in)",
      .enabled(if: ProcessInfo.processInfo.environment["MANCS_WINOGRAD_TIMING"] != nil))
func winogradStepTiming() throws {
    setComputeThreads(2)
    let avx512Transforms = WinogradTransforms.avx512
    defer { setComputeThreads(1); Conv2DShape.forcedBlockedTiles = nil; WinogradTransforms.avx512 = avx512Transforms }
    let alsoTransforms = ProcessInfo.processInfo.environment["MANCS_WINOGRAD_TIMING"] == "all"
    let batch = 64, pairs = Int(ProcessInfo.processInfo.environment["MANCS_WINOGRAD_TIMING_PAIRS"] ?? "") ?? 4
    Conv2DShape.forcedBlockedTiles = nil
    let network = try MancsNetwork(config: MancsConfig(), maxBatch: batch, seed: 1)
    // The shared workspace was sized for the blocked path; the point-major passes must fit it too.
    let shapes = network.convolutionShapes.map { s -> Conv2DShape in var s = s; s.batch = batch; return s }
    let blockedMax = shapes.map { $0.workspaceCount(.winograd) }.max()!
    Conv2DShape.forcedBlockedTiles = 0
    try #require(shapes.map { $0.workspaceCount(.winograd) }.max()! <= blockedMax)
    let times = alternatingStepTimes(network: network, batch: batch, pairs: pairs) { blocked in
        Conv2DShape.forcedBlockedTiles = blocked ? nil : 0
        if alsoTransforms { WinogradTransforms.avx512 = blocked && avx512Transforms }
    }
    printStepComparison(times, batch: batch,
                        names: (alsoTransforms ? "point-major F(2x2), Swift transforms" : "point-major F(2x2)", "blocked F(4x4)"))
}
