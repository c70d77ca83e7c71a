import ArgumentParser
import Foundation
import MancsModel
import MancsSettings
import MancsTraining
import ReIDData
import ReIDEval
import Testing
import Yams

/// A valid base: only --data is required.
func valid() -> TrainSettings {
    var settings = TrainSettings()
    settings.data.data = "/data/market"
    return settings
}

/// The message `validate` throws for settings changed by `change`.
func refusal(_ change: (inout TrainSettings) -> Void) -> String? {
    var settings = valid()
    change(&settings)
    do { try settings.validate(); return nil } catch { return "\(error)" }
}

/// Settings from mancs-dist's flags over the defaults.
func fromFlags(_ arguments: [String]) throws -> TrainSettings {
    var settings = TrainSettings()
    try TrainFlags.parse(arguments).apply(to: &settings)
    return settings
}

@Suite struct SettingsDefaultsTests {
    @Test func defaultsAreThePapersSetting() throws {
        let s = TrainSettings()
        #expect(s.data.dataset == .market1501 && s.data.idsPerBatch == 16 && s.data.imagesPerId == 4)
        #expect(s.model.height == 256 && s.model.width == 128 && s.model.baseWidth == 64 && s.model.blocks == [3, 4, 6, 3])
        #expect(s.model.lastStride == 2 && s.model.attentionStages == [2, 3, 4] && s.model.pretrained == nil)
        #expect(s.model.initialization == .pytorch && s.model.batchNorm == .sync)
        #expect(s.objective.margin == 0.5 && s.objective.gamma == 2 && s.objective.lambdaAtt == 0.2)
        #expect(s.objective.negatives == .curriculum && s.objective.tripletMining == .global)
        #expect(s.curriculum.schedule == CurriculumSchedule())
        #expect(s.optimiser.lr == 3e-4 && s.optimiser.clipNorm == 5 && s.optimiser.epochs == 160 && s.optimiser.maxSteps == nil)
        #expect(s.optimiser.lrSchedule == .constant && s.optimiser.weightDecay == 0)
        #expect(s.run.resume == .auto && !s.run.resumeForce && s.run.checkpointEvery == 500 && s.run.runDir == "runs/mancs")
        #expect(s.evaluation.evalDistance == .euclidean && !s.evaluation.evalRerank)
    }

    @Test func conversionsCarryEveryValue() {
        var s = TrainSettings()
        s.model.baseWidth = 8; s.model.blocks = [1, 1, 2, 1]; s.model.lastStride = 1; s.model.attentionStages = [3]
        s.model.height = 64; s.model.width = 32
        let config = s.model.mancsConfig(numClasses: 12)
        #expect(config.baseWidth == 8 && config.blocks == [1, 1, 2, 1] && config.lastStride == 1)
        #expect(config.attentionStages == [3] && config.height == 64 && config.width == 32 && config.numClasses == 12)
        s.objective.margin = 0.3; s.objective.lambdaCls = 0.7
        #expect(s.objective.lossSettings == LossSettings(margin: 0.3, gamma: 2, lambdaRank: 1, lambdaCls: 0.7, lambdaAtt: 0.2))
        s.curriculum.t0 = 5; s.curriculum.curriculumB = 0.01
        #expect(s.curriculum.schedule == CurriculumSchedule(t0: 5, t1: 60, a: 15, b: 0.01))
        s.optimiser.lrSchedule = .step; s.optimiser.lrMilestones = [2, 4]; s.optimiser.lr = 0.1
        #expect(s.optimiser.learningRateSchedule.lr(epoch: 3) == 0.1 * 0.1)
    }

    @Test func everyKeyIsAFlagName() {
        #expect(Set(TrainSettings.keys).count == TrainSettings.keys.count)
        #expect(TrainSettings.keys.contains("ids-per-batch") && TrainSettings.keys.contains("init"))
        #expect(TrainSettings.keys.allSatisfy { $0 == $0.lowercased() && !$0.contains("_") })
    }
}

