import ArgumentParser

/// `--lr-schedule` and friends, and `--weight-decay` (TrainSettings keys of the
/// same names; see docs/training.md). The defaults are the paper's: a constant
/// rate, no warm-up, no decay.
struct LearningRateOptions: ParsableArguments {
    @Option(help: "constant | step | cosine, stepped once per epoch as PyTorch's MultiStepLR / CosineAnnealingLR (default constant).")
    var lrSchedule: String?
    @Option(help: "With --lr-schedule step: epochs at which the rate is multiplied by --lr-gamma, e.g. 40,70.", transform: parseInts)
    var lrMilestones: [Int]?
    @Option(help: "With --lr-schedule step: the factor at each milestone (default 0.1).")
    var lrGamma: Double?
    @Option(help: "Linear warm-up over the first N epochs, from --warmup-factor x lr to lr (default 0: none).")
    var warmupEpochs: Int?
    @Option(help: "Warm-up's starting factor, in (0, 1] (default 0.1).")
    var warmupFactor: Double?
    @Option(help: "L2 weight decay as torch.optim.Adam's weight_decay: added to the gradient before the moments (default 0).")
    var weightDecay: Double?

    func apply(to s: inout TrainSettings) {
        if let v = lrSchedule { s.lrSchedule = v }; if let v = lrMilestones { s.lrMilestones = v }
        if let v = lrGamma { s.lrGamma = v }; if let v = warmupEpochs { s.warmupEpochs = v }
        if let v = warmupFactor { s.warmupFactor = v }; if let v = weightDecay { s.weightDecay = v }
    }
}
