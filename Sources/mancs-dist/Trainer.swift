import Checkpoint
import Distributed
import Foundation
import HDF5Kit
import Kernels
import MancsModel
import MancsTraining
import ReIDData
import ReIDEval

/// The training loop of one rank (SPEC sections 3, 6, 7): set-up, steps,
/// checkpoints, stopping. Every rank runs the same code; collective calls are
/// made in the same order on all of them.
final class Trainer {
    let s: TrainSettings
    let comm: Communicator
    let log: RunLog
    let runDir: URL
    let dataset: ReIDDataset
    let sampler: PKSampler
    let network: MancsNetwork
    let trainStep: TrainStep
    let adam: Adam
    let reducer: GradientReducer
    /// Global steps of the whole run: epochs x batches per epoch, capped by --max-steps.
    let totalSteps: Int
    var state: TrainingState
    /// Best evaluation mAP of this process's run so far (for best.h5).
    var bestMAP = -1.0
    /// See `TrainCommand.dumpGradients`.
    var dumpGradientsPath: String?

    /// Runs training; returns the process exit code. Errors are reported once
    /// (by rank 0 when every rank has the same one) and end every rank.
    static func run(settings given: TrainSettings, dumpGradients: String? = nil) -> Int32 {
        var settings = given
        if settings.threads == 0 { settings.threads = ProcessEnvironment.defaultComputeThreads }
        StopSignal.install()
        let comm: Communicator
        do { comm = try Communicator.world() } catch {
            FileHandle.standardError.write(Data("mancs-dist: cannot start MPI: \(error)\n".utf8))
            return 1
        }
        defer { comm.finalize() }
        let log: RunLog
        do {
            log = try RunLog(rank: comm.rank, runDir: comm.isRoot ? try prepareRunDirectory(settings) : nil)
        } catch {
            if comm.isRoot { FileHandle.standardError.write(Data("mancs-dist: \(error)\n".utf8)) }
            return 1
        }
        defer { log.close() }
        let trainer: Trainer
        do {
            trainer = try Trainer(settings: settings, comm: comm, log: log)
            trainer.dumpGradientsPath = dumpGradients
        } catch {
            // Set-up errors are the same on every rank (same flags, same data) or
            // were shared by rank 0: one report is enough.
            if comm.isRoot { log.error("\(error)") }
            return 1
        }
        defer { trainer.reducer.shutdown() }
        do {
            return try trainer.train()
        } catch let e as TrainingFailure {
            // Every rank has the same failure at the same step: rank 0 reports it.
            if comm.isRoot { log.error(e.description) }
            return 1
        } catch {
            log.error("\(error)")
            // An error on one rank only would leave the others waiting in a collective.
            comm.abort(code: 1)
        }
    }

    /// Creates RUN_DIR and writes config.yaml (rank 0).
    static func prepareRunDirectory(_ s: TrainSettings) throws -> String {
        let dir = URL(fileURLWithPath: s.runDir)
        do {
            try FileManager.default.createDirectory(at: dir.appendingPathComponent("checkpoints"), withIntermediateDirectories: true)
        } catch {
            throw SettingsError("--run-dir \(s.runDir): cannot create the run directory (\(error.localizedDescription))")
        }
        try settingsYAML(s).write(to: dir.appendingPathComponent("config.yaml"), atomically: true, encoding: .utf8)
        return dir.path
    }

