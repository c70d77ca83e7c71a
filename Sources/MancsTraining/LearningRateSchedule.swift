import Foundation

/// The learning rate of each epoch, as PyTorch's schedulers stepped once per
/// epoch: an optional linear warm-up (torch `LinearLR(start_factor: warmupFactor,
/// total_iters: warmupEpochs)`) times the main schedule: constant, step
/// (`MultiStepLR(milestones, gamma)`) or cosine (`CosineAnnealingLR(T_max: epochs,
/// eta_min: 0)`, closed form). A pure function of the epoch, so a resumed run
/// continues with exactly the rate it would have had. The paper's setting is
/// `.constant` without warm-up.
public struct LearningRateSchedule: Sendable, Equatable {
    public enum Kind: String, Sendable, CaseIterable { case constant, step, cosine }

    public var kind: Kind
    public var baseLR: Double
    /// Epochs of the run (the cosine's period).
    public var epochs: Int
    /// Epochs at which `.step` multiplies the rate by `gamma`.
    public var milestones: [Int]
    public var gamma: Double
    public var warmupEpochs: Int
    public var warmupFactor: Double

    public init(kind: Kind = .constant, baseLR: Double, epochs: Int, milestones: [Int] = [], gamma: Double = 0.1,
                warmupEpochs: Int = 0, warmupFactor: Double = 0.1) {
        self.kind = kind; self.baseLR = baseLR; self.epochs = epochs; self.milestones = milestones
        self.gamma = gamma; self.warmupEpochs = warmupEpochs; self.warmupFactor = warmupFactor
    }

    /// The rate of 0-based `epoch`.
    public func lr(epoch: Int) -> Double {
        var factor = 1.0
        if epoch < warmupEpochs {
            factor = warmupFactor + (1 - warmupFactor) * Double(epoch) / Double(warmupEpochs)
        }
        switch kind {
        case .constant: break
        case .step: factor *= pow(gamma, Double(milestones.filter { $0 <= epoch }.count))
        case .cosine: factor *= (1 + cos(Double.pi * Double(min(epoch, epochs)) / Double(max(epochs, 1)))) / 2
        }
        return baseLR * factor
    }

    /// One line naming a bad setting, or nil.
    public func problem() -> String? {
        if warmupEpochs < 0 { return "--warmup-epochs must be at least 0, got \(warmupEpochs)" }
        if !(warmupFactor > 0 && warmupFactor <= 1) { return "--warmup-factor must be in (0, 1], got \(warmupFactor)" }
        if !(gamma > 0) { return "--lr-gamma must be positive, got \(gamma)" }
        if kind == .step {
            if milestones.isEmpty { return "--lr-schedule step needs --lr-milestones (epochs, e.g. 40,70)" }
            if milestones.contains(where: { $0 < 1 }) || milestones != milestones.sorted() || Set(milestones).count != milestones.count {
                return "--lr-milestones must be increasing epochs of at least 1, got \(milestones.map(String.init).joined(separator: ","))"
            }
        }
        return nil
    }
}