@Suite struct SettingsYAMLTests {
    @Test func roundTripThroughYAMLAndJSON() throws {
        var s = valid()
        s.data.dataset = DatasetName.allCases.last!
        s.model.pretrained = "/w/resnet50.safetensors"; s.model.initialization = .torchvision; s.model.batchNorm = .local
        s.objective.tripletMining = .local; s.objective.negatives = .random; s.objective.lambdaAtt = 0.123456789
        s.optimiser.maxSteps = 30; s.optimiser.lrSchedule = .cosine; s.optimiser.lrMilestones = [3, 7]
        s.run.resume = .path("/runs/x/checkpoints/step-00000010.h5"); s.run.resumeForce = true
        s.evaluation.evalDistance = .cosine; s.evaluation.evalRerank = true
        let yaml = try s.yaml()
        #expect(try TrainSettings(yaml: yaml, path: "x.yaml") == s)
        let json = try JSONEncoder().encode(s)
        #expect(try JSONDecoder().decode(TrainSettings.self, from: json) == s)
        // One flat object, keys as the flags.
        let object = try JSONSerialization.jsonObject(with: json) as! [String: Any]
        #expect(object["triplet-mining"] as? String == "local" && object["resume"] as? String == "/runs/x/checkpoints/step-00000010.h5")
        #expect(object["max-steps"] as? Int == 30 && object["init"] as? String == "torchvision")
        #expect(Set(object.keys).isSubset(of: Set(TrainSettings.keys)))
        // The config file written for a run reads back as the same settings.
        #expect(try TrainSettings(yaml: try s.configFileText(), path: "config.yaml") == s)
    }

    @Test func absentOptionalsAreLeftOut() throws {
        let yaml = try TrainSettings().yaml()
        #expect(!yaml.contains("max-steps") && !yaml.contains("pretrained"))
        #expect(yaml.contains("lr-schedule: constant\n") && yaml.contains("resume: auto\n") && yaml.contains("ids-per-batch: 16\n"))
    }

    @Test func aPartialFileKeepsTheDefaults() throws {
        let s = try TrainSettings(yaml: "data: /d\nids-per-batch: 8\nbatch-norm: local\nresume: none\n", path: "p.yaml")
        var expected = TrainSettings()
        expected.data.data = "/d"; expected.data.idsPerBatch = 8; expected.model.batchNorm = .local; expected.run.resume = .none
        #expect(s == expected)
    }

    @Test func fileErrorsNameTheFile() throws {
        func message(_ yaml: String) -> String {
            do { _ = try TrainSettings(yaml: yaml, path: "c.yaml"); return "" } catch { return "\(error)" }
        }
        #expect(message("ids_per_batch: 8\n") == "--config c.yaml: unknown setting 'ids_per_batch' (settings are the flag names, e.g. ids-per-batch)")
        #expect(message("triplet-mining: everywhere\n") == "--config c.yaml: --triplet-mining must be global or local, got 'everywhere'")
        #expect(message("dataset: mars\n").hasPrefix("--config c.yaml: --dataset must be one of \(DatasetName.allCases.map(\.rawValue).joined(separator: ", ")), got 'mars'"))
        #expect(message("epochs: many\n").hasPrefix("--config c.yaml: not valid settings YAML ("))
        #expect(message("- a list\n").hasPrefix("--config c.yaml: not valid settings YAML ("))
        let missing = "/nonexistent/\(UUID().uuidString).yaml"
        #expect(throws: SettingsError("--config \(missing): cannot read the file")) { try TrainSettings(contentsOfConfig: missing) }
    }
}

