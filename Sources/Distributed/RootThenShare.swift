import Foundation

extension Communicator {
    /// Collective: rank 0 does something only it should (touch the file
    /// system), every rank gets its result. A failure on rank 0 reaches every
    /// rank as `RootFailure` with rank 0's message, so all stop with the same
    /// one-line error and none waits in a later collective.
    public func onRootThenShare(_ body: () throws -> Data) throws -> Data {
        var status = Data(), payload = Data()
        if isRoot {
            do { payload = try body() } catch { status = Data("\(error)".utf8) }
        }
        status = try broadcast(data: status)
        if !status.isEmpty { throw RootFailure(String(decoding: status, as: UTF8.self)) }
        return try broadcast(data: payload)
    }
}

/// Rank 0's error in `onRootThenShare`, on every rank.
public struct RootFailure: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}
