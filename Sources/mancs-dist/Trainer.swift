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
import MancsSettings

/// The training loop of one rank (docs/method.md §3, §6, §7): set-up, steps,
/// checkpoints, stopping. Every rank runs the same code; collective calls are
/// made in the same order on all of them.
final class Trainer {
    let settings: TrainSettings
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
    /// Steps, epoch, seed, settings and the best evaluation so far: what a checkpoint keeps besides tensors.
    var state: TrainingState
    /// See `TrainCommand.dumpGradients`.
    var dumpGradientsPath: String?

    /// Runs training; returns the process exit code. Errors are reported once
    /// (by rank 0 when every rank has the same one) and end every rank.
    static func run(settings given: TrainSettings, dumpGradients: String? = nil) -> Int32 {
        var settings = given
        if settings.run.threads == 0 { settings.run.threads = NodeShare.defaultComputeThreads }
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
        let affinity = NodeShare.affinityReport(rank: comm.rank, host: comm.hostname, threads: settings.run.threads)
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

    init(settings: TrainSettings, comm: Communicator, log: RunLog) throws {
        self.settings = settings
        self.comm = comm
        self.log = log
        let (data, model, objective, optimiser) = (settings.data, settings.model, settings.objective, settings.optimiser)
        runDir = URL(fileURLWithPath: settings.run.runDir)
        setComputeThreads(settings.run.threads)
        try settings.validate(ranks: comm.size)
        let shards = settings.shards(ranks: comm.size)

        // Data: every rank reads the listing; a node that cannot see --data, or
        // sees another listing, stops every rank (with its host in the message).
        let listing = try comm.agreeing { try loadDataset(name: data.dataset.rawValue, root: data.data) }
        try comm.agreeSame(digest: listing.listingDigest) {
            "\(data.data) lists \(listing.train.count) training, \(listing.query.count) query and \(listing.gallery.count) gallery images, not the same files as on rank 0"
        }
        dataset = listing
        for w in dataset.skipped.prefix(5) { log.info("skipped \(w.path): \(w.reason)") }
        if dataset.skipped.count > 5 { log.info("... and \(dataset.skipped.count - 5) more skipped files (see `mancs data`)") }
        guard dataset.trainClasses >= data.idsPerBatch else {
            throw SettingsError("\(data.data): \(dataset.trainClasses) training identities, fewer than --ids-per-batch \(data.idsPerBatch)")
        }
        sampler = try PKSampler(split: dataset.train, p: data.idsPerBatch, k: data.imagesPerId, seed: UInt64(settings.run.seed),
                                rank: comm.rank, worldSize: comm.size)
        let perEpoch = sampler.batchesPerEpoch
        totalSteps = min(optimiser.epochs * perEpoch, optimiser.maxSteps ?? Int.max)

        // Model: every rank builds it; rank 0's values are broadcast below.
        let config = model.mancsConfig(numClasses: dataset.trainClasses)
        try config.validate()
        let microBatch = data.idsPerBatch / shards * data.imagesPerId
        network = try MancsNetwork(config: config, maxBatch: microBatch, seed: UInt64(settings.run.seed),
                                   initialization: model.initialization)
        shardGroup = comm.size > 1 && (model.batchNorm == .sync || objective.tripletMining == .global) ? try ShardGroup(world: comm) : nil
        if model.batchNorm == .sync { network.batchNormReducer = shardGroup }
        trainStep = TrainStep(network: network, losses: objective.lossSettings)
        adam = Adam(count: network.parameters.count, lr: Float(optimiser.lr), weightDecay: Float(optimiser.weightDecay))
        schedule = optimiser.learningRateSchedule
        state = TrainingState(worldSize: Int64(comm.size), seed: UInt64(settings.run.seed),
                              config: try Trainer.checkpointConfig(settings, config))

        let minedTogether = objective.tripletMining == .global ? data.idsPerBatch / optimiser.accumulate : data.idsPerBatch / shards
        log.info("mancs-dist: \(comm.size) rank(s) x \(settings.run.threads) thread(s); \(dataset.name): \(dataset.train.identityCount) ids / \(dataset.train.count) training images; P=\(data.idsPerBatch) K=\(data.imagesPerId), \(microBatch) images per rank-step\(optimiser.accumulate > 1 ? " x \(optimiser.accumulate) micro-batches" : ""); \(perEpoch) steps per epoch, \(totalSteps) steps in all")
        log.info("model: \(model.architectureSummary), \(config.numClasses) classes, \(network.parameters.count) parameters, \(model.pretrained == nil ? "" : "layers not in --pretrained ")\(model.initialization.rawValue) init")
        log.info("triplet mining \(objective.tripletMining.rawValue), BatchNorm \(model.batchNorm.rawValue): \(minedTogether) identities mined together, BatchNorm statistics over \(model.batchNorm == .sync ? microBatch * comm.size : microBatch) images")
        try Trainer.logComputeKernels(comm: comm, log: log, threads: settings.run.threads)

        // Start: resume, or initialise (+ pretrained) on rank 0 and broadcast.
        if let url = try Trainer.resumePoint(settings.run.resume, runDir: runDir, comm: comm, log: log) {
            try Trainer.resume(from: url, settings: settings, comm: comm, log: log, network: network, adam: adam, state: &state)
        } else {
            if let path = model.pretrained {
                let report = try Trainer.loadPretrainedOnRoot(path, network: network, comm: comm)
                log.info("pretrained \(path): \(report)")
            }
            try Checkpoint.broadcastWeights(comm: comm, parameters: network.parameters, buffers: network.buffers)
        }
        retention = CheckpointRetention(keep: settings.run.keepCheckpoints, resumedFrom: state.globalStep)
        reducer = try GradientReducer(comm: comm, gradients: network.parameters.grads!)
    }

    /// The checkpoint `--resume` names (auto: the newest valid one of the run directory), nil for a fresh start.
    static func resumePoint(_ resume: ResumeChoice, runDir: URL, comm: Communicator, log: RunLog) throws -> URL? {
        switch resume {
        case .none: return nil
        case .path(let path): return URL(fileURLWithPath: path)
        case .auto:
            let (url, warnings) = try Checkpoint.latestValidCheckpoint(runDirectory: runDir, comm: comm)
            for w in warnings { log.warning(w) }
            return url
        }
    }

    /// Collective: checks the checkpoint's settings against this run's
    /// (before any tensor is read), then loads it on rank 0 and broadcasts it.
    static func resume(from url: URL, settings: TrainSettings, comm: Communicator, log: RunLog, network: MancsNetwork,
                       adam: Adam, state: inout TrainingState) throws {
        let stored = try Checkpoint.storedConfig(url, comm: comm)
        let forced = try ResumeContract.check(stored: stored, current: state.config, force: settings.run.resumeForce,
                                              checkpoint: url.path)
        for w in forced { log.warning(w) }
        let loaded = try Checkpoint.loadAndBroadcast(url, comm: comm, parameters: network.parameters, buffers: network.buffers,
                                                     adam: AdamMoments(m: adam.m, v: adam.v, step: 0))
        adam.step = loaded.adamStep
        state.globalStep = loaded.state.globalStep
        state.best = loaded.state.best
        if loaded.state.worldSize != Int64(comm.size) {
            log.info("checkpoint was written by \(loaded.state.worldSize) rank(s); continuing on \(comm.size) with the same global batches")
        }
        if loaded.state.seed != UInt64(settings.run.seed) {
            log.warning("checkpoint seed \(loaded.state.seed) differs from --seed \(settings.run.seed): the batch stream changes from here")
        }
        log.info("resumed from \(loaded.path) at step \(state.globalStep)")
    }

    // MARK: - The loop

    /// Steps until the end (or a stop signal): each takes a batch, runs forward
    /// and backward, averages the gradients over ranks, clips, updates, logs,
    /// and evaluates and checkpoints when due. Returns the exit code.
    func train() throws -> Int32 {
        if state.globalStep >= totalSteps {
            log.info("nothing to do: step \(state.globalStep) already reached the end (\(totalSteps) steps)")
            return 0
        }
        let perEpoch = sampler.batchesPerEpoch
        let loader = BatchLoader(split: dataset.train, sampler: sampler,
                                 settings: TransformSettings(height: settings.model.height, width: settings.model.width),
                                 startEpoch: Int(state.globalStep) / perEpoch, startBatch: Int(state.globalStep) % perEpoch,
                                 threads: settings.data.loaderThreads, warn: { [log] in log.warning($0) })
        defer { loader.stop() }
        var window = LogWindow(firstStep: Int(state.globalStep))
        var lastEvaluatedStep = -1
        // A stop signal during set-up: nothing new to save.
        if try StopSignal.anyRankRequestedStop(comm) {
            log.info("stop requested (SIGTERM/SIGUSR1) during set-up at step \(state.globalStep): exiting before training. Rerun with --resume auto to continue.")
            return 0
        }
        if (settings.run.evalEvery > 0 || settings.run.evalEverySteps > 0) && state.globalStep == 0 {
            guard try evaluateUnlessStopped(label: "untrained model") else { return 0 }  // the baseline the run must beat
            lastEvaluatedStep = 0
        }

        while Int(state.globalStep) < totalSteps {
            let step = Int(state.globalStep), epoch = step / perEpoch
            let batch = try loader.next()
            precondition(batch.epoch == epoch && batch.index == step % perEpoch, "loader out of step")
            let local = try forwardBackward(batch, step: step, epoch: epoch)
            try dumpGradientsOnce()
            let losses = try averageOverRanks(local)
            let norm = try clipGradients(losses, step: step)
            let lr = update(epoch: epoch)
            let done = advance(perEpoch: perEpoch)
            window.add(losses, images: settings.data.idsPerBatch * settings.data.imagesPerId)
            if done % settings.run.logEvery == 0 || done == totalSteps {
                logTrainingWindow(&window, done: done, epoch: epoch, lr: lr, gradientNorm: norm)
            }
            log.progress(step: done, total: totalSteps, text: String(format: "loss %.4f", losses.total))
            if done % settings.run.checkReplicasEvery == 0 {
                try ReplicaCheck.verify(UnsafeBufferPointer(network.parameters.values), name: "parameters", comm: comm)
            }
            if let label = evaluationDue(done: done, perEpoch: perEpoch) {
                guard try evaluateUnlessStopped(label: label) else { return 0 }
                lastEvaluatedStep = done
            }
            guard try checkpointIfDue(done: done, perEpoch: perEpoch) else { return 0 }
        }
        if lastEvaluatedStep != Int(state.globalStep) { guard try evaluateUnlessStopped(label: "final") else { return 0 } }
        let checksum = ReplicaCheck.checksum(UnsafeBufferPointer(network.parameters.values))
        try ReplicaCheck.verify(UnsafeBufferPointer(network.parameters.values), name: "parameters", comm: comm)
        log.info("replicas identical on \(comm.size) rank(s): parameter checksum \(String(checksum, radix: 16))")
        log.info("training finished at step \(state.globalStep); checkpoints in \(runDir.appendingPathComponent("checkpoints").path)")
        return 0
    }

    // MARK: - The phases of a step

    /// Forward and backward over this rank's micro-batches (shard `rank * A + m`
    /// of the global batch), accumulating gradients; the last micro-batch's
    /// backward hands finished gradient ranges to the allreduce as they become
    /// ready. Returns this rank's losses summed over its micro-batches; the
    /// gradients are averaged over ranks and micro-batches when it returns.
    func forwardBackward(_ batch: LoadedBatch, step: Int, epoch: Int) throws -> StepLosses {
        let accumulate = settings.optimiser.accumulate
        let micro = batch.count / accumulate
        let imageSize = settings.model.height * settings.model.width * 3
        let global = settings.objective.tripletMining == .global
        var sum = StepLosses()
        var reduceError: Error? = nil
        for m in 0..<accumulate {
            let last = m == accumulate - 1
            // Global mining: every rank draws the same negatives for micro-batch m.
            var rng = Trainer.stepRandom(seed: settings.run.seed, step: step, shard: global ? m : comm.rank * accumulate + m)
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
            sum.add(result)
        }
        try reducer.finish()
        if let e = reduceError { throw e }
        let grads = network.parameters.grads!
        if accumulate > 1 { scale(count: grads.count, grads.baseAddress!, by: 1 / Float(accumulate)) }
        return sum
    }

    /// `--dump-gradients`: rank 0 writes the first step's averaged gradient (before clipping).
    func dumpGradientsOnce() throws {
        guard let path = dumpGradientsPath, comm.isRoot else { return }
        let file = try HDF5File(creating: path)
        try network.parameters.write(to: file.root.createGroup("grads"), gradient: true)
        file.close()
        dumpGradientsPath = nil
    }

    /// Collective: the losses averaged over every shard (for the log and the NaN check).
    func averageOverRanks(_ local: StepLosses) throws -> StepLosses {
        var values = local.values
        try comm.allreduceSum(&values)
        return StepLosses(values).divided(by: Double(comm.size * settings.optimiser.accumulate))
    }

    /// Clips the gradient to --clip-norm; a non-finite loss or gradient (the
    /// same on every rank) stops the run before it touches the parameters.
    func clipGradients(_ losses: StepLosses, step: Int) throws -> Float {
        let norm = clipGradientNorm(network.parameters.grads!, maxNorm: Float(settings.optimiser.clipNorm))
        guard losses.isFinite, norm.isFinite else {
            throw TrainingFailure("step \(step + 1): non-finite \(losses.isFinite ? "gradient" : "loss") (losses rank \(losses.rank), cls \(losses.cls), att \(losses.att); gradient norm \(norm)). Stopped without writing a checkpoint of this state; resume from the last checkpoint with a lower --lr or --clip-norm.")
        }
        return norm
    }

    /// Adam at this epoch's learning rate; returns the rate.
    func update(epoch: Int) -> Double {
        let lr = schedule.lr(epoch: epoch)
        adam.lr = Float(lr)
        adam.update(parameters: network.parameters.values, gradients: UnsafeBufferPointer(network.parameters.grads!))
        return lr
    }

    /// Counts the step taken; returns the global steps done.
    func advance(perEpoch: Int) -> Int {
        state.globalStep += 1
        let done = Int(state.globalStep)
        state.epoch = Int64(done / perEpoch)
        state.batchInEpoch = Int64(done % perEpoch)
        return done
    }

    /// One log line and one metrics.jsonl object with the means over the steps since the last.
    func logTrainingWindow(_ window: inout LogWindow, done: Int, epoch: Int, lr: Double, gradientNorm: Float) {
        let rate = Double(window.images) / max(Date().timeIntervalSince(window.start), 1e-9)
        let perStep = Date().timeIntervalSince(window.runStart) / Double(done - window.firstStep)
        let eta = perStep * Double(totalSteps - done)
        let mean = window.sum.divided(by: Double(window.steps))
        let (mu, sigma) = curriculumState(epoch: epoch)
        log.info(String(format: "epoch %d step %d/%d  loss %.4f (rank %.4f cls %.4f att %.4f)  lr %.2e  mu %.1f sigma %.3g  %.1f imgs/s  ETA %@",
                        epoch + 1, done, totalSteps, mean.total, mean.rank, mean.cls, mean.att, lr, mu, sigma, rate, formatDuration(eta)))
        log.metric(["kind": "train", "step": done, "epoch": epoch, "loss": mean.total, "loss_rank": mean.rank,
                    "loss_cls": mean.cls, "loss_att": mean.att, "lr": lr, "grad_norm": Double(gradientNorm),
                    "curriculum_mu": mu, "curriculum_sigma": sigma, "imgs_per_s": rate, "eta_s": eta])
        window.restart()
    }

    /// The label of the evaluation due after `done` steps (--eval-every epochs or
    /// --eval-every-steps), nil when none is; the final one comes after the loop.
    func evaluationDue(done: Int, perEpoch: Int) -> String? {
        let endOfEpoch = done % perEpoch == 0
        let epochEval = settings.run.evalEvery > 0 && endOfEpoch && (done / perEpoch) % settings.run.evalEvery == 0
        let stepEval = settings.run.evalEverySteps > 0 && done % settings.run.evalEverySteps == 0
        guard (epochEval || stepEval) && done < totalSteps else { return nil }
        return endOfEpoch ? "epoch \(done / perEpoch)" : "step \(done)"
    }

    /// Collective: writes a checkpoint when one is due (--checkpoint-every,
    /// --checkpoint-every-epochs, the last step) or a rank was asked to stop.
    /// Returns false when the run stops here.
    func checkpointIfDue(done: Int, perEpoch: Int) throws -> Bool {
        let stopping = try StopSignal.anyRankRequestedStop(comm)
        let endOfEpoch = done % perEpoch == 0
        let epochCheckpoint = settings.run.checkpointEveryEpochs > 0 && endOfEpoch
            && (done / perEpoch) % settings.run.checkpointEveryEpochs == 0
        guard stopping || done % settings.run.checkpointEvery == 0 || epochCheckpoint || done == totalSteps else { return true }
        let url = try saveCheckpoint()
        guard !stopping else {
            log.info("stop requested (SIGTERM/SIGUSR1): checkpoint \(url.lastPathComponent) written at step \(done); exiting. Rerun with --resume auto to continue.")
            return false
        }
        return true
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
        let eval = settings.evaluation
        let progress = ExtractionProgress(label: comm.size > 1 ? "eval features (rank 0 of \(comm.size))" : "eval features",
                                          enabled: comm.isRoot, write: { [log] in log.info($0) })
        let features: FeaturesFile?
        do {
            features = try extractFeatures(network: network, dataset: dataset, comm: comm,
                                           loaderThreads: settings.data.loaderThreads, paths: false, flip: eval.evalFlip,
                                           progress: progress.callback)
        } catch {
            // Every rank fails an extraction together; they ask together whether a signal was the cause.
            if try StopSignal.anyRankRequestedStop(comm) { throw EvaluationStopped() }
            throw error
        }
        progress.finish()
        guard let features else { return }  // ranks other than 0
        var options = EvalOptions(threads: settings.run.threads, distance: eval.evalDistance, normalize: eval.evalNormalize)
        let result = try evaluateMarket(query: features.query, gallery: features.gallery, options: options)
        let step = Int(state.globalStep), epoch = step / sampler.batchesPerEpoch
        log.info(String(format: "eval (%@, step %d): rank-1 %.2f%%  rank-5 %.2f%%  mAP %.2f%%  mINP %.2f%%  (%d queries, %d gallery, %.1f s)",
                        label, step, 100 * (result.rank(1) ?? 0), 100 * (result.rank(5) ?? 0), 100 * result.mAP, 100 * result.mINP,
                        result.numValidQuery, result.numGallery, Date().timeIntervalSince(start)))
        var metric = result.jsonObject()
        metric["cmc"] = nil
        if eval.evalRerank {  // reported beside the plain numbers; best.h5 still follows the plain mAP
            let rerankStart = Date()
            options.rerank = RerankParameters()
            let reranked = try evaluateMarket(query: features.query, gallery: features.gallery, options: options)
            log.info(String(format: "eval (%@, step %d, re-ranked): rank-1 %.2f%%  rank-5 %.2f%%  mAP %.2f%%  mINP %.2f%%  (%.1f s)",
                            label, step, 100 * (reranked.rank(1) ?? 0), 100 * (reranked.rank(5) ?? 0), 100 * reranked.mAP,
                            100 * reranked.mINP, Date().timeIntervalSince(rerankStart)))
            metric["rerank_rank1"] = reranked.rank(1) ?? 0; metric["rerank_mAP"] = reranked.mAP; metric["rerank_mINP"] = reranked.mINP
        }
        metric["kind"] = "eval"; metric["step"] = step; metric["epoch"] = epoch; metric["label"] = label
        log.metric(metric)
        if step > 0 && result.mAP > (state.best?.mAP ?? -1) { try saveBest(mAP: result.mAP) }
    }

    /// Rank 0: RUN_DIR/best.h5 through the checkpoint writer (a failure keeps
    /// the previous one); later checkpoints carry the best mAP for a resumed run.
    func saveBest(mAP: Double) throws {
        state.best = BestEvaluation(mAP: mAP, step: state.globalStep)
        let best = runDir.appendingPathComponent("best.h5")
        try Checkpoint.save(to: best, parameters: network.parameters, buffers: network.buffers,
                            adam: AdamMoments(m: adam.m, v: adam.v, step: adam.step), state: state)
        log.info(String(format: "best mAP so far (%.2f%%): %@", 100 * mAP, best.path))
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
        switch settings.objective.negatives {
        case .hardest: return .hardest
        case .random: return .random
        case .curriculum: return .curriculum(settings.curriculum.schedule, epoch: epoch)
        }
    }

    /// mu and sigma of the curriculum at an epoch (for the log), for the
    /// number of negatives an anchor has where triplets are mined.
    func curriculumState(epoch: Int) -> (mu: Double, sigma: Double) {
        let (data, accumulate) = (settings.data, settings.optimiser.accumulate)
        let shardIds = data.idsPerBatch / ((settings.objective.tripletMining == .global ? 1 : comm.size) * accumulate)
        return settings.curriculum.schedule.muSigma(negatives: (shardIds - 1) * data.imagesPerId, epoch: epoch)
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

    /// The checkpoint's `config` attribute: `{"model": MancsConfig, "train": TrainSettings}`, keys sorted.
    static func checkpointConfig(_ settings: TrainSettings, _ model: MancsConfig) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let modelJSON = try JSONSerialization.jsonObject(with: encoder.encode(model))
        let trainJSON = try JSONSerialization.jsonObject(with: encoder.encode(settings))
        let data = try JSONSerialization.data(withJSONObject: ["model": modelJSON, "train": trainJSON], options: [.sortedKeys])
        return String(decoding: data, as: UTF8.self)
    }

    /// Collective: rank 0 reads the pretrained file (the weights reach the
    /// other ranks with the broadcast that follows); every rank gets its report or its error.
    static func loadPretrainedOnRoot(_ path: String, network: MancsNetwork, comm: Communicator) throws -> String {
        let report = try comm.onRootThenShare {
            do {
                let url = URL(fileURLWithPath: path)
                if path.hasSuffix(".h5") {
                    try FileProbe.check(path, kind: "checkpoint")  // libhdf5 may crash on a crafted file
                    try Checkpoint.loadWeights(url, parameters: network.parameters, buffers: network.buffers)
                    return Data("loaded all weights from a Mancs checkpoint".utf8)
                }
                return Data("\(try network.loadPretrained(safetensors: url))".utf8)
            } catch {
                throw SettingsError("--pretrained \(path): \(error)")
            }
        }
        return String(decoding: report, as: UTF8.self)
    }
}

/// The losses of a step (unweighted rank, cls, att and the weighted total),
/// summed or averaged over shards.
struct StepLosses {
    var rank = 0.0, cls = 0.0, att = 0.0, total = 0.0