    init(settings s: TrainSettings, comm: Communicator, log: RunLog) throws {
        self.s = s
        self.comm = comm
        self.log = log
        runDir = URL(fileURLWithPath: s.runDir)
        setComputeThreads(s.threads)

        // The batch must split into whole identities over ranks x micro-batches.
        let shards = comm.size * s.accumulate
        guard s.idsPerBatch % shards == 0 else {
            throw SettingsError("--ids-per-batch \(s.idsPerBatch) does not divide by \(comm.size) ranks x --accumulate \(s.accumulate) = \(shards): every shard trains on whole identities. Choose P as a multiple of \(shards).")
        }

        // Data: every rank reads the listing (the same on all of them).
        dataset = try loadDataset(name: s.dataset, root: s.data)
        for w in dataset.skipped.prefix(5) { log.info("skipped \(w.path): \(w.reason)") }
        if dataset.skipped.count > 5 { log.info("... and \(dataset.skipped.count - 5) more skipped files (see `mancs data`)") }
        guard dataset.trainClasses >= s.idsPerBatch else {
            throw SettingsError("\(s.data): \(dataset.trainClasses) training identities, fewer than --ids-per-batch \(s.idsPerBatch)")
        }
        sampler = try PKSampler(split: dataset.train, p: s.idsPerBatch, k: s.imagesPerId, seed: UInt64(s.seed),
                                rank: comm.rank, worldSize: comm.size)
        let perEpoch = sampler.batchesPerEpoch
        totalSteps = min(s.epochs * perEpoch, s.maxSteps ?? Int.max)

        // Model: every rank builds it; rank 0's values are broadcast below.
        var config = MancsConfig()
        config.baseWidth = s.baseWidth; config.blocks = s.blocks; config.lastStride = s.lastStride
        config.attentionStages = s.attentionStages; config.height = s.height; config.width = s.width
        config.numClasses = dataset.trainClasses
        try config.validate()
        let microBatch = s.idsPerBatch / shards * s.imagesPerId
        network = try MancsNetwork(config: config, maxBatch: microBatch, seed: UInt64(s.seed),
                                   initialization: InitScheme(rawValue: s.initialization)!)
        trainStep = TrainStep(network: network, losses: LossSettings(
            margin: Float(s.margin), gamma: Float(s.gamma), lambdaRank: Float(s.lambdaRank),
            lambdaCls: Float(s.lambdaCls), lambdaAtt: Float(s.lambdaAtt)))
        adam = Adam(count: network.parameters.count, lr: Float(s.lr))
        state = TrainingState(worldSize: Int64(comm.size), seed: UInt64(s.seed), config: try Trainer.checkpointConfig(s, config))

        log.info("mancs-dist: \(comm.size) rank(s) x \(s.threads) thread(s); \(dataset.name): \(dataset.train.identityCount) ids / \(dataset.train.count) training images; P=\(s.idsPerBatch) K=\(s.imagesPerId), \(microBatch) images per rank-step\(s.accumulate > 1 ? " x \(s.accumulate) micro-batches" : ""); \(perEpoch) steps per epoch, \(totalSteps) steps in all")
        log.info("model: \(s.architectureSummary), \(config.numClasses) classes, \(network.parameters.count) parameters, \(s.pretrained == nil ? "" : "layers not in --pretrained ")\(s.initialization) init")

        // Start: resume, or initialise (+ pretrained) on rank 0 and broadcast.
        let moments = AdamMoments(m: adam.m, v: adam.v, step: 0)
        var resumeFrom: URL? = nil
        switch s.resume {
        case "none": break
        case "auto":
            let (url, warnings) = try Checkpoint.latestValidCheckpoint(runDirectory: runDir, comm: comm)
            for w in warnings { log.warning(w) }
            resumeFrom = url
        default:
            resumeFrom = URL(fileURLWithPath: s.resume)
        }
        if let url = resumeFrom {
            let loaded = try Checkpoint.loadAndBroadcast(url, comm: comm, parameters: network.parameters,
                                                         buffers: network.buffers, adam: moments)
            adam.step = loaded.adamStep
            state.globalStep = loaded.state.globalStep
            if loaded.state.worldSize != Int64(comm.size) {
                log.info("checkpoint was written by \(loaded.state.worldSize) rank(s); continuing on \(comm.size) with the same global batches")
            }
            if loaded.state.seed != UInt64(s.seed) {
                log.warning("checkpoint seed \(loaded.state.seed) differs from --seed \(s.seed): the batch stream changes from here")
            }
            if let data = loaded.state.json.data(using: .utf8),
               let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
               let best = object["best_map"] as? Double {
                bestMAP = best
                state.json = loaded.state.json
            }
            log.info("resumed from \(loaded.path) at step \(state.globalStep)")
        } else {
            if let pre = s.pretrained {
                let report = try Trainer.loadPretrainedOnRoot(pre, network: network, comm: comm)
                log.info("pretrained \(pre): \(report)")
            }
            try Checkpoint.broadcastWeights(comm: comm, parameters: network.parameters, buffers: network.buffers)
        }
        reducer = try GradientReducer(comm: comm, gradients: network.parameters.grads!)
    }

    // MARK: - The loop