@Suite struct SettingsFlagTests {
    @Test func flagsOverrideTheirSettings() throws {
        let s = try fromFlags(["--data", "/d", "--dataset", "dukemtmc", "--run-dir", "/r", "--epochs", "3", "--max-steps", "30",
                               "--ids-per-batch", "8", "--images-per-id", "2", "--accumulate", "2", "--triplet-mining", "local",
                               "--batch-norm", "local", "--height", "64", "--width", "32", "--base-width", "4", "--blocks", "1,1,1,1",
                               "--last-stride", "1", "--attention-stages", "3,4", "--pretrained", "p.h5", "--init", "torchvision",
                               "--lr", "0.01", "--clip-norm", "2", "--margin", "0.3", "--gamma", "1", "--lambda-rank", "0.5",
                               "--lambda-cls", "0.25", "--lambda-att", "0", "--negatives", "hardest", "--t0", "1", "--t1", "2",
                               "--curriculum-a", "3", "--curriculum-b", "0.5", "--seed", "7", "--threads", "1", "--loader-threads", "1",
                               "--checkpoint-every", "5", "--keep-checkpoints", "2", "--resume", "none", "--resume-force",
                               "--eval-every", "1", "--eval-every-steps", "4", "--checkpoint-every-epochs", "1", "--log-every", "1",
                               "--check-replicas-every", "3", "--lr-schedule", "step", "--lr-milestones", "1,2", "--lr-gamma", "0.5",
                               "--warmup-epochs", "1", "--warmup-factor", "0.5", "--weight-decay", "0.001",
                               "--eval-flip", "--eval-distance", "cosine", "--eval-normalize", "--eval-rerank"])
        #expect(s.data.data == "/d" && s.data.dataset == .dukemtmc && s.run.runDir == "/r")
        #expect(s.optimiser.epochs == 3 && s.optimiser.maxSteps == 30 && s.optimiser.accumulate == 2)
        #expect(s.data.idsPerBatch == 8 && s.data.imagesPerId == 2 && s.data.loaderThreads == 1)
        #expect(s.objective.tripletMining == .local && s.model.batchNorm == .local)
        #expect(s.model.height == 64 && s.model.width == 32 && s.model.baseWidth == 4 && s.model.blocks == [1, 1, 1, 1])
        #expect(s.model.lastStride == 1 && s.model.attentionStages == [3, 4] && s.model.pretrained == "p.h5")
        #expect(s.model.initialization == .torchvision)
        #expect(s.optimiser.lr == 0.01 && s.optimiser.clipNorm == 2)
        #expect(s.objective.margin == 0.3 && s.objective.gamma == 1 && s.objective.lambdaRank == 0.5)
        #expect(s.objective.lambdaCls == 0.25 && s.objective.lambdaAtt == 0 && s.objective.negatives == .hardest)
        #expect(s.curriculum == { var c = CurriculumSettings(); c.t0 = 1; c.t1 = 2; c.curriculumA = 3; c.curriculumB = 0.5; return c }())
        #expect(s.run.seed == 7 && s.run.threads == 1 && s.run.checkpointEvery == 5 && s.run.keepCheckpoints == 2)
        #expect(s.run.resume == .none && s.run.resumeForce && s.run.evalEvery == 1 && s.run.evalEverySteps == 4)
        #expect(s.run.checkpointEveryEpochs == 1 && s.run.logEvery == 1 && s.run.checkReplicasEvery == 3)
        #expect(s.optimiser.lrSchedule == .step && s.optimiser.lrMilestones == [1, 2] && s.optimiser.lrGamma == 0.5)
        #expect(s.optimiser.warmupEpochs == 1 && s.optimiser.warmupFactor == 0.5 && s.optimiser.weightDecay == 0.001)
        #expect(s.evaluation == { var e = EvaluationSettings(); e.evalFlip = true; e.evalDistance = .cosine; e.evalNormalize = true; e.evalRerank = true; return e }())
    }

    @Test func absentFlagsKeepTheConfigFilesValues() throws {
        var s = try TrainSettings(yaml: "lr: 0.5\nbatch-norm: local\neval-rerank: true\nresume-force: true\n", path: "c.yaml")
        try TrainFlags.parse(["--epochs", "2"]).apply(to: &s)
        #expect(s.optimiser.lr == 0.5 && s.model.batchNorm == .local && s.evaluation.evalRerank && s.run.resumeForce)
        #expect(s.optimiser.epochs == 2)
    }

    @Test func resumeTakesAPath() throws {
        #expect(try fromFlags(["--resume", "auto"]).run.resume == .auto)
        #expect(try fromFlags(["--resume", "runs/a/best.h5"]).run.resume == .path("runs/a/best.h5"))
    }

