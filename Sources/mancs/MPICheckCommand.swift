import ArgumentParser
import Checkpoint
import Distributed
import Foundation
import Kernels
import MancsModel

/// A user's first diagnostic under mpirun: who is in the world, do broadcast and
/// allreduce give the right values, and how fast is an allreduce. Hidden flags
/// exercise the gradient reducer and the stop signal for the integration tests.
struct MPICheckCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mpi-check", abstract: "Check MPI: world size, hosts, broadcast, allreduce and its bandwidth.",
        discussion: "Run it as `mpirun -np 2 mancs mpi-check`. Without mpirun it is a world of one.")

    @Option(help: "Size of the timed allreduce, in megabytes.") var megabytes: Int = 64
    @Flag(help: .hidden) var selfTest = false
    @Flag(help: .hidden) var stopTest = false
    @Flag(help: .hidden) var overlapBench = false
    @Option(help: .hidden) var steps: Int = 100
    @Option(help: .hidden) var stepMs: Int = 50
    @Option(help: .hidden) var bucketMegabytes: Int = 25
    @Option(help: .hidden) var checkpointRun: String?

    func validate() throws {
        try FlagCheck.int("megabytes", megabytes, 1...65_536)
        try FlagCheck.int("steps", steps, 1...1_000_000)
        try FlagCheck.int("step-ms", stepMs, 0...600_000)
        try FlagCheck.int("bucket-megabytes", bucketMegabytes, 1...65_536)
    }

    func run() throws {
        // Before MPI_Init, as the trainer does: the handlers must survive it.
        if stopTest { StopSignal.install() }
        let comm = try Communicator.world()
        var failures = 0
        do {
            if stopTest {
                try runStopTest(comm)
            } else if overlapBench {
                try runOverlapBench(comm)
            } else {
                failures += try basicChecks(comm)
                if selfTest { failures += try reducerSelfTest(comm) }
                if let checkpointRun { failures += try checkpointSelfTest(comm, runDirectory: URL(fileURLWithPath: checkpointRun)) }
            }
        } catch {
            FileHandle.standardError.write(Data("mancs mpi-check (rank \(comm.rank)): \(error)\n".utf8))
            comm.abort(code: 1)
        }
        let anyFailure = try comm.allreduceMax(Int64(failures))
        comm.finalize()
        if anyFailure > 0 {
            if comm.isRoot { say("mpi-check: FAILED") }
            throw ExitCode(1)
        }
        if comm.isRoot && !stopTest && !overlapBench { say("mpi-check: OK") }
    }

    // MARK: World, broadcast, allreduce, bandwidth

    func basicChecks(_ comm: Communicator) throws -> Int {
        var failures = 0
        func expect(_ ok: Bool, _ what: String) {
            if !ok { failures += 1; say("rank \(comm.rank): FAILED \(what)") }
        }
        let me = "rank \(comm.rank) on \(comm.hostname) (pid \(getpid()))"
        let all = try comm.gather(data: Data(me.utf8))
        if let all {
            say("world size \(comm.size) (MPI thread multiple: \(comm.threadMultiple))")
            for d in all { say("  " + String(decoding: d, as: UTF8.self)) }
        }
        try reportNodes(comm)

        // Compute kernels: every rank's BLAS core and single-thread sgemm rate.
        let report = BLASKernelSelection.report
        let kernels = try comm.gatherKernels(core: report.core, sgemmGFLOPs: measureSgemmGFLOPs(size: 1024, repeats: 2))
        if let kernels {
            say("BLAS (rank 0): \(report.summary)")
            say("GEMM (rank 0): \(GEMMKernel.summary)")
            for k in kernels { say("  " + k.description + " (1 thread, 1024^3)") }
            for k in RankKernels.slow(kernels) { say("warning: " + k.slowWarning(comparedTo: kernels[0])) }
        }

        // Broadcast: the root's values arrive everywhere.
        var floats = (0..<1000).map { comm.isRoot ? Float($0) * 0.5 + 1 : 0 }
        try floats.withUnsafeMutableBufferPointer { try comm.broadcast($0) }
        expect(floats.enumerated().allSatisfy { $0.element == Float($0.offset) * 0.5 + 1 }, "broadcast of floats")
        var ints = (0..<100).map { comm.isRoot ? Int64($0) * 1_000_000_007 : 0 }
        try comm.broadcast(&ints)
        expect(ints.enumerated().allSatisfy { $0.element == Int64($0.offset) * 1_000_000_007 }, "broadcast of int64")
        let blob = try comm.broadcast(data: comm.isRoot ? Data("hello from rank 0".utf8) : Data())
        expect(String(decoding: blob, as: UTF8.self) == "hello from rank 0", "broadcast of a blob")

        // Allreduce: integers small enough that every order of sums is exact.
        let n = comm.size
        var sums = (0..<1000).map { Float(comm.rank + 1) * Float($0 % 7) }
        try sums.withUnsafeMutableBufferPointer { try comm.allreduceSum($0) }
        let ranksSum = Float(n * (n + 1) / 2)
        let sumsRight = sums.indices.allSatisfy { (i: Int) -> Bool in sums[i] == ranksSum * Float(i % 7) }
        expect(sumsRight, "allreduce sum of floats")
        let dsum = try comm.allreduceSum(Double(comm.rank) + 0.25)
        expect(dsum == Double(n * (n - 1) / 2) + 0.25 * Double(n), "allreduce sum of doubles")
        expect(try comm.allreduceMax(Int64(comm.rank)) == Int64(n - 1), "allreduce max")
        expect(try comm.allreduceMin(Int64(comm.rank) - 5) == -5, "allreduce min")
        let gathered = try comm.allgather([Int64(comm.rank * 10), Int64(comm.rank * 10 + 1)])
        var expectedGather: [Int64] = []
        for r in 0..<n { expectedGather += [Int64(r * 10), Int64(r * 10 + 1)] }
        expect(gathered == expectedGather, "allgather")
        if comm.isRoot && failures == 0 { say("broadcast, allreduce (sum/max/min), allgather, gather: correct") }

        // Bandwidth of an allreduce of N MB.
        let count = max(1, megabytes * 1_048_576 / 4)
        let buffer = UnsafeMutableBufferPointer<Float>.allocate(capacity: count)
        defer { buffer.deallocate() }
        buffer.initialize(repeating: 1)
        try comm.allreduceSum(buffer)  // warm-up (also maps the pages)
        try comm.barrier()
        let reps = 5
        let start = DispatchTime.now()
        for _ in 0..<reps { try comm.allreduceSum(buffer) }
        let seconds = try comm.allreduceMax(Double(DispatchTime.now().uptimeNanoseconds - start.uptimeNanoseconds) / 1e9) / Double(reps)
        if comm.size == 1 {
            say("world of one: nothing to time (run under mpirun -np 2 or more)")
        } else if comm.isRoot {
            let bytes = Double(count * 4)
            say(String(format: "allreduce of %d MB: %.1f ms, %.2f GB/s algorithm bandwidth, %.2f GB/s bus bandwidth",
                       megabytes, seconds * 1e3, bytes / seconds / 1e9, bytes / seconds / 1e9 * 2 * Double(n - 1) / Double(n)))
        }
        if comm.size > 1 { try timeSmallAllreduce(comm) }
        return failures
    }

    /// Ranks grouped by host: on more than one node the timed collectives cross
    /// the network (TCP, or whatever Open MPI chose), not shared memory.
    func reportNodes(_ comm: Communicator) throws {
        guard let hosts = try comm.gather(data: Data(comm.hostname.utf8)) else { return }
        var ranksOf: [String: [Int]] = [:], order: [String] = []
        for (r, h) in hosts.map({ String(decoding: $0, as: UTF8.self) }).enumerated() {
            if ranksOf[h] == nil { order.append(h) }
            ranksOf[h, default: []].append(r)
        }
        say("\(order.count) node(s): " + order.map { "\($0) (rank\(ranksOf[$0]!.count > 1 ? "s" : "") \(ranksOf[$0]!.map(String.init).joined(separator: ",")))" }.joined(separator: ", "))
    }

    /// Latency of a small allreduce (4 KiB, the size of a fused BatchNorm
    /// statistics exchange): what synchronised BatchNorm pays per layer.
    func timeSmallAllreduce(_ comm: Communicator) throws {
        var small = [Float](repeating: 1, count: 1024)
        for _ in 0..<10 { try comm.allreduceSum(&small) }
        try comm.barrier()
        let reps = 200
        let start = DispatchTime.now()
        for _ in 0..<reps { try comm.allreduceSum(&small) }
        let seconds = try comm.allreduceMax(Double(DispatchTime.now().uptimeNanoseconds - start.uptimeNanoseconds) / 1e9) / Double(reps)
        if comm.isRoot { say(String(format: "allreduce of 4 KiB: %.1f us (mean of %d)", seconds * 1e6, reps)) }
    }

    // MARK: Gradient reducer self-test

    /// Deterministic per-rank gradients; the average must be right (to rounding),
    /// bit-identical across ranks, and identical when the step is repeated.
    func reducerSelfTest(_ comm: Communicator) throws -> Int {
        var failures = 0
        let count = 3_000_003
        let g = UnsafeMutableBufferPointer<Float>.allocate(capacity: count)
        defer { g.deallocate() }
        func fill() { for i in 0..<count { g[i] = Float(sin(Double(i) * 0.001 + Double(comm.rank))) * Float(comm.rank + 1) } }
        func expected(_ i: Int) -> Double {
            (0..<comm.size).reduce(0.0) { $0 + sin(Double(i) * 0.001 + Double($1)) * Double($1 + 1) } / Double(comm.size)
        }
        for mode in GradientReducer.Mode.allCases {
            if mode == .thread && !comm.threadMultiple { continue }
            let reducer = try GradientReducer(comm: comm, gradients: g, bucketBytes: 1 << 20, mode: mode)
            defer { reducer.shutdown() }
            var firstResult: UInt64 = 0
            for repeatIndex in 0..<2 {
                fill()
                reducer.beginStep()
                // Ranges in decreasing offset order, of uneven sizes, with progress between.
                var end = count, k = 0
                while end > 0 {
                    let len = min(end, 100_000 + (k * 37_813) % 400_000)
                    try reducer.gradientsReady((end - len)..<end)
                    try reducer.progress()
                    end -= len; k += 1
                }
                try reducer.finish()
                var worst = 0.0
                for i in stride(from: 0, to: count, by: 997) { worst = max(worst, abs(Double(g[i]) - expected(i))) }
                if worst > 1e-5 { failures += 1; say("rank \(comm.rank): FAILED \(mode) reducer: error \(worst)") }
                do { try ReplicaCheck.verify(UnsafeBufferPointer(g), name: "averaged gradients (\(mode))", comm: comm) } catch {
                    failures += 1; say("rank \(comm.rank): FAILED \(error)")
                }
                let sum = ReplicaCheck.checksum(UnsafeBufferPointer(g))
                if repeatIndex == 0 { firstResult = sum } else if sum != firstResult {
                    failures += 1; say("rank \(comm.rank): FAILED \(mode) reducer is not reproducible")
                }
            }
            if comm.isRoot { say("gradient reducer (\(mode), \(reducer.buckets.count) buckets): average correct, bit-identical across ranks, reproducible") }
        }

        // The replica check must notice a one-bit difference on the last rank.
        if comm.size > 1 {
            var x = [Float](repeating: 1.5, count: 1000)
            if comm.rank == comm.size - 1 { x[500] = x[500].nextUp }
            do {
                try x.withUnsafeBufferPointer { try ReplicaCheck.verify($0, name: "test buffer", comm: comm) }
                failures += 1; say("rank \(comm.rank): FAILED replica check missed a difference")
            } catch let e as ReplicaMismatch {
                if !e.message.contains("rank(s) \(comm.size - 1)") { failures += 1; say("rank \(comm.rank): FAILED wrong ranks named: \(e)") }
            }
            if comm.isRoot { say("replica check: detects a one-bit difference and names rank \(comm.size - 1)") }
        }

        // A stop requested on the last rank only is seen by every rank at the same step.
        var stoppedAt = -1
        for step in 0..<10 {
            if comm.rank == comm.size - 1 && step == 3 { StopSignal.request() }
            if try StopSignal.anyRankRequestedStop(comm) { stoppedAt = step; break }
        }
        StopSignal.request(false)
        if stoppedAt != 3 { failures += 1; say("rank \(comm.rank): FAILED stop agreed at step \(stoppedAt), expected 3") }
        else if comm.isRoot { say("stop request: every rank agreed to stop after step 3") }
        return failures
    }

    // MARK: Checkpoint collectives

    /// Rank 0 initialises and broadcasts, saves; every rank then reloads through
    /// rank 0 and must get back exactly what was saved. Leaves the checkpoint
    /// in RUN/checkpoints for the script to inspect.
    func checkpointSelfTest(_ comm: Communicator, runDirectory: URL) throws -> Int {
        var failures = 0
        let params = ParameterStore(shapes: [("backbone.conv1.weight", [8, 3, 7, 7]), ("backbone.bn1.weight", [8]),
                                             ("heads.rank.fc.weight", [16, 8])], withGradients: true)
        let buffers = ParameterStore(shapes: [("backbone.bn1.running_mean", [8]), ("backbone.bn1.running_var", [8])],
                                     withGradients: false)
        let m = UnsafeMutableBufferPointer<Float>.allocate(capacity: params.count)
        let v = UnsafeMutableBufferPointer<Float>.allocate(capacity: params.count)
        defer { m.deallocate(); v.deallocate() }
        m.initialize(repeating: 0); v.initialize(repeating: 0)
        if comm.isRoot {
            for i in params.values.indices { params.values[i] = Float(sin(Double(i))) }
            for i in buffers.values.indices { buffers.values[i] = Float(i) + 0.5 }
        }
        try Checkpoint.broadcastWeights(comm: comm, parameters: params, buffers: buffers)
        for i in m.indices { m[i] = params.values[i] * 0.1; v[i] = params.values[i] * params.values[i] }
        let saved = (params.values.map(\.bitPattern), buffers.values.map(\.bitPattern), m.map(\.bitPattern), v.map(\.bitPattern))
        let state = TrainingState(globalStep: 17, epoch: 2, batchInEpoch: 5, worldSize: Int64(comm.size), seed: 99,
                                  config: #"{"model":{"baseWidth":2}}"#, best: BestEvaluation(mAP: 0.25, step: 12))
        let url = try Checkpoint.saveOnRoot(comm: comm, parameters: params, buffers: buffers,
                                            adam: AdamMoments(m: m, v: v, step: 17), state: state, runDirectory: runDirectory)
        params.values.update(repeating: 0); buffers.values.update(repeating: 0); m.update(repeating: 0); v.update(repeating: 0)
        let (found, warnings) = try Checkpoint.latestValidCheckpoint(runDirectory: runDirectory, comm: comm)
        if found?.path != url.path || !warnings.isEmpty { failures += 1; say("rank \(comm.rank): FAILED resume auto found \(String(describing: found)) \(warnings)") }
        let loaded = try Checkpoint.loadAndBroadcast(url, comm: comm, parameters: params, buffers: buffers, adam: AdamMoments(m: m, v: v, step: 0))
        let back = (params.values.map(\.bitPattern), buffers.values.map(\.bitPattern), m.map(\.bitPattern), v.map(\.bitPattern))
        if back != saved || loaded.state != state || loaded.adamStep != 17 {
            failures += 1; say("rank \(comm.rank): FAILED checkpoint round trip through rank 0")
        }
        // Rank 0's error reaches every rank.
        do {
            _ = try Checkpoint.loadAndBroadcast(runDirectory.appendingPathComponent("missing.h5"), comm: comm,
                                                parameters: params, buffers: buffers, adam: AdamMoments(m: m, v: v, step: 0))
            failures += 1; say("rank \(comm.rank): FAILED a missing checkpoint loaded")
        } catch {}
        if comm.isRoot && failures == 0 { say("checkpoint: saved on rank 0, found by resume auto, broadcast back bit-identical to every rank (\(url.path))") }
        return failures
    }

    // MARK: Stop signal test (driven by the integration script)

    func runStopTest(_ comm: Communicator) throws {
        say("rank \(comm.rank) pid \(getpid())")
        try comm.barrier()
        for step in 0..<steps {
            usleep(UInt32(stepMs * 1000))
            if try StopSignal.anyRankRequestedStop(comm) {
                say("rank \(comm.rank) stopped after step \(step) (signal received here: \(StopSignal.stopRequested))")
                return
            }
        }
        say("rank \(comm.rank) finished all \(steps) steps without a stop request")
    }

    // MARK: Overlap benchmark

    /// A simulated backward: `layers` layers of fixed compute, each then handing
    /// its slice of a gradient buffer of `megabytes` to the reducer. Compares
    /// compute alone, reduce alone, and both overlapped in each mode.
    func runOverlapBench(_ comm: Communicator) throws {
        let count = megabytes * 1_048_576 / 4, layers = 50
        let g = UnsafeMutableBufferPointer<Float>.allocate(capacity: count)
        defer { g.deallocate() }
        g.initialize(repeating: 1)
        let scratch = UnsafeMutableBufferPointer<Float>.allocate(capacity: 16_384)
        defer { scratch.deallocate() }
        scratch.initialize(repeating: 0.5)
        func layerCompute() {
            // About stepMs/layers of arithmetic no compiler can remove.
            let passes = max(1, stepMs * 40 / layers)
            for _ in 0..<passes { for i in scratch.indices { scratch[i] = scratch[i] * 0.999_9 + 0.000_05 } }
        }
        func timed(_ body: () throws -> Void) throws -> Double {
            try comm.barrier()
            let t = DispatchTime.now()
            try body()
            return try comm.allreduceMax(Double(DispatchTime.now().uptimeNanoseconds - t.uptimeNanoseconds) / 1e9)
        }
        let polling = try GradientReducer(comm: comm, gradients: g, bucketBytes: bucketMegabytes << 20, mode: .polling)
        let threaded = comm.threadMultiple
            ? try GradientReducer(comm: comm, gradients: g, bucketBytes: bucketMegabytes << 20, mode: .thread) : nil
        defer { threaded?.shutdown() }
        func overlapped(_ r: GradientReducer) throws {
            r.beginStep()
            for l in (0..<layers).reversed() {
                layerCompute()
                try r.gradientsReady((l * count / layers)..<((l + 1) * count / layers))
                try r.progress()
            }
            try r.finish()
        }
        // Rounds interleave the variants; the best of each resists noise from other processes.
        var compute = Double.infinity, reduceOnly = Double.infinity, reduceBlocking = Double.infinity, tPolling = Double.infinity, tThread = Double.infinity
        for _ in 0..<4 {
            compute = min(compute, try timed { for _ in 0..<layers { layerCompute() } })
            reduceOnly = min(reduceOnly, try timed { polling.beginStep(); try polling.gradientsReady(0..<count); try polling.finish() })
            tPolling = min(tPolling, try timed { try overlapped(polling) })
            if let threaded {
                tThread = min(tThread, try timed { try overlapped(threaded) })
                reduceBlocking = min(reduceBlocking, try timed { threaded.beginStep(); try threaded.gradientsReady(0..<count); try threaded.finish() })
            }
        }
        if comm.isRoot {
            // Hidden share of the faster standalone allreduce: 100% means the step costs only its compute.
            let reduce = min(reduceOnly, reduceBlocking)
            func hidden(_ t: Double) -> Double { max(0, compute + reduce - t) / reduce * 100 }
            say(String(format: "overlap bench, %d ranks, %d MB gradients, %d MB buckets, %d layers:", comm.size, megabytes, bucketMegabytes, layers))
            say(String(format: "  compute alone %.1f ms; allreduce alone: %.1f ms non-blocking (Iallreduce), %.1f ms blocking",
                       compute * 1e3, reduceOnly * 1e3, reduceBlocking * 1e3))
            say(String(format: "  polling (Iallreduce + progress per layer): %.1f ms, %.0f%% of the allreduce hidden", tPolling * 1e3, hidden(tPolling)))
            say(String(format: "  communication thread (blocking allreduce): %.1f ms, %.0f%% of the allreduce hidden", tThread * 1e3, hidden(tThread)))
        }
    }
}

/// Prints a line at once (mpirun forwards output; buffering would reorder it).
func say(_ line: String) {
    FileHandle.standardOutput.write(Data((line + "\n").utf8))
}