    func train() throws -> Int32 {
        let perEpoch = sampler.batchesPerEpoch
        if state.globalStep >= totalSteps {
            log.info("nothing to do: step \(state.globalStep) already reached the end (\(totalSteps) steps)")
            return 0
        }
        let loader = BatchLoader(split: dataset.train, sampler: sampler,
                                 settings: TransformSettings(height: s.height, width: s.width),
                                 startEpoch: Int(state.globalStep) / perEpoch, startBatch: Int(state.globalStep) % perEpoch,
                                 threads: s.loaderThreads, warn: { [log] in log.warning($0) })
        defer { loader.stop() }
        let grads = network.parameters.grads!
        let imageSize = s.height * s.width * 3
        var window = (steps: 0, images: 0, start: Date())
        let runStart = Date(), firstStep = state.globalStep
        var sums = [Double](repeating: 0, count: 4)
        var lastEvaluatedStep = -1
        if s.evalEvery > 0 && state.globalStep == 0 {
            try evaluate(label: "untrained model")  // the baseline the run must beat
            lastEvaluatedStep = 0
        }

        while Int(state.globalStep) < totalSteps {
            let step = Int(state.globalStep)
            let epoch = step / perEpoch
            let batch = try loader.next()
            precondition(batch.epoch == epoch && batch.index == step % perEpoch, "loader out of step")

            // Micro-batches: shard `rank * A + micro` of the global batch.
            let micro = batch.count / s.accumulate
            var local = [Double](repeating: 0, count: 4)
            var reduceError: Error? = nil
            for m in 0..<s.accumulate {
                let last = m == s.accumulate - 1
                var rng = Trainer.stepRandom(seed: s.seed, step: step, shard: comm.rank * s.accumulate + m)
                if last { reducer.beginStep() }
                let labels = Array(batch.labels[(m * micro)..<((m + 1) * micro)])
                let result = batch.images.withUnsafeBufferPointer { images in
                    trainStep.run(images: images.baseAddress! + m * micro * imageSize, labels: labels,
                                  sampling: sampling(epoch: epoch), rng: &rng, accumulate: m > 0,
                                  onGradientsReady: last ? { [reducer] range in
                                      do { try reducer.gradientsReady(range); try reducer.progress() }
                                      catch { if reduceError == nil { reduceError = error } }
                                  } : nil)
                }
                local[0] += Double(result.rank); local[1] += Double(result.cls)
                local[2] += Double(result.att); local[3] += Double(result.total)
            }
            try reducer.finish()
            if let e = reduceError { throw e }
            if s.accumulate > 1 { scale(count: grads.count, grads.baseAddress!, by: 1 / Float(s.accumulate)) }
            if let path = dumpGradientsPath, comm.isRoot {
                let file = try HDF5File(creating: path)
                try network.parameters.write(to: file.root.createGroup("grads"), gradient: true)
                file.close()
                dumpGradientsPath = nil
            }

            // Losses averaged over every shard, for logging and the NaN check.
            try comm.allreduceSum(&local)
            let losses = local.map { $0 / Double(comm.size * s.accumulate) }
            let norm = clipGradientNorm(grads, maxNorm: Float(s.clipNorm))
            guard losses.allSatisfy(\.isFinite), norm.isFinite else {
                let what = losses.allSatisfy(\.isFinite) ? "gradient" : "loss"
                throw TrainingFailure("step \(step + 1): non-finite \(what) (losses rank \(losses[0]), cls \(losses[1]), att \(losses[2]); gradient norm \(norm)). Stopped without writing a checkpoint of this state; resume from the last checkpoint with a lower --lr or --clip-norm.")
            }
            adam.update(parameters: network.parameters.values, gradients: UnsafeBufferPointer(grads))

            state.globalStep += 1
            let done = Int(state.globalStep)
            state.epoch = Int64(done / perEpoch)
            state.batchInEpoch = Int64(done % perEpoch)
            window.steps += 1; window.images += s.idsPerBatch * s.imagesPerId
            for i in 0..<4 { sums[i] += losses[i] }

            if done % s.logEvery == 0 || done == totalSteps {
                let elapsed = Date().timeIntervalSince(window.start)
                let rate = Double(window.images) / max(elapsed, 1e-9)
                let perStep = Date().timeIntervalSince(runStart) / Double(Int64(done) - firstStep)
                let eta = perStep * Double(totalSteps - done)
                let mean = sums.map { $0 / Double(window.steps) }
                let (mu, sigma) = curriculumState(epoch: epoch)
                log.info(String(format: "epoch %d step %d/%d  loss %.4f (rank %.4f cls %.4f att %.4f)  lr %.2e  mu %.1f sigma %.3g  %.1f imgs/s  ETA %@",
                                epoch + 1, done, totalSteps, mean[3], mean[0], mean[1], mean[2], s.lr, mu, sigma, rate, formatDuration(eta)))
                log.metric(["kind": "train", "step": done, "epoch": epoch, "loss": mean[3], "loss_rank": mean[0],
                            "loss_cls": mean[1], "loss_att": mean[2], "lr": s.lr, "grad_norm": Double(norm),
                            "curriculum_mu": mu, "curriculum_sigma": sigma, "imgs_per_s": rate, "eta_s": eta])
                window = (0, 0, Date()); sums = [0, 0, 0, 0]
            }
            log.progress(step: done, total: totalSteps, text: String(format: "loss %.4f", losses[3]))

            if done % s.checkReplicasEvery == 0 {
                try ReplicaCheck.verify(UnsafeBufferPointer(network.parameters.values), name: "parameters", comm: comm)
            }
            let endOfEpoch = done % perEpoch == 0
            if s.evalEvery > 0 && endOfEpoch && (done / perEpoch) % s.evalEvery == 0 && done < totalSteps {
                try evaluate(label: "epoch \(done / perEpoch)")
                lastEvaluatedStep = done
            }
            let stopping = try StopSignal.anyRankRequestedStop(comm)
            if stopping || done % s.checkpointEvery == 0 || done == totalSteps {
                let url = try saveCheckpoint()
                if stopping {
                    log.info("stop requested (SIGTERM/SIGUSR1): checkpoint \(url.lastPathComponent) written at step \(done); exiting. Rerun with --resume auto to continue.")
                    return 0
                }
            }
        }
        if lastEvaluatedStep != Int(state.globalStep) { try evaluate(label: "final") }
        let checksum = ReplicaCheck.checksum(UnsafeBufferPointer(network.parameters.values))
        try ReplicaCheck.verify(UnsafeBufferPointer(network.parameters.values), name: "parameters", comm: comm)
        log.info("replicas identical on \(comm.size) rank(s): parameter checksum \(String(checksum, radix: 16))")
        log.info("training finished at step \(state.globalStep); checkpoints in \(runDir.appendingPathComponent("checkpoints").path)")
        return 0
    }