    @Test func badChoicesAreOneSettingsError() throws {
        func message(_ arguments: [String]) -> String {
            do { _ = try fromFlags(arguments); return "" } catch { return "\(error)" }
        }
        #expect(message(["--triplet-mining", "all"]) == "--triplet-mining must be global or local, got 'all'")
        #expect(message(["--batch-norm", "ghost"]) == "--batch-norm must be sync or local, got 'ghost'")
        #expect(message(["--negatives", "easy"]) == "--negatives must be curriculum, hardest or random, got 'easy'")
        #expect(message(["--init", "xavier"]) == "--init must be pytorch or torchvision, got 'xavier'")
        #expect(message(["--lr-schedule", "linear"]) == "--lr-schedule must be constant, step or cosine, got 'linear'")
        #expect(message(["--eval-distance", "l1"]) == "--eval-distance must be euclidean or cosine, got 'l1'")
        let names = DatasetName.allCases.map(\.rawValue)
        #expect(message(["--dataset", "mars"]) == "--dataset must be one of \(names.joined(separator: ", ")), got 'mars'")
        for name in names { #expect(try fromFlags(["--dataset", name]).data.dataset.rawValue == name) }
    }

    @Test func helpListsTheRegistrysDatasets() {
        // Help wraps its lines: compare with the white space folded.
        let help = TrainFlags.helpMessage(columns: 200).split(whereSeparator: \.isWhitespace).joined(separator: " ")
        #expect(help.contains(DatasetName.allCases.map(\.rawValue).joined(separator: " | ")))
        #expect(help.contains("constant | step | cosine"))
    }
}

@Suite struct SettingsValidationTests {
    @Test func theDefaultsWithDataAreValid() throws {
        try valid().validate()
    }

    @Test func everyCheckSaysWhatAndWhere() {
        #expect(refusal { $0.data.data = "" } == "--data is required: the dataset's root folder (try `mancs synth --out DIR` for a synthetic one)")
        #expect(refusal { $0.data.idsPerBatch = 1 } == "--ids-per-batch (P) must be at least 2: triplets need negatives")
        #expect(refusal { $0.data.imagesPerId = 1 } == "--images-per-id (K) must be at least 2: triplets need positives")
        #expect(refusal { $0.optimiser.accumulate = 0 } == "--accumulate must be at least 1")
        #expect(refusal { $0.optimiser.epochs = 0 } == "--epochs must be at least 1")
        #expect(refusal { $0.optimiser.maxSteps = 0 } == "--max-steps must be at least 1")
        #expect(refusal { $0.curriculum.t1 = 30 } == "--t1 must be greater than --t0")
        #expect(refusal { $0.optimiser.lr = 0 } == "--lr must be positive")
        #expect(refusal { $0.optimiser.clipNorm = -1 } == "--clip-norm must be positive")
        #expect(refusal { $0.run.threads = -1 } == "--threads must be at least 1 (or 0 for this rank's share of the cores), got -1")
        #expect(refusal { $0.data.loaderThreads = 0 } == "--loader-threads must be at least 1, got 0")
        for change: (inout TrainSettings) -> Void in [{ $0.run.checkpointEvery = 0 }, { $0.run.keepCheckpoints = 0 }, { $0.run.logEvery = 0 }] {
            #expect(refusal(change) == "--checkpoint-every, --keep-checkpoints and --log-every must be at least 1")
        }
        for change: (inout TrainSettings) -> Void in [{ $0.run.evalEverySteps = -1 }, { $0.run.checkpointEveryEpochs = -1 }] {
            #expect(refusal(change) == "--eval-every-steps and --checkpoint-every-epochs must be at least 0 (0 = off)")
        }
        #expect(refusal { $0.optimiser.warmupEpochs = -1 } == "--warmup-epochs must be at least 0, got -1")
        #expect(refusal { $0.optimiser.warmupFactor = 0 } == "--warmup-factor must be in (0, 1], got 0.0")
        #expect(refusal { $0.optimiser.lrGamma = 0 } == "--lr-gamma must be positive, got 0.0")
        #expect(refusal { $0.optimiser.lrSchedule = .step } == "--lr-schedule step needs --lr-milestones (epochs, e.g. 40,70)")
        #expect(refusal { $0.optimiser.lrSchedule = .step; $0.optimiser.lrMilestones = [5, 3] }
                == "--lr-milestones must be increasing epochs of at least 1, got 5,3")
        #expect(refusal { $0.optimiser.weightDecay = -1 } == "--weight-decay must be at least 0, got -1.0")
        #expect(refusal { $0.optimiser.weightDecay = .nan } == "--weight-decay must be at least 0, got nan")
        #expect(refusal { $0.model.height = 31 } == "--height and --width must be at least 32 and 16, got 31x128")
        #expect(refusal { $0.model.width = 15 } == "--height and --width must be at least 32 and 16, got 256x15")
    }

