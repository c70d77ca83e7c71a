import Foundation

/// A set-up step failed on one or more ranks. Every rank throws it after the
/// same agreement, so all of them stop together; `report` has one line per
/// distinct reason, "rank R on HOST: reason" (just the reason when every rank
/// gave it), the same on every rank: print it from rank 0 only.
public struct AgreedFailure: Error, CustomStringConvertible {
    public let report: [String]
    public var description: String { report.joined(separator: "\n") }
}

extension Communicator {
    /// Collective: ends a set-up step that may fail on some ranks only (a run
    /// directory rank 0 cannot create, a data folder one node cannot see).
    /// Every rank passes its own error (nil when its part went well); if any
    /// rank failed, every rank throws `AgreedFailure` naming each failing rank,
    /// its host and its reason. Without this a rank that returns early leaves
    /// the others waiting forever in their next collective. A world of one
    /// rethrows its own error unchanged.
    public func agree(_ localError: Error?) throws {
        if size == 1 { if let localError { throw localError } else { return } }
        let failed = try allreduceMax(Int64(localError == nil ? 0 : 1))
        guard failed != 0 else { return }
        let reason = localError.map { "\($0)".split(whereSeparator: \.isNewline).joined(separator: " ") } ?? ""
        let reasons = try allgatherText(reason), hosts = try allgatherText(hostname)
        throw AgreedFailure(report: Communicator.failureReport(reasons: reasons, hosts: hosts))
    }

    /// One line per distinct reason ("" = that rank went well), naming the
    /// ranks that gave it and their hosts; a reason every rank gave is
    /// reported alone, as a world of one would.
    static func failureReport(reasons: [String], hosts: [String]) -> [String] {
        if !reasons[0].isEmpty && reasons.allSatisfy({ $0 == reasons[0] }) { return [reasons[0]] }
        var order: [String] = [], ranksOf: [String: [Int]] = [:]
        for (r, reason) in reasons.enumerated() where !reason.isEmpty {
            if ranksOf[reason] == nil { order.append(reason) }
            ranksOf[reason, default: []].append(r)
        }
        return order.map { reason in
            ranksOf[reason]!.map { "rank \($0) on \(hosts[$0])" }.joined(separator: ", ") + ": " + reason
        }
    }

    /// Runs `body` on every rank, then `agree`s on its outcome: the result on
    /// every rank, or `AgreedFailure` on every rank.
    public func agreeing<T>(_ body: () throws -> T) throws -> T {
        let result: Result<T, Error>
        do { result = .success(try body()) } catch { result = .failure(error) }
        if case .failure(let e) = result { try agree(e) } else { try agree(nil) }
        return try result.get()
    }

    /// Collective: every rank's `digest` of something that must be the same
    /// everywhere (e.g. a dataset listing) is compared with rank 0's; a rank
    /// that differs fails the agreement with `describe()` as its reason.
    public func agreeSame(digest: UInt64, describe: () -> String) throws {
        guard size > 1 else { return }
        let all = try allgather([digest])
        try agree(all[rank] == all[0] ? nil : AgreementMismatch(describe()))
    }

    /// Every rank's text, in rank order, on every rank.
    public func allgatherText(_ text: String) throws -> [String] {
        let bytes = Array(text.utf8)
        let counts = try allgather([Int64(bytes.count)]).map(Int.init)
        let width = counts.max() ?? 0
        guard width > 0 else { return [String](repeating: "", count: size) }
        let all = try allgather(bytes + [UInt8](repeating: 0, count: width - bytes.count))
        return (0..<size).map { r in String(decoding: all[(r * width)..<(r * width + counts[r])], as: UTF8.self) }
    }
}

/// The reason a rank gives when its digest differs from rank 0's.
public struct AgreementMismatch: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}