    // MARK: - Evaluation

    /// Collective: features of query and gallery extracted by every rank,
    /// scored on rank 0 (Market protocol), logged, and the best model by mAP
    /// kept as RUN_DIR/best.h5.
    func evaluate(label: String) throws {
        guard !dataset.query.images.isEmpty, !dataset.gallery.images.isEmpty else { return }
        let start = Date()
        let features = try extractFeatures(network: network, dataset: dataset, comm: comm,
                                           loaderThreads: s.loaderThreads, paths: false)
        guard let features else { return }  // ranks other than 0
        let r = try evaluateMarket(query: features.query, gallery: features.gallery,
                                   options: EvalOptions(threads: s.threads))
        let step = Int(state.globalStep), epoch = step / sampler.batchesPerEpoch
        log.info(String(format: "eval (%@, step %d): rank-1 %.2f%%  rank-5 %.2f%%  mAP %.2f%%  mINP %.2f%%  (%d queries, %d gallery, %.1f s)",
                        label, step, 100 * (r.rank(1) ?? 0), 100 * (r.rank(5) ?? 0), 100 * r.mAP, 100 * r.mINP,
                        r.numValidQuery, r.numGallery, Date().timeIntervalSince(start)))
        var m = r.jsonObject()
        m["cmc"] = nil
        m["kind"] = "eval"; m["step"] = step; m["epoch"] = epoch; m["label"] = label
        log.metric(m)
        if step > 0 && r.mAP > bestMAP {
            bestMAP = r.mAP
            let best = runDir.appendingPathComponent("best.h5"), tmp = runDir.appendingPathComponent(".best.h5.tmp")
            let moments = AdamMoments(m: adam.m, v: adam.v, step: adam.step)
            try? FileManager.default.removeItem(at: tmp)
            try Checkpoint.write(to: tmp.path, parameters: network.parameters, buffers: network.buffers, adam: moments, state: state)
            guard rename(tmp.path, best.path) == 0 else { throw RankFailure("cannot write \(best.path): \(String(cString: strerror(errno)))") }
            state.json = "{\"best_map\": \(r.mAP)}"  // carried by later checkpoints, read back on resume
            log.info(String(format: "best mAP so far (%.2f%%): %@", 100 * r.mAP, best.path))
        }
    }