    @Test func everyNumberInItsRange() {
        #expect(refusal { $0.optimiser.lr = .nan } == "--lr must be a finite positive number, got nan")
        #expect(refusal { $0.optimiser.clipNorm = .infinity } == "--clip-norm must be a finite positive number, got inf")
        #expect(refusal { $0.objective.margin = -0.5 } == "--margin must be a finite non-negative number, got -0.5")
        #expect(refusal { $0.objective.gamma = .nan } == "--gamma must be a finite non-negative number, got nan")
        #expect(refusal { $0.objective.lambdaRank = -1 } == "--lambda-rank must be a finite non-negative number, got -1.0")
        #expect(refusal { $0.objective.lambdaCls = -1 } == "--lambda-cls must be a finite non-negative number, got -1.0")
        #expect(refusal { $0.objective.lambdaAtt = .infinity } == "--lambda-att must be a finite non-negative number, got inf")
        #expect(refusal { $0.curriculum.t0 = -1 } == "--t0 must be a finite non-negative number, got -1.0")
        #expect(refusal { $0.curriculum.t1 = .infinity } == "--t1 must be a finite non-negative number, got inf")
        #expect(refusal { $0.curriculum.curriculumA = -1 } == "--curriculum-a must be a finite non-negative number, got -1.0")
        #expect(refusal { $0.curriculum.curriculumB = .nan } == "--curriculum-b must be a finite non-negative number, got nan")
        #expect(refusal { $0.run.seed = -1 } == "--seed must be between 0 and \(Int.max), got -1")
        #expect(refusal { $0.run.checkReplicasEvery = 0 } == "--check-replicas-every must be between 1 and \(Int.max), got 0")
        #expect(refusal { $0.run.evalEvery = -1 } == "--eval-every must be between 0 and 1000000, got -1")
        #expect(refusal { $0.optimiser.epochs = 1_000_001 } == "--epochs must be between 1 and 1000000, got 1000001")
        #expect(refusal { $0.data.idsPerBatch = 65_537 } == "--ids-per-batch must be between 2 and 65536, got 65537")
        #expect(refusal { $0.data.imagesPerId = 65_537 } == "--images-per-id must be between 2 and 65536, got 65537")
        #expect(refusal { $0.optimiser.accumulate = 65_537 } == "--accumulate must be between 1 and 65536, got 65537")
        #expect(refusal { $0.run.threads = 5000 } == "--threads must be between 0 and 4096, got 5000")
        #expect(refusal { $0.data.loaderThreads = 257 } == "--loader-threads must be between 1 and 256, got 257")
        #expect(refusal { $0.model.height = 5000 } == "--height must be between 32 and 4096, got 5000")
        #expect(refusal { $0.model.width = 5000 } == "--width must be between 16 and 4096, got 5000")
        #expect(refusal { $0.model.baseWidth = 0 } == "--base-width must be between 1 and 1024, got 0")
        #expect(refusal { $0.model.lastStride = 3 } == "--last-stride must be between 1 and 2, got 3")
        #expect(refusal { $0.model.blocks = [3, 4, 6] } == "--blocks must be four counts between 1 and 64, got [3, 4, 6]")
        #expect(refusal { $0.model.blocks = [3, 4, 65, 3] } == "--blocks must be four counts between 1 and 64, got [3, 4, 65, 3]")
    }

