import Dispatch

/// `DispatchQueue.concurrentPerform`, in one place.
enum DispatchQueueShim {
    static func concurrentPerform(_ iterations: Int, _ body: @Sendable (Int) -> Void) {
        DispatchQueue.concurrentPerform(iterations: iterations, execute: body)
    }
}
