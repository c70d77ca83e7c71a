import Checkpoint
import DeterministicRandom
import Distributed
import FeatureExtraction
import Foundation
import HDF5Kit
import Kernels
import MancsModel
import MancsTraining
import ReIDData
import ReIDEval

/// The training loop of one rank (docs/method.md §3, §6, §7): set-up, steps,
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
    /// The learning rate of each epoch (--lr-schedule, --warmup-epochs, ...).
    let schedule: LearningRateSchedule
    let reducer: GradientReducer
    /// The ranks as one batch: synchronised BatchNorm and global triplet mining (nil on one rank).
    let shardGroup: ShardGroup?
    /// Which checkpoints saving may delete (never the new one, never a newer one this run did not write).
    let retention: CheckpointRetention
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
        if settings.threads == 0 { settings.threads = NodeShare.defaultComputeThreads }
        StopSignal.install()
        let comm: Communicator
        do { comm = try Communicator.world() } catch {
            FileHandle.standardError.write(Data("mancs-dist: cannot start MPI: \(error)\n".utf8))
            return 1
        }
        defer { comm.finalize() }
        let log: RunLog
        do {
            // Only rank 0 writes (and locks) the run directory; every rank learns whether it could.
            log = try comm.agreeing { try RunLog(rank: comm.rank, runDir: comm.isRoot ? try prepareRunDirectory(settings) : nil) }
        } catch {
            if comm.isRoot { for line in "\(error)".split(separator: "\n") { FileHandle.standardError.write(Data("mancs-dist: error: \(line)\n".utf8)) } }
            return 1
        }
        defer { log.close() }
        // Every rank says which CPUs it got: on a cluster, binding is where a
        // launch most often goes wrong (see docs/cluster.md).
        let affinity = NodeShare.affinityReport(rank: comm.rank, host: comm.hostname, threads: settings.threads)
        log.everyRank("mancs-dist: \(affinity.line)")
        if let w = affinity.warning { log.warning(w) }
        let trainer: Trainer
        do {
            trainer = try Trainer(settings: settings, comm: comm, log: log)
            trainer.dumpGradientsPath = dumpGradients
        } catch {
            // Set-up errors are the same on every rank (same flags, same data), were
            // shared by rank 0, or were agreed on (AgreedFailure): one report is enough.
            if comm.isRoot { for line in "\(error)".split(separator: "\n") { log.error(String(line)) } }
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
        try lockRunDirectory(dir)
        try settingsYAML(s).write(to: dir.appendingPathComponent("config.yaml"), atomically: true, encoding: .utf8)
        return dir.path
    }

    /// The descriptor holding RUN_DIR/.lock, open for the life of the process.
    nonisolated(unsafe) static var runDirectoryLock: Int32 = -1

    /// Takes an exclusive `flock` on RUN_DIR/.lock (rank 0), refusing a second
    /// job in the same directory: two would delete each other's temporaries and
    /// interleave metrics.jsonl. The lock ends with the process, however it ends.
    static func lockRunDirectory(_ dir: URL) throws {
        let path = dir.appendingPathComponent(".lock").path
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw SettingsError("--run-dir \(dir.path): cannot open \(path): \(String(cString: strerror(errno)))") }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            let holder = (try? String(contentsOfFile: path, encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines) ?? ""
            close(fd)
            throw SettingsError("--run-dir \(dir.path) is in use by another job\(holder.isEmpty ? "" : " (the lock was last taken by \(holder))"): "
                                + "wait for it to end, or choose another --run-dir")
        }
        let me = Data("pid \(getpid()) on \(ProcessInfo.processInfo.hostName)\n".utf8)
        _ = ftruncate(fd, 0)
        _ = me.withUnsafeBytes { pwrite(fd, $0.baseAddress, me.count, 0) }
        runDirectoryLock = fd
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
        // Triplets need negatives: at least two identities where they are mined.
        if s.tripletMining == "local" && s.idsPerBatch / shards < 2 {
            throw SettingsError("--triplet-mining local: --ids-per-batch \(s.idsPerBatch) over \(comm.size) ranks x --accumulate \(s.accumulate) leaves \(s.idsPerBatch / shards) identity per shard, so its anchors have no negative. Use --triplet-mining global (the default), fewer ranks or micro-batches, or P of at least \(2 * shards).")
        }
        if s.tripletMining == "global" && s.idsPerBatch / s.accumulate < 2 {
            throw SettingsError("--ids-per-batch \(s.idsPerBatch) over --accumulate \(s.accumulate) leaves \(s.idsPerBatch / s.accumulate) identity per micro-batch, so its anchors have no negative. Use P of at least \(2 * s.accumulate).")
        }

        // Data: every rank reads the listing; a node that cannot see --data, or
        // sees another listing, stops every rank (with its host in the message).
        let listing = try comm.agreeing { try loadDataset(name: s.dataset, root: s.data) }
        try comm.agreeSame(digest: listing.listingDigest) {
            "\(s.data) lists \(listing.train.count) training, \(listing.query.count) query and \(listing.gallery.count) gallery images, not the same files as on rank 0"
        }
        dataset = listing
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
        shardGroup = comm.size > 1 && (s.batchNorm == "sync" || s.tripletMining == "global") ? try ShardGroup(world: comm) : nil
        if s.batchNorm == "sync" { network.batchNormReducer = shardGroup }
        trainStep = TrainStep(network: network, losses: LossSettings(
            margin: Float(s.margin), gamma: Float(s.gamma), lambdaRank: Float(s.lambdaRank),
            lambdaCls: Float(s.lambdaCls), lambdaAtt: Float(s.lambdaAtt)))
        adam = Adam(count: network.parameters.count, lr: Float(s.lr), weightDecay: Float(s.weightDecay))
        schedule = s.learningRateSchedule!  // checked by TrainSettings.validate
        state = TrainingState(worldSize: Int64(comm.size), seed: UInt64(s.seed), config: try Trainer.checkpointConfig(s, config))

        log.info("mancs-dist: \(comm.size) rank(s) x \(s.threads) thread(s); \(dataset.name): \(dataset.train.identityCount) ids / \(dataset.train.count) training images; P=\(s.idsPerBatch) K=\(s.imagesPerId), \(microBatch) images per rank-step\(s.accumulate > 1 ? " x \(s.accumulate) micro-batches" : ""); \(perEpoch) steps per epoch, \(totalSteps) steps in all")
        log.info("model: \(s.architectureSummary), \(config.numClasses) classes, \(network.parameters.count) parameters, \(s.pretrained == nil ? "" : "layers not in --pretrained ")\(s.initialization) init")
        log.info("triplet mining \(s.tripletMining), BatchNorm \(s.batchNorm): \(s.tripletMining == "global" ? s.idsPerBatch / s.accumulate : s.idsPerBatch / shards) identities mined together, BatchNorm statistics over \(s.batchNorm == "sync" ? microBatch * comm.size : microBatch) images")
        try Trainer.logComputeKernels(comm: comm, log: log, threads: s.threads)

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
            let stored = try Checkpoint.storedConfig(url, comm: comm)
            try ResumeContract.check(stored: stored, current: state.config, force: s.resumeForce, checkpoint: url.path)
            let loaded = try Checkpoint.loadAndBroadcast(url, comm: comm, parameters: network.parameters,
                                                         buffers: network.buffers, adam: moments)
            try Trainer.checkSameAlgorithm(checkpointConfig: loaded.state.config, path: loaded.path, s, log: log)
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
        retention = CheckpointRetention(keep: s.keepCheckpoints, resumedFrom: state.globalStep)
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
        // A stop signal during set-up: nothing new to save.
        if try StopSignal.anyRankRequestedStop(comm) {
            log.info("stop requested (SIGTERM/SIGUSR1) during set-up at step \(state.globalStep): exiting before training. Rerun with --resume auto to continue.")
            return 0
        }
        if (s.evalEvery > 0 || s.evalEverySteps > 0) && state.globalStep == 0 {
            guard try evaluateUnlessStopped(label: "untrained model") else { return 0 }  // the baseline the run must beat
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
                // Global mining: every rank draws the same negatives for micro-batch m.
                let global = s.tripletMining == "global"
                var rng = Trainer.stepRandom(seed: s.seed, step: step, shard: global ? m : comm.rank * s.accumulate + m)
                if last { reducer.beginStep() }
                let labels = Array(batch.labels[(m * micro)..<((m + 1) * micro)])
                let result = batch.images.withUnsafeBufferPointer { images in
                    trainStep.run(images: images.baseAddress! + m * micro * imageSize, labels: labels,
                                  sampling: sampling(epoch: epoch), rng: &rng, accumulate: m > 0,
                                  group: global ? shardGroup : nil,
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
            let lr = schedule.lr(epoch: epoch)
            adam.lr = Float(lr)
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
                                epoch + 1, done, totalSteps, mean[3], mean[0], mean[1], mean[2], lr, mu, sigma, rate, formatDuration(eta)))
                log.metric(["kind": "train", "step": done, "epoch": epoch, "loss": mean[3], "loss_rank": mean[0],
                            "loss_cls": mean[1], "loss_att": mean[2], "lr": lr, "grad_norm": Double(norm),
                            "curriculum_mu": mu, "curriculum_sigma": sigma, "imgs_per_s": rate, "eta_s": eta])
                window = (0, 0, Date()); sums = [0, 0, 0, 0]
            }
            log.progress(step: done, total: totalSteps, text: String(format: "loss %.4f", losses[3]))

            if done % s.checkReplicasEvery == 0 {
                try ReplicaCheck.verify(UnsafeBufferPointer(network.parameters.values), name: "parameters", comm: comm)
            }
            let endOfEpoch = done % perEpoch == 0
            let epochEval = s.evalEvery > 0 && endOfEpoch && (done / perEpoch) % s.evalEvery == 0
            let stepEval = s.evalEverySteps > 0 && done % s.evalEverySteps == 0
            if (epochEval || stepEval) && done < totalSteps {
                guard try evaluateUnlessStopped(label: endOfEpoch ? "epoch \(done / perEpoch)" : "step \(done)") else { return 0 }
                lastEvaluatedStep = done
            }
            let stopping = try StopSignal.anyRankRequestedStop(comm)
            let epochCheckpoint = s.checkpointEveryEpochs > 0 && endOfEpoch && (done / perEpoch) % s.checkpointEveryEpochs == 0
            if stopping || done % s.checkpointEvery == 0 || epochCheckpoint || done == totalSteps {
                let url = try saveCheckpoint()
                if stopping {
                    log.info("stop requested (SIGTERM/SIGUSR1): checkpoint \(url.lastPathComponent) written at step \(done); exiting. Rerun with --resume auto to continue.")
                    return 0
                }
            }
        }
        if lastEvaluatedStep != Int(state.globalStep) { guard try evaluateUnlessStopped(label: "final") else { return 0 } }
        let checksum = ReplicaCheck.checksum(UnsafeBufferPointer(network.parameters.values))
        try ReplicaCheck.verify(UnsafeBufferPointer(network.parameters.values), name: "parameters", comm: comm)
        log.info("replicas identical on \(comm.size) rank(s): parameter checksum \(String(checksum, radix: 16))")
        log.info("training finished at step \(state.globalStep); checkpoints in \(runDir.appendingPathComponent("checkpoints").path)")
        return 0
    }

    // MARK: - Evaluation

    /// `evaluate`, except that a stop signal during it ends the run as one
    /// after a step does: a checkpoint of the current step, then false.
    func evaluateUnlessStopped(label: String) throws -> Bool {
        do {
            try evaluate(label: label)
            return true
        } catch is EvaluationStopped {
            let url = try saveCheckpoint()
            log.info("stop requested (SIGTERM/SIGUSR1) during the evaluation: checkpoint \(url.lastPathComponent) written at step \(state.globalStep); exiting. Rerun with --resume auto to continue.")
            return false
        }
    }

    /// Collective: features of query and gallery extracted by every rank,
    /// scored on rank 0 (Market protocol), logged, and the best model by mAP
    /// kept as RUN_DIR/best.h5.
    func evaluate(label: String) throws {
        guard !dataset.query.images.isEmpty, !dataset.gallery.images.isEmpty else { return }
        let start = Date()
        let progress = ExtractionProgress(label: comm.size > 1 ? "eval features (rank 0 of \(comm.size))" : "eval features",
                                          enabled: comm.isRoot, write: { [log] in log.info($0) })
        let features: FeaturesFile?
        do {
            features = try extractFeatures(network: network, dataset: dataset, comm: comm,
                                           loaderThreads: s.loaderThreads, paths: false, flip: s.evalFlip,
                                           progress: progress.callback)
        } catch {
            // Every rank fails an extraction together; they ask together whether a signal was the cause.
            if try StopSignal.anyRankRequestedStop(comm) { throw EvaluationStopped() }
            throw error
        }
        progress.finish()
        guard let features else { return }  // ranks other than 0
        var options = EvalOptions(threads: s.threads, distance: DistanceMetric(rawValue: s.evalDistance) ?? .euclidean,
                                  normalize: s.evalNormalize)
        let r = try evaluateMarket(query: features.query, gallery: features.gallery, options: options)
        let step = Int(state.globalStep), epoch = step / sampler.batchesPerEpoch
        log.info(String(format: "eval (%@, step %d): rank-1 %.2f%%  rank-5 %.2f%%  mAP %.2f%%  mINP %.2f%%  (%d queries, %d gallery, %.1f s)",
                        label, step, 100 * (r.rank(1) ?? 0), 100 * (r.rank(5) ?? 0), 100 * r.mAP, 100 * r.mINP,
                        r.numValidQuery, r.numGallery, Date().timeIntervalSince(start)))
        var m = r.jsonObject()
        m["cmc"] = nil
        if s.evalRerank {  // reported beside the plain numbers; best.h5 still follows the plain mAP
            let rerankStart = Date()
            options.rerank = RerankParameters()
            let rr = try evaluateMarket(query: features.query, gallery: features.gallery, options: options)
            log.info(String(format: "eval (%@, step %d, re-ranked): rank-1 %.2f%%  rank-5 %.2f%%  mAP %.2f%%  mINP %.2f%%  (%.1f s)",
                            label, step, 100 * (rr.rank(1) ?? 0), 100 * (rr.rank(5) ?? 0), 100 * rr.mAP, 100 * rr.mINP,
                            Date().timeIntervalSince(rerankStart)))
            m["rerank_rank1"] = rr.rank(1) ?? 0; m["rerank_mAP"] = rr.mAP; m["rerank_mINP"] = rr.mINP
        }
        m["kind"] = "eval"; m["step"] = step; m["epoch"] = epoch; m["label"] = label
        log.metric(m)
        if step > 0 && r.mAP > bestMAP {
            bestMAP = r.mAP
            let best = runDir.appendingPathComponent("best.h5")
            let moments = AdamMoments(m: adam.m, v: adam.v, step: adam.step)
            // Like a checkpoint: temporary, fsync, verified, renamed; a failure keeps the previous best.h5.
            try HDF5File.replaceAtomically(best, write: {
                try Checkpoint.write(to: $0, parameters: network.parameters, buffers: network.buffers, adam: moments, state: state)
            }, verify: { _ = try Checkpoint.verify(URL(fileURLWithPath: $0)) })
            state.json = "{\"best_map\": \(r.mAP)}"  // carried by later checkpoints, read back on resume
            log.info(String(format: "best mAP so far (%.2f%%): %@", 100 * r.mAP, best.path))
        }
    }

    // MARK: - Pieces

    @discardableResult
    func saveCheckpoint() throws -> URL {
        let moments = AdamMoments(m: adam.m, v: adam.v, step: adam.step)
        let url: URL
        do {
            url = try Checkpoint.saveOnRoot(comm: comm, parameters: network.parameters, buffers: network.buffers,
                                            adam: moments, state: state, runDirectory: runDir, retention: retention)
        } catch {
            // saveOnRoot gives every rank rank 0's error (e.g. a full disk): one report, a clean exit everywhere.
            throw TrainingFailure("cannot save the checkpoint of step \(state.globalStep): \(error). "
                                  + "The checkpoints already written are intact; free space and rerun with --resume auto.")
        }
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
    /// number of negatives an anchor has where triplets are mined.
    func curriculumState(epoch: Int) -> (Double, Double) {
        let shardIds = s.idsPerBatch / ((s.tripletMining == "global" ? 1 : comm.size) * s.accumulate)
        let nn = Double((shardIds - 1) * s.imagesPerId)
        let t = Double(epoch)
        return (max(nn - nn / s.t0 * t, 0), s.curriculumA * pow(s.curriculumB, (t - s.t0) / (s.t1 - s.t0)))
    }

    /// The random stream of the triplet loss of one step: a function of (seed,
    /// step, shard) only, so sampling does not depend on where a run was resumed.
    /// With global mining `shard` is the micro-batch (every rank draws the same
    /// negatives over the same gathered batch, whatever the rank count); with
    /// local mining it is the shard's place in the global batch.
    static func stepRandom(seed: Int, step: Int, shard: Int) -> SplitMix64 {
        var h = UInt64(bitPattern: Int64(seed)) &* 0x9E37_79B9_7F4A_7C15
        h ^= UInt64(step) &* 0xBF58_476D_1CE4_E5B9
        h ^= UInt64(shard) &* 0x94D0_49BB_1331_11EB
        return SplitMix64(seed: h)
    }

    /// Resuming with another mining or BatchNorm setting would continue a run
    /// with another algorithm: refused unless --resume-force. A checkpoint
    /// from before these settings existed was trained with local ones.
    static func checkSameAlgorithm(checkpointConfig: String, path: String, _ s: TrainSettings, log: RunLog) throws {
        let object = (try? JSONSerialization.jsonObject(with: Data(checkpointConfig.utf8))) as? [String: Any]
        let train = object?["train"] as? [String: Any] ?? [:]
        var differences: [String] = []
        for (key, mine) in [("triplet-mining", s.tripletMining), ("batch-norm", s.batchNorm)] {
            let theirs = train[key] as? String ?? "local"
            if theirs != mine { differences.append("--\(key) \(theirs) (this run: \(mine))") }
        }
        guard !differences.isEmpty else { return }
        let what = "checkpoint \(path) was trained with \(differences.joined(separator: " and "))"
        if s.resumeForce {
            log.warning("\(what); continuing with this run's settings (--resume-force)")
        } else {
            throw SettingsError("\(what). Resume with the checkpoint's settings, or pass --resume-force to change them from here.")
        }
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
        // Only rank 0 reads the file; the agreement stops every rank if it could not.
        let report = try comm.agreeing { () throws -> String in
            guard comm.isRoot else { return "" }
            do {
                let url = URL(fileURLWithPath: path)
                if path.hasSuffix(".h5") {
                    try Checkpoint.loadWeights(url, parameters: network.parameters, buffers: network.buffers)
                    return "loaded all weights from a Mancs checkpoint"
                }
                return "\(try network.loadPretrained(safetensors: url))"
            } catch {
                throw SettingsError("--pretrained \(path): \(error)")
            }
        }
        return String(decoding: try comm.broadcast(data: Data(report.utf8)), as: UTF8.self)
    }
}

/// A failure every rank sees at the same step (e.g. a NaN loss after the allreduce).
/// An evaluation ended early by a stop signal, on every rank.
struct EvaluationStopped: Error {}

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

// The ranks as the replicas of synchronised BatchNorm and global triplet mining.
extension ShardGroup: BatchNormStatisticsReducer, ReplicaBatchGroup {}