    init() {}
    /// From `values`' order.
    init(_ values: [Double]) { (rank, cls, att, total) = (values[0], values[1], values[2], values[3]) }
    /// For an allreduce: [rank, cls, att, total].
    var values: [Double] { [rank, cls, att, total] }

    mutating func add(_ step: LossBreakdown) {
        rank += Double(step.rank); cls += Double(step.cls); att += Double(step.att); total += Double(step.total)
    }
    mutating func add(_ other: StepLosses) {
        rank += other.rank; cls += other.cls; att += other.att; total += other.total
    }
    func divided(by n: Double) -> StepLosses { StepLosses([rank / n, cls / n, att / n, total / n]) }
    var isFinite: Bool { rank.isFinite && cls.isFinite && att.isFinite && total.isFinite }
}

/// What the next training log line averages: the steps and images since the last one.
struct LogWindow {
    let firstStep: Int
    let runStart = Date()
    var start = Date()
    var steps = 0, images = 0
    var sum = StepLosses()

    init(firstStep: Int) { self.firstStep = firstStep }
    mutating func add(_ losses: StepLosses, images count: Int) { steps += 1; images += count; sum.add(losses) }
    mutating func restart() { (steps, images, sum, start) = (0, 0, StepLosses(), Date()) }
}

/// A failure every rank sees at the same step (e.g. a NaN loss after the allreduce).
/// An evaluation ended early by a stop signal, on every rank.
struct EvaluationStopped: Error {}

struct TrainingFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// A failure of one rank only (e.g. rank 0 cannot write a file): reported by that
/// rank, and the job is aborted so the others do not wait in a collective.
struct RankFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

// The ranks as the replicas of synchronised BatchNorm and global triplet mining.
extension ShardGroup: BatchNormStatisticsReducer, ReplicaBatchGroup {}
