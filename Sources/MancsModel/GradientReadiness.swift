/// Reports parameter-gradient ranges in decreasing offset order. A layer whose
/// gradients complete while a layer above it (higher offsets) is still open is
/// held back until everything above it has been reported: the attention blocks
/// sit after the whole backbone in PyTorch's order but finish in between its stages.
final class GradientReadiness {
    private var top: Int
    private var pending: [Int: Int] = [:]  // upperBound -> lowerBound
    private let report: ((Range<Int>) -> Void)?
    /// Sees every layer's range as soon as it completes, before any holding back.
    private let observe: ((Range<Int>) -> Void)?

    init(count: Int, report: ((Range<Int>) -> Void)?, observe: ((Range<Int>) -> Void)? = nil) {
        top = count
        self.report = report
        self.observe = observe
    }

    func complete(_ range: Range<Int>) {
        if let observe, !range.isEmpty { observe(range) }
        guard report != nil, !range.isEmpty else { return }
        pending[range.upperBound] = range.lowerBound
        while let lower = pending.removeValue(forKey: top) {
            report?(lower..<top)
            top = lower
        }
    }

    /// True when every range down to offset 0 has been reported.
    var isFinished: Bool { top == 0 }
}