    // MARK: - Pieces

    @discardableResult
    func saveCheckpoint() throws -> URL {
        let moments = AdamMoments(m: adam.m, v: adam.v, step: adam.step)
        let url = try Checkpoint.saveOnRoot(comm: comm, parameters: network.parameters, buffers: network.buffers,
                                            adam: moments, state: state, runDirectory: runDir, keep: s.keepCheckpoints)
        log.info("checkpoint \(url.path)")
        return url
    }

    func sampling(epoch: Int) -> NegativeSampling {
        switch s.negatives {
        case "hardest": return .hardest
        case "random": return .random
        default: return .curriculum(CurriculumSchedule(t0: s.t0, t1: s.t1, a: s.curriculumA, b: s.curriculumB), epoch: epoch)
        }
    }

    /// mu and sigma of the curriculum at an epoch (for the log), for the
    /// number of negatives an anchor has in a shard.
    func curriculumState(epoch: Int) -> (Double, Double) {
        let shardIds = s.idsPerBatch / (comm.size * s.accumulate)
        let nn = Double((shardIds - 1) * s.imagesPerId)
        let t = Double(epoch)
        return (max(nn - nn / s.t0 * t, 0), s.curriculumA * pow(s.curriculumB, (t - s.t0) / (s.t1 - s.t0)))
    }

    /// The random stream of one shard at one step: a function of (seed, step,
    /// shard) only, so sampling does not depend on where a run was resumed.
    static func stepRandom(seed: Int, step: Int, shard: Int) -> InitRandom {
        var h = UInt64(bitPattern: Int64(seed)) &* 0x9E37_79B9_7F4A_7C15
        h ^= UInt64(step) &* 0xBF58_476D_1CE4_E5B9
        h ^= UInt64(shard) &* 0x94D0_49BB_1331_11EB
        return InitRandom(seed: h)
    }

    static func checkpointConfig(_ s: TrainSettings, _ model: MancsConfig) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let modelJSON = try JSONSerialization.jsonObject(with: encoder.encode(model))
        let trainJSON = try JSONSerialization.jsonObject(with: encoder.encode(s))
        let data = try JSONSerialization.data(withJSONObject: ["model": modelJSON, "train": trainJSON], options: [.sortedKeys])
        return String(decoding: data, as: UTF8.self)
    }

    /// Rank 0 reads the pretrained file; its error (if any) reaches every rank.
    static func loadPretrainedOnRoot(_ path: String, network: MancsNetwork, comm: Communicator) throws -> String {
        var message = Data(), failed: Int64 = 0
        if comm.isRoot {
            do {
                let url = URL(fileURLWithPath: path)
                if path.hasSuffix(".h5") {
                    try Checkpoint.loadWeights(url, parameters: network.parameters, buffers: network.buffers)
                    message = Data("loaded all weights from a Mancs checkpoint".utf8)
                } else {
                    message = Data("\(try network.loadPretrained(safetensors: url))".utf8)
                }
            } catch {
                failed = 1
                message = Data("--pretrained \(path): \(error)".utf8)
            }
        }
        var flag = [failed]
        try comm.broadcast(&flag)
        message = try comm.broadcast(data: message)
        let text = String(decoding: message, as: UTF8.self)
        if flag[0] != 0 { throw SettingsError(text) }
        return text
    }
}

/// A failure every rank sees at the same step (e.g. a NaN loss after the allreduce).
struct TrainingFailure: Error, CustomStringConvertible {
    var description: String
    init(_ s: String) { description = s }
}

/// A failure of one rank only (e.g. rank 0 cannot write a file): reported by that
/// rank, and the job is aborted so the others do not wait in a collective.
struct RankFailure: Error, CustomStringConvertible {
    var description: String
    init(_ s: String) { description = s }
}

func settingsYAML(_ s: TrainSettings) throws -> String {
    "# Effective settings of this run (defaults < --config < flags).\n" + (try YAMLText.encode(s))
}
