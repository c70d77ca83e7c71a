import ReIDData

extension TrainSettings {
    /// Checks what can be checked without the data or MPI. (A choice such as
    /// --triplet-mining was checked when it was parsed.)
    public func validate() throws {
        func bad(_ message: String) -> SettingsError { SettingsError(message) }
        if data.data.isEmpty { throw bad("--data is required: the dataset's root folder (try `mancs synth --out DIR` for a synthetic one)") }
        if data.idsPerBatch < 2 { throw bad("--ids-per-batch (P) must be at least 2: triplets need negatives") }
        if data.imagesPerId < 2 { throw bad("--images-per-id (K) must be at least 2: triplets need positives") }
        if optimiser.accumulate < 1 { throw bad("--accumulate must be at least 1") }
        if optimiser.epochs < 1 { throw bad("--epochs must be at least 1") }
        if let m = optimiser.maxSteps, m < 1 { throw bad("--max-steps must be at least 1") }
        if curriculum.t1 <= curriculum.t0 { throw bad("--t1 must be greater than --t0") }
        if optimiser.lr <= 0 { throw bad("--lr must be positive") }
        if optimiser.clipNorm <= 0 { throw bad("--clip-norm must be positive") }
        if run.threads < 0 { throw bad("--threads must be at least 1 (or 0 for this rank's share of the cores), got \(run.threads)") }
        if data.loaderThreads < 1 { throw bad("--loader-threads must be at least 1, got \(data.loaderThreads)") }
        if run.checkpointEvery < 1 || run.keepCheckpoints < 1 || run.logEvery < 1 {
            throw bad("--checkpoint-every, --keep-checkpoints and --log-every must be at least 1")
        }
        if run.evalEverySteps < 0 || run.checkpointEveryEpochs < 0 {
            throw bad("--eval-every-steps and --checkpoint-every-epochs must be at least 0 (0 = off)")
        }
        if let p = optimiser.learningRateSchedule.problem() { throw bad(p) }
        if !(optimiser.weightDecay >= 0) { throw bad("--weight-decay must be at least 0, got \(optimiser.weightDecay)") }
        if model.height < 32 || model.width < 16 {
            throw bad("--height and --width must be at least 32 and 16, got \(model.height)x\(model.width)")
        }
        try validateRanges()
    }

    /// Every numeric setting in its range (finite; positive where it must be),
    /// each refusal naming the flag: a NaN or a zero must not reach the loop.
    public func validateRanges() throws {
        func real(_ flag: String, _ x: Double, positive: Bool = false) throws {
            guard x.isFinite, positive ? x > 0 : x >= 0 else {
                throw SettingsError("--\(flag) must be a finite \(positive ? "positive" : "non-negative") number, got \(x)")
            }
        }
        func int(_ flag: String, _ x: Int, _ range: ClosedRange<Int>) throws {
            guard range.contains(x) else {
                throw SettingsError("--\(flag) must be between \(range.lowerBound) and \(range.upperBound), got \(x)")
            }
        }
        try real("lr", optimiser.lr, positive: true); try real("clip-norm", optimiser.clipNorm, positive: true)
        try real("margin", objective.margin); try real("gamma", objective.gamma)
        try real("lambda-rank", objective.lambdaRank); try real("lambda-cls", objective.lambdaCls); try real("lambda-att", objective.lambdaAtt)
        try real("t0", curriculum.t0); try real("t1", curriculum.t1); try real("curriculum-a", curriculum.curriculumA); try real("curriculum-b", curriculum.curriculumB)
        try int("seed", run.seed, 0...Int.max)
        try int("check-replicas-every", run.checkReplicasEvery, 1...Int.max)
        try int("eval-every", run.evalEvery, 0...1_000_000)
        try int("epochs", optimiser.epochs, 1...1_000_000)
        try int("ids-per-batch", data.idsPerBatch, 2...65_536); try int("images-per-id", data.imagesPerId, 2...65_536)
        try int("accumulate", optimiser.accumulate, 1...65_536)
        try int("threads", run.threads, 0...4096); try int("loader-threads", data.loaderThreads, 1...256)
        try int("height", model.height, 32...4096); try int("width", model.width, 16...4096)
        try int("base-width", model.baseWidth, 1...1024); try int("last-stride", model.lastStride, 1...2)
        guard model.blocks.count == 4, model.blocks.allSatisfy({ (1...64).contains($0) }) else {
            throw SettingsError("--blocks must be four counts between 1 and 64, got \(model.blocks)")
        }
    }

    /// What the world's size adds (collective set-up, before any data is read):
    /// the batch splits into whole identities over ranks x micro-batches, and
    /// triplets find a negative where they are mined.
    public func validate(ranks: Int) throws {
        let (p, a) = (data.idsPerBatch, optimiser.accumulate)
        let shards = shards(ranks: ranks)
        guard p % shards == 0 else {
            throw SettingsError("--ids-per-batch \(p) does not divide by \(ranks) ranks x --accumulate \(a) = \(shards): every shard trains on whole identities. Choose P as a multiple of \(shards).")
        }
        if objective.tripletMining == .local && p / shards < 2 {
            throw SettingsError("--triplet-mining local: --ids-per-batch \(p) over \(ranks) ranks x --accumulate \(a) leaves \(p / shards) identity per shard, so its anchors have no negative. Use --triplet-mining global (the default), fewer ranks or micro-batches, or P of at least \(2 * shards).")
        }
        if objective.tripletMining == .global && p / a < 2 {
            throw SettingsError("--ids-per-batch \(p) over --accumulate \(a) leaves \(p / a) identity per micro-batch, so its anchors have no negative. Use P of at least \(2 * a).")
        }
    }
}
