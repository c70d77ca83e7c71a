import ArgumentParser
import Distributed
import Foundation
import Kernels
import MancsModel
import MancsTraining

struct BenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Time full training steps on synthetic input (images/s, GFLOP/s, peak memory, time per layer kind).",
        discussion: """
            One step = forward, the three losses, backward, the gradient allreduce (under mpirun), \
            global-norm clipping and Adam, exactly as the trainer runs it, on random NHWC images with \
            labels i / 4 (i / 2 when fewer than 8 images are mined over). One warm-up step is not timed. Under `mpirun -np R` each rank runs global-batch / R \
            images and rank 0 prints; images/s are global (global batch / step time). After every timed step \
            the same run also times a square sgemm with the same thread count, for comparison (their mean \
            time is the sgemm figure). See docs/performance.md.
            """)

    @Option(name: .customLong("global-batch"), help: "Training batch of all ranks together, split evenly across them (the old spelling --batch still works).") var batch = 64
    @Option(help: "Input height.") var height = 256
    @Option(help: "Input width.") var width = 128
    @Option(help: "ResNet base width (64 = ResNet-50).") var baseWidth = 64
    @Option(help: "Bottlenecks per stage, comma-separated.") var blocks = "3,4,6,3"
    @Option(help: "Number of identities (classifier width).") var classes = 751
    @Option(help: "Timed steps (after one warm-up step).") var steps = 3
    @OptionGroup var compute: ThreadsOption
    @Option(help: "Side of the square sgemm timed for comparison (0 skips it).") var sgemmSize = 2048
    @Option(name: .customLong("triplet-mining"), help: "Under mpirun: global (embeddings all-gathered, loss over the whole batch) | local (each rank's shard), as mancs-dist (default global).") var tripletMining = "global"
    @Option(name: .customLong("batch-norm"), help: "Under mpirun: sync (BatchNorm statistics allreduced per layer) | local (each rank's shard), as mancs-dist (default sync).") var batchNorm = "sync"
    @Option(name: .customLong("gemm-shapes"), help: "Also time every GEMM shape of the timed steps (the calls that enter sgemm) and list the <n> that take the most time, with their GFLOP/s against the in-run sgemm (0: off).") var gemmShapes = 0
    @Flag(help: "Print one JSON object instead of a table.") var json = false

    static let imagesPerIdentity = 4

    /// Images per identity in the synthetic labels: `imagesPerIdentity`, fewer when the
    /// images mined over would otherwise hold a single identity (e.g. --global-batch 4).
    func identitySize(ranks: Int) -> Int {
        let mined = tripletMining == "global" ? batch : batch / max(1, ranks)
        return max(2, min(BenchCommand.imagesPerIdentity, mined / 2))
    }

    var threads: Int { compute.resolved }

    func validate() throws {
        try FlagCheck.int("global-batch", batch, 2...65_536)
        try FlagCheck.int("height", height, FlagCheck.height)
        try FlagCheck.int("width", width, FlagCheck.width)
        try FlagCheck.int("base-width", baseWidth, 1...1024)
        try FlagCheck.int("classes", classes, 2...1_000_000)
        try FlagCheck.int("steps", steps, 1...100_000)
        try FlagCheck.int("sgemm-size", sgemmSize, 0...16_384)
        try FlagCheck.int("gemm-shapes", gemmShapes, 0...10_000)
        guard ["global", "local"].contains(tripletMining) else { throw ValidationError("--triplet-mining must be global or local, got \(tripletMining)") }
        guard ["sync", "local"].contains(batchNorm) else { throw ValidationError("--batch-norm must be sync or local, got \(batchNorm)") }
        _ = try parsedBlocks()
    }

    func parsedBlocks() throws -> [Int] {
        let parts = blocks.split(separator: ",").map { Int($0.trimmingCharacters(in: .whitespaces)) }
        guard parts.count == 4, parts.allSatisfy({ (1...64).contains($0 ?? 0) }) else {
            throw ValidationError("--blocks must be four counts between 1 and 64 like 3,4,6,3, got \"\(blocks)\"")
        }
        return parts.map { $0! }
    }

    func run() throws {
        let comm = try Communicator.world()
        defer { comm.finalize() }
        do {
            try measure(comm)
        } catch {
            FileHandle.standardError.write(Data("mancs bench: \(error)\n".utf8))
            throw ExitCode(2)
        }
    }

    // MARK: Measurement

    private func measure(_ comm: Communicator) throws {
        let ranks = comm.size
        guard batch % ranks == 0, batch / ranks >= 2 else {
            throw ValidationError("--global-batch \(batch) must split into at least 2 images on each of \(ranks) ranks")
        }
        let local = batch / ranks
        // The triplet loss needs a positive and a negative for every anchor among the
        // images it mines over (the global batch, or each rank's shard): at least two
        // identities of at least two images there.
        let mined = tripletMining == "global" ? batch : local
        guard mined >= 4 else {
            throw ValidationError("--global-batch \(batch) on \(ranks) rank(s) gives the triplet loss \(mined) images to mine over "
                                  + "(\(tripletMining) mining); it needs at least 4 (2 identities x 2 images)")
        }
        let k = identitySize(ranks: ranks)
        guard classes >= (batch + k - 1) / k else {
            throw ValidationError("--classes \(classes) is below the \((batch + k - 1) / k) identities of a batch of \(batch)")
        }
        setComputeThreads(threads)

        // The training part runs in its own scope: the network, its optimiser state and the
        // input are freed before the measurements below allocate, so the process's peak
        // resident memory is the training's.
        let run = try timeSteps(comm, local: local)
        let timing = run.timing, profiler = run.profiler

        // GEMM-only replay of the KxK convolutions (same calls as the conv kernels make), to split
        // their time into GEMM and im2col/col2im.
        let kxkGEMMSeconds = replayKxKGEMMs(run.convolutionShapes, batch: local) * Double(steps)
        // The limit the steps are measured against: this rank's sgemm timed after every
        // step (so a machine that speeds up or slows down during the run moves both
        // alike), as the mean of those times.
        let sgemmSamples = timing.sgemmSamples
        let sgemmPerRank = sgemmSamples.isEmpty ? 0 : Double(sgemmSamples.count) / sgemmSamples.reduce(0) { $0 + 1 / $1 }
        let sgemmTotal = try comm.allreduceSum(sgemmPerRank)

        // Peak resident memory of the whole process (as /usr/bin/time and VmHWM count it).
        let peakRSS = peakResidentBytes()
        let peakRSSMax = try comm.allreduceMax(Double(peakRSS))
        let blas = BLASKernelSelection.report

        guard comm.isRoot else { return }
        let flops = run.flops
        let backwardStart = run.completed.first?.time ?? timing.backwardEnd
        let backwardSeconds = Double(timing.backwardEnd - backwardStart) * 1e-9
        let asReported = ReadyTimeline(run.reported, start: backwardStart, count: run.parameterCount)
        let asCompleted = ReadyTimeline(run.completed, start: backwardStart, count: run.parameterCount)
        let meanStep = timing.steps.reduce(0, +) / Double(steps)
        let bestStep = timing.steps.min()!
        let imgsPerSecond = Double(batch) / meanStep
        let achieved = imgsPerSecond * flops.total / 1e9
        let perStep = 1 / Double(steps)
        let convKxK = profiler.seconds(.convKxK)
        var breakdown: [(String, Double)] = []
        breakdown.append(("conv_1x1_gemm", profiler.seconds(.conv1x1)))
        breakdown.append(("conv_kxk_gemm", min(kxkGEMMSeconds, convKxK)))
        breakdown.append(("conv_kxk_im2col_col2im", max(0, convKxK - kxkGEMMSeconds)))
        breakdown.append(("linear_gemm", profiler.seconds(.linear)))
        breakdown.append(("batchnorm", profiler.seconds(.batchNorm)))
        breakdown.append(("activations", profiler.seconds(.activation)))
        breakdown.append(("pooling", profiler.seconds(.pooling)))
        breakdown.append(("elementwise", profiler.seconds(.elementwise)))
        let profiled = LayerKind.allCases.reduce(0) { $0 + profiler.seconds($1) }
        breakdown.append(("model_other", timing.forward + timing.backward - profiled))
        breakdown.append(("losses_and_grad_zeroing", timing.lossesAndZeroing))
        breakdown.append(("communication_during_backward", timing.communicationInBackward))
        breakdown.append(("communication_wait_after_backward", timing.communicationWait))
        breakdown.append(("clipping", timing.clipping))
        breakdown.append(("optimiser", timing.optimiser))
        let perStepBreakdown = breakdown.map { ($0.0, $0.1 * perStep) }
        // Scaling on paper: this step (one process) at n ranks of `batch` images each.
        // `speedup` > 1 asks the same question for a rank that computes that much faster
        // (every time of the step divided by it), where the hold-back starts to matter.
        var scaling: [[String: Any]] = []
        for speedup in [1.0, 10.0] {
            let step = meanStep / speedup, backwardTime = backwardSeconds / speedup
            for gbits in [10.0, 100.0] {
                for n in [8, 32, 128] {
                    let link = RingModel(ranks: n, bytesPerSecond: gbits * 1e9 / 8, latency: 10e-6)
                    let held = link.exposedSeconds(readyAt: asReported.scaled(by: 1 / speedup), backwardSeconds: backwardTime)
                    let ideal = link.exposedSeconds(readyAt: asCompleted.scaled(by: 1 / speedup), backwardSeconds: backwardTime)
                    let total = link.totalSeconds(count: run.parameterCount)
                    scaling.append(["compute_speedup": speedup, "ranks": n, "gbit_per_s": gbits,
                                    "allreduce_seconds": round4(total),
                                    "exposed_seconds": round4(held), "efficiency": round3(step / (step + held)),
                                    "exposed_seconds_without_holdback": round4(ideal),
                                    "efficiency_without_holdback": round3(step / (step + ideal)),
                                    "efficiency_no_overlap": round3(step / (step + total))])
                }
            }
        }
        // Share of gradient bytes final before the last 0/25/50/75% of backward.
        func readyShare(_ timeline: ReadyTimeline, by fraction: Double) -> Double {
            timeline.share(readyBy: fraction * backwardSeconds)
        }

        if json {
            var o: [String: Any] = [
                "imgs_per_s": round3(imgsPerSecond),
                "best_imgs_per_s": round3(Double(batch) / bestStep),
                "step_seconds": timing.steps.map(round3),
                "gflops": round3(achieved),
                "sgemm_gflops": round3(sgemmTotal),
                "sgemm_gflops_per_rank": round3(sgemmPerRank),
                "sgemm_gflops_per_rank_samples": sgemmSamples.map(round3),
                "sgemm_size": sgemmSize,
                "gemm_efficiency": sgemmTotal > 0 ? round3(achieved / sgemmTotal) : 0,
                "peak_rss_bytes": peakRSS,
                "conv3_rebuilt_blocks": run.conv3NotKept.rebuilt,
                "conv3_folded_blocks": run.conv3NotKept.folded,
                "blas_core": blas.core,
                "blas_core_selected_by": blas.source.rawValue,
                "blas_summary": blas.summary,
                "gemm_kernel": GEMMKernel.ownKernelEnabled ? "mancs-avx512" : "openblas",
                "gemm_summary": GEMMKernel.summary,
                "cpu": blas.cpu.description,
                "peak_rss_bytes_max_rank": Int(peakRSSMax),
                "gflop_per_image": ["forward": round3(flops.forward / 1e9), "backward": round3(flops.backward / 1e9),
                                    "total": round3(flops.total / 1e9)],
                "forward_seconds": round3(timing.forward * perStep),
                "backward_seconds": round3(timing.backward * perStep),
                "config": ["batch": batch, "local_batch": local, "ranks": ranks, "threads": threads, "height": height,
                           "width": width, "base_width": baseWidth, "blocks": run.blocks, "classes": classes,
                           "steps": steps, "parameters": run.parameterCount,
                           "reducer": run.reducerMode,
                           "triplet_mining": tripletMining, "batch_norm": batchNorm] as [String: Any],
            ]
            o["scaling_on_paper"] = scaling
            o["backward_seconds_last_step"] = round4(backwardSeconds)
            o["gradient_ready_share"] = [0.25, 0.5, 0.75].map { f in
                ["backward_fraction": f, "reported": round3(readyShare(asReported, by: f)),
                 "completed": round3(readyShare(asCompleted, by: f))] as [String: Any]
            }
            var b: [String: Double] = [:]
            for (name, s) in perStepBreakdown { b[name] = round4(s) }
            o["breakdown_seconds_per_step"] = b
            if gemmShapes > 0 { o["gemm_shapes"] = gemmShapesJSON(run.gemmShapes, sgemm: sgemmPerRank) }
            let data = try JSONSerialization.data(withJSONObject: o, options: [.sortedKeys])
            print(String(decoding: data, as: UTF8.self))
        } else {
            print("mancs bench: batch \(batch) (\(ranks) rank(s) x \(local)), \(threads) thread(s), \(height)x\(width), base width \(baseWidth), blocks \(blocks), \(classes) classes; triplet mining \(tripletMining), BatchNorm \(batchNorm)")
            print(String(format: "step %.3f s mean, %.3f s best (%@)", meanStep, bestStep,
                         timing.steps.map { String(format: "%.3f", $0) }.joined(separator: ", ")))
            print(String(format: "%.2f imgs/s (best %.2f); %.2f GFLOP/img (%.2f fwd + %.2f bwd)", imgsPerSecond,
                         Double(batch) / bestStep, flops.total / 1e9, flops.forward / 1e9, flops.backward / 1e9))
            print(String(format: "%.1f GFLOP/s achieved; sgemm %d^3: %.1f GFLOP/s (all ranks; after each step: %@); ratio %.2f",
                         achieved, sgemmSize, sgemmTotal, sgemmSamples.map { String(format: "%.0f", $0) }.joined(separator: ", "),
                         sgemmTotal > 0 ? achieved / sgemmTotal : 0))
            print("BLAS: \(blas.summary)")
            print("GEMM: \(GEMMKernel.summary)")
            print(String(format: "peak RSS %.2f GiB (rank 0), %.2f GiB (largest rank)", Double(peakRSS) / 1_073_741_824,
                         peakRSSMax / 1_073_741_824))
            let notKept = run.conv3NotKept
            print("conv3 output not kept (memory) in \(notKept.folded + notKept.rebuilt) of \(notKept.blocks) bottlenecks: "
                  + "\(notKept.folded) run conv3 and bn3 backward as one, \(notKept.rebuilt) rebuild it")
            print(String(format: "forward %.3f s, backward %.3f s per step; breakdown per step:", timing.forward * perStep,
                         timing.backward * perStep))
            for (name, s) in perStepBreakdown {
                print("  " + name.padding(toLength: 36, withPad: " ", startingAt: 0)
                      + String(format: "%8.3f s  %5.1f%%", s, 100 * s / meanStep))
            }
            if gemmShapes > 0 { printGEMMShapes(run.gemmShapes, sgemm: sgemmPerRank) }
            print(String(format: "gradient floats final by 25/50/75%% of backward: reported %.0f/%.0f/%.0f%%, layers done %.0f/%.0f/%.0f%%",
                         100 * readyShare(asReported, by: 0.25), 100 * readyShare(asReported, by: 0.5),
                         100 * readyShare(asReported, by: 0.75), 100 * readyShare(asCompleted, by: 0.25),
                         100 * readyShare(asCompleted, by: 0.5), 100 * readyShare(asCompleted, by: 0.75)))
            print("scaling on paper (ring allreduce, 1 + 25 MiB buckets, 10 us/hop; this step at n ranks; x10 = a 10x faster rank):")
            for row in scaling {
                print(String(format: "  x%-3.0f %3d ranks %5.0f Gbit/s: allreduce %.3f s, exposed %.3f s -> %.1f%% (%.1f%% without the hold-back, %.0f%% without overlap)",
                             row["compute_speedup"] as! Double, row["ranks"] as! Int, row["gbit_per_s"] as! Double, row["allreduce_seconds"] as! Double,
                             row["exposed_seconds"] as! Double, 100 * (row["efficiency"] as! Double),
                             100 * (row["efficiency_without_holdback"] as! Double),
                             100 * (row["efficiency_no_overlap"] as! Double)))
            }
        }
    }

    /// What the timed steps leave for the report (the network itself is gone).
    private struct StepRun {
        var timing: StepTiming
        var profiler: LayerProfiler
        var convolutionShapes: [Conv2DShape]
        var flops: StepFLOPs
        var parameterCount: Int
        var blocks: [Int]
        /// Bottlenecks that do not keep conv3's output (folded backward or rebuilt), of all.
        var conv3NotKept: (folded: Int, rebuilt: Int, blocks: Int)
        var reducerMode: String
        /// When each gradient range became final: as reported to the reducer, and as each
        /// layer finished before the reporting order held it back.
        var reported: [(time: UInt64, range: Range<Int>)]
        var completed: [(time: UInt64, range: Range<Int>)]
        /// Every GEMM shape of the timed steps (`--gemm-shapes`; empty without it).
        var gemmShapes: [GEMMShapeRecord]
    }

    /// Builds the network and runs one warm-up and `steps` timed training steps.
    private func timeSteps(_ comm: Communicator, local: Int) throws -> StepRun {
        let ranks = comm.size, k = identitySize(ranks: ranks)
        var config = MancsConfig()
        config.baseWidth = baseWidth
        config.blocks = try parsedBlocks()
        config.numClasses = classes
        config.height = height
        config.width = width
        let network = try MancsNetwork(config: config, maxBatch: local, seed: 1)
        let profiler = LayerProfiler()
        network.profiler = profiler
        let trainStep = TrainStep(network: network)
        let adam = Adam(count: network.parameters.count)
        let grads = network.parameters.grads!
        let reducer = ranks > 1 ? try GradientReducer(comm: comm, gradients: grads, mode: try GradientReducer.defaultMode()) : nil
        defer { reducer?.shutdown() }
        let group = ranks > 1 ? try ShardGroup(world: comm) : nil
        if batchNorm == "sync" { network.batchNormReducer = group }

        // Synthetic input: uniform noise, this rank's shard of the global batch.
        let imageFloats = height * width * 3
        var images = [Float](repeating: 0, count: local * imageFloats)
        var seed: UInt64 = 0x9E37_79B9_7F4A_7C15 &* UInt64(comm.rank + 1)
        for i in images.indices {
            seed = seed &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            images[i] = Float(Int64(bitPattern: seed >> 11) - (1 << 52)) / Float(1 << 52) * 2
        }
        let labels = (0..<local).map { (comm.rank * local + $0) / k }

        // One step as the trainer runs it, with its parts timed.
        var timing = StepTiming()
        var reduceError: Error?
        var reported: [(time: UInt64, range: Range<Int>)] = []
        var completed: [(time: UInt64, range: Range<Int>)] = []
        network.gradientCompletionObserver = { range in completed.append((monotonicNanoseconds(), range)) }
        func step() throws {
            let start = monotonicNanoseconds()
            reducer?.beginStep()
            reported.removeAll(keepingCapacity: true)
            completed.removeAll(keepingCapacity: true)
            var rng = SystemRandomNumberGenerator()
            var commNs: UInt64 = 0
            let before = (profiler.forwardNanoseconds, profiler.backwardNanoseconds)
            images.withUnsafeBufferPointer { buf in
                _ = trainStep.run(images: buf.baseAddress!, labels: labels, sampling: .hardest, rng: &rng,
                                  group: tripletMining == "global" ? group : nil,
                                  onGradientsReady: { range in
                                      let t0 = monotonicNanoseconds()
                                      reported.append((t0, range))
                                      guard let r = reducer else { return }
                                      do { try r.gradientsReady(range); try r.progress() } catch {
                                          if reduceError == nil { reduceError = error }
                                      }
                                      commNs &+= monotonicNanoseconds() &- t0
                                  })
            }
            let ran = monotonicNanoseconds()
            timing.backwardEnd = ran
            try reducer?.finish()
            if let e = reduceError { throw e }
            let reduced = monotonicNanoseconds()
            clipGradientNorm(grads, maxNorm: 5)
            let clipped = monotonicNanoseconds()
            adam.update(parameters: network.parameters.values, gradients: UnsafeBufferPointer(grads))
            let end = monotonicNanoseconds()
            let forward = profiler.forwardNanoseconds - before.0, backward = profiler.backwardNanoseconds - before.1
            timing.steps.append(Double(end - start) * 1e-9)
            timing.forward += Double(forward) * 1e-9
            timing.backward += Double(backward - commNs) * 1e-9
            timing.lossesAndZeroing += Double((ran - start) - forward - backward) * 1e-9
            timing.communicationInBackward += Double(commNs) * 1e-9
            timing.communicationWait += Double(reduced - ran) * 1e-9
            timing.clipping += Double(clipped - reduced) * 1e-9
            timing.optimiser += Double(end - clipped) * 1e-9
        }

        // The sgemm timed between steps (outside their timing) runs in memory the step
        // already holds, so it does not raise the peak: it reads the input images as
        // both factors and writes into the gradient buffer, which is dead from Adam to
        // the next step's zeroing. Too small for that (tiny settings): its own matrices.
        let probeFloats = sgemmSize * sgemmSize
        func sgemmBetweenSteps() -> Double {
            guard images.count >= probeFloats, grads.count >= probeFloats else {
                return measureSgemmGFLOPs(size: sgemmSize, repeats: 2)
            }
            return images.withUnsafeBufferPointer { img in
                measureSgemmGFLOPs(size: sgemmSize, repeats: 2, a: img.baseAddress!, b: img.baseAddress!, c: grads.baseAddress!)
            }
        }

        try step()  // warm-up: first touch of every buffer, compute thread start-up
        profiler.reset()
        timing = StepTiming()
        // The sgemm between steps does not enter `sgemm`'s public entry, so it is not recorded.
        if gemmShapes > 0 { GEMMShapeProfile.start() }
        for _ in 0..<steps {
            try step()
            if sgemmSize > 0 { timing.sgemmSamples.append(sgemmBetweenSteps()) }
        }
        let gemmShapeRecords = gemmShapes > 0 ? GEMMShapeProfile.stop() : []

        return StepRun(timing: timing, profiler: profiler, convolutionShapes: network.convolutionShapes,
                       flops: network.stepFLOPsPerImage, parameterCount: network.parameters.count,
                       blocks: config.blocks, conv3NotKept: network.conv3NotKept, reducerMode: reducer.map { $0.mode.rawValue } ?? "none",
                       reported: reported, completed: completed, gemmShapes: gemmShapeRecords)
    }

    // MARK: Reference measurements

    /// Seconds for the GEMMs alone of every non-pointwise convolution's forward and
    /// backward (the chunked calls `conv2DForward`/`conv2DBackward` make, Winograd's
    /// 16 per chunk or 36 per block where it runs), on scratch data.
    private func replayKxKGEMMs(_ shapes: [Conv2DShape], batch: Int) -> Double {
        let kxk = shapes.enumerated().filter { !$0.element.isPointwise }.map { i, s -> (Int, Conv2DShape) in
            var s = s; s.batch = batch; return (i, s)
        }
        guard !kxk.isEmpty else { return 0 }
        var colMax = 0, weightMax = 0, outMax = 0
        for (_, s) in kxk {
            colMax = max(colMax, s.imagesPerChunk * s.columnCountPerImage, s.winogradReplayFloats)
            weightMax = max(weightMax, s.weightCount)
            outMax = max(outMax, s.imagesPerChunk * s.outHeight * s.outWidth * s.outChannels, s.winogradReplayFloats)
        }
        let col = UnsafeMutablePointer<Float>.allocate(capacity: colMax)
        let w = UnsafeMutablePointer<Float>.allocate(capacity: weightMax)
        let gw = UnsafeMutablePointer<Float>.allocate(capacity: weightMax)
        let out = UnsafeMutablePointer<Float>.allocate(capacity: outMax)
        defer { col.deallocate(); w.deallocate(); gw.deallocate(); out.deallocate() }
        col.initialize(repeating: 0.01, count: colMax)
        w.initialize(repeating: 0.01, count: weightMax)
        gw.initialize(repeating: 0, count: weightMax)
        out.initialize(repeating: 0.01, count: outMax)
        let start = monotonicNanoseconds()
        for (index, s) in kxk {
            let rowsPerImage = s.outHeight * s.outWidth, K = s.kernel * s.kernel * s.inChannels, cout = s.outChannels
            let winograd = ConvAlgorithm.chosen(for: s) == .winograd
            if winograd && s.winogradBlockedTiles != nil {
                replayWinogradBlockedGEMMs(s)  // F(4x4, 3x3) in blocks: 36 GEMMs per block and pass
                continue
            }
            if winograd {
                // Winograd's 16 GEMMs per chunk: forward, input gradient, weight gradient.
                let cin = s.inChannels, chunk = s.winogradImagesPerChunk
                var n0 = 0
                while n0 < s.batch {
                    let tiles = min(chunk, s.batch - n0) * s.tilesHigh * s.tilesWide
                    for _ in 0..<16 {
                        sgemm(transA: false, transB: true, m: tiles, n: cout, k: cin, alpha: 1, a: col, lda: cin,
                              b: w, ldb: cin, beta: 0, c: out, ldc: cout)
                        sgemm(transA: false, transB: false, m: tiles, n: cin, k: cout, alpha: 1, a: col, lda: cout,
                              b: w, ldb: cin, beta: 0, c: out, ldc: cin)
                        sgemm(transA: true, transB: false, m: cout, n: cin, k: tiles, alpha: 1, a: out, lda: cout,
                              b: col, ldb: cin, beta: 1, c: gw, ldc: cin)
                    }
                    n0 += chunk
                }
                continue
            }
            var n0 = 0
            while n0 < s.batch {
                let rows = min(s.imagesPerChunk, s.batch - n0) * rowsPerImage
                // Forward (twice for the stem: backward rebuilds its output).
                for _ in 0..<(index == 0 ? 2 : 1) {
                    sgemm(transA: false, transB: true, m: rows, n: cout, k: K, alpha: 1, a: col, lda: K, b: w, ldb: K,
                          beta: 0, c: out, ldc: cout)
                }
                sgemm(transA: true, transB: false, m: cout, n: K, k: rows, alpha: 1, a: out, lda: cout, b: col, ldb: K,
                      beta: 1, c: gw, ldc: K)
                if index != 0 {  // the stem computes no input gradient
                    sgemm(transA: false, transB: false, m: rows, n: K, k: cout, alpha: 1, a: out, lda: cout, b: w,
                          ldb: K, beta: 0, c: col, ldc: K)
                }
                n0 += s.imagesPerChunk
            }
        }
        return Double(monotonicNanoseconds() - start) * 1e-9
    }

    /// Peak resident set of this process (VmHWM, or getrusage's ru_maxrss).
    private func peakResidentBytes() -> Int {
        if let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
           let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmHWM:") }),
           let kb = Int(line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first ?? "") {
            return kb * 1024
        }
        var usage = rusage()
        getrusage(RUSAGE_SELF.rawValue, &usage)
        return Int(usage.ru_maxrss) * 1024
    }
}