    @Test func theWorldSizeChecks() throws {
        var s = valid()
        s.data.idsPerBatch = 3
        #expect(throws: SettingsError("--ids-per-batch 3 does not divide by 2 ranks x --accumulate 1 = 2: every shard trains on whole identities. Choose P as a multiple of 2.")) { try s.validate(ranks: 2) }
        s.data.idsPerBatch = 4; s.objective.tripletMining = .local
        #expect(throws: SettingsError("--triplet-mining local: --ids-per-batch 4 over 4 ranks x --accumulate 1 leaves 1 identity per shard, so its anchors have no negative. Use --triplet-mining global (the default), fewer ranks or micro-batches, or P of at least 8.")) { try s.validate(ranks: 4) }
        s.objective.tripletMining = .global; s.optimiser.accumulate = 4
        #expect(throws: SettingsError("--ids-per-batch 4 over --accumulate 4 leaves 1 identity per micro-batch, so its anchors have no negative. Use P of at least 8.")) { try s.validate(ranks: 1) }
        s.optimiser.accumulate = 1
        try s.validate(ranks: 4)
    }
}

@Suite struct ResumeContractTests {
    func config(_ change: (inout TrainSettings) -> Void = { _ in }, dropping keys: [String] = []) throws -> String {
        var s = valid()
        change(&s)
        var train = try JSONSerialization.jsonObject(with: JSONEncoder().encode(s)) as! [String: Any]
        for k in keys { train[k] = nil }
        let data = try JSONSerialization.data(withJSONObject: ["model": ["numClasses": 751], "train": train], options: [.sortedKeys])
        return String(decoding: data, as: UTF8.self)
    }

    @Test func theSameSettingsResume() throws {
        #expect(try ResumeContract.check(stored: try config(), current: try config(), force: false, checkpoint: "c.h5").isEmpty)
    }

    @Test func anotherArchitectureIsRefusedEvenForced() throws {
        let stored = try config(), current = try config { $0.model.baseWidth = 16 }
        #expect(throws: SettingsError("c.h5 was written with other settings (base-width: 64 -> 16): another architecture, input, split or batch; resuming it would silently train another model. Use the checkpoint's settings, another --run-dir, or --resume none.")) {
            try ResumeContract.check(stored: stored, current: current, force: true, checkpoint: "c.h5")
        }
    }

    @Test func theRateNeedsForce() throws {
        let stored = try config(), current = try config { $0.optimiser.lr = 1e-3 }
        #expect(throws: SettingsError("c.h5 was written with lr: 0.0003 -> 0.001; add --resume-force to continue with the new value(s)")) {
            try ResumeContract.check(stored: stored, current: current, force: false, checkpoint: "c.h5")
        }
        #expect(try ResumeContract.check(stored: stored, current: current, force: true, checkpoint: "c.h5").isEmpty)
    }

    @Test func anotherAlgorithmNeedsForceAndWarns() throws {
        let stored = try config(), current = try config { $0.model.batchNorm = .local }
        #expect(throws: SettingsError("checkpoint c.h5 was trained with --batch-norm sync (this run: local). Resume with the checkpoint's settings, or pass --resume-force to change them from here.")) {
            try ResumeContract.check(stored: stored, current: current, force: false, checkpoint: "c.h5")
        }
        #expect(try ResumeContract.check(stored: stored, current: current, force: true, checkpoint: "c.h5")
                == ["checkpoint c.h5 was trained with --batch-norm sync (this run: local); continuing with this run's settings (--resume-force)"])
    }

    @Test func aCheckpointWithoutTheAlgorithmKeysWasLocal() throws {
        let old = try config(dropping: ["triplet-mining", "batch-norm"])
        let local = try config { $0.objective.tripletMining = .local; $0.model.batchNorm = .local }
        #expect(try ResumeContract.check(stored: old, current: local, force: false, checkpoint: "old.h5").isEmpty)
        #expect(throws: SettingsError("checkpoint old.h5 was trained with --triplet-mining local (this run: global) and --batch-norm local (this run: sync). Resume with the checkpoint's settings, or pass --resume-force to change them from here.")) {
            try ResumeContract.check(stored: old, current: try config(), force: false, checkpoint: "old.h5")
        }
    }
}