/// When each gradient float became final, as seconds after `start`, kept as the
/// reported ranges (they cover the store once each), not one number per float:
/// at full size that would be 2 x 37 M doubles, more than the step's own memory.
private struct ReadyTimeline {
    /// Disjoint ranges with their ready time, sorted by offset.
    private(set) var segments: [(range: Range<Int>, seconds: Double)]
    let count: Int

    init(_ events: [(time: UInt64, range: Range<Int>)], start: UInt64, count: Int) {
        self.count = count
        segments = events.map { e in (e.range, e.time >= start ? Double(e.time - start) * 1e-9 : 0) }
            .sorted { $0.range.lowerBound < $1.range.lowerBound }
    }

    func scaled(by factor: Double) -> ReadyTimeline {
        var t = self
        t.segments = segments.map { ($0.range, $0.seconds * factor) }
        return t
    }

    /// The time the last float of `range` became final (0 if none was reported).
    func readyTime(of range: Range<Int>) -> Double {
        segments.reduce(0) { $1.range.overlaps(range) ? max($0, $1.seconds) : $0 }
    }

    /// Share of all floats final by `seconds`.
    func share(readyBy seconds: Double) -> Double {
        Double(segments.reduce(0) { $1.seconds <= seconds ? $0 + $1.range.count : $0 }) / Double(max(1, count))
    }
}

/// Ring allreduce in `GradientReducer`'s buckets (1 MiB, then 25 MiB), one bucket at a time:
/// a bucket of B bytes costs 2(n-1)/n * B / bandwidth + 2(n-1) * latency and starts when
/// its last gradient is final and the previous bucket is done.
private struct RingModel {
    var ranks: Int
    var bytesPerSecond: Double
    var latency: Double

    func bucketSeconds(_ floats: Int) -> Double {
        let n = Double(ranks)
        return 2 * (n - 1) / n * Double(4 * floats) / bytesPerSecond + 2 * (n - 1) * latency
    }

    func totalSeconds(count: Int) -> Double {
        GradientReducer.bucketRanges(count: count).reduce(0) { $0 + bucketSeconds($1.count) }
    }

    /// Communication left after backward ends, given each float's ready time.
    func exposedSeconds(readyAt t: ReadyTimeline, backwardSeconds: Double) -> Double {
        var buckets: [(ready: Double, floats: Int, index: Int)] = []
        for (k, r) in GradientReducer.bucketRanges(count: t.count).enumerated() {
            buckets.append((t.readyTime(of: r), r.count, k))
        }
        buckets.sort { ($0.ready, -$0.index) < ($1.ready, -$1.index) }
        var end = 0.0
        for b in buckets { end = max(end, b.ready) + bucketSeconds(b.floats) }
        return max(0, end - backwardSeconds)
    }
}

/// Accumulated seconds of the timed steps, by part.
private struct StepTiming {
    var steps: [Double] = []
    /// This rank's sgemm GFLOP/s timed after each step.
    var sgemmSamples: [Double] = []
    var forward = 0.0
    /// Backward without the time spent in the reducer's callbacks.
    var backward = 0.0
    var lossesAndZeroing = 0.0
    var communicationInBackward = 0.0
    var communicationWait = 0.0
    var clipping = 0.0
    var optimiser = 0.0
    /// End of the last step's backward (monotonic ns).
    var backwardEnd: UInt64 = 0
}

func round3(_ x: Double) -> Double { (x * 1000).rounded() / 1000 }
func round4(_ x: Double) -> Double { (x * 10000).rounded() / 10000 }

// The ranks as the replicas of synchronised BatchNorm and global triplet mining.
extension ShardGroup: BatchNormStatisticsReducer, ReplicaBatchGroup {}
