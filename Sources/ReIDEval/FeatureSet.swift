// ReIDEval: feature files, distances, and the re-ID evaluation protocols
// (Market-1501 CMC / mAP / mINP as torchreid, CUHK03 classic single-gallery-shot,
// Market-1501 multi-query averaging). See docs/evaluation.md.

// MARK: - Errors

/// A bad features file or an evaluation that cannot produce a number; the message
/// is one line naming what and where.
public struct EvalError: Error, CustomStringConvertible, Sendable {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

// MARK: - One split's features

/// The features of one split (query, gallery or multi-query): `count` rows of
/// `dim` float32 values, row-major, with an identity and a camera per row.
public struct FeatureSet: Sendable, Equatable {
    /// Row-major [count, dim].
    public var features: [Float]
    public var pids: [Int64]
    public var camids: [Int64]
    /// Optional image paths, one per row.
    public var paths: [String]?
    public let dim: Int

    public var count: Int { pids.count }

    /// Checks that every array has one entry per row. `name` labels errors
    /// (e.g. "query", or "feats.h5: /gallery").
    public init(features: [Float], dim: Int, pids: [Int64], camids: [Int64], paths: [String]? = nil,
                name: String = "features") throws {
        guard dim > 0 else { throw EvalError("\(name): feature dimension must be positive, got \(dim)") }
        guard features.count % dim == 0 else {
            throw EvalError("\(name): \(features.count) feature values is not a whole number of rows of \(dim)")
        }
        let rows = features.count / dim
        guard pids.count == rows else {
            throw EvalError("\(name): pids has \(pids.count) entries but features has \(rows) rows")
        }
        guard camids.count == rows else {
            throw EvalError("\(name): camids has \(camids.count) entries but features has \(rows) rows")
        }
        if let paths, paths.count != rows {
            throw EvalError("\(name): paths has \(paths.count) entries but features has \(rows) rows")
        }
        self.features = features
        self.dim = dim
        self.pids = pids
        self.camids = camids
        self.paths = paths
    }

    /// Throws if any feature is NaN or infinite (a ranking of such rows would be meaningless).
    public func checkFinite(name: String) throws {
        let bad = features.withUnsafeBufferPointer { f -> Int? in
            var sum: Float = 0  // one vectorisable pass; NaN or inf makes the sum non-finite
            for v in f { sum += v * 0 }
            return sum.isFinite ? nil : f.firstIndex { !$0.isFinite }
        }
        if let i = bad {
            throw EvalError("\(name): feature row \(i / dim) contains \(features[i]) (features must be finite)")
        }
    }
}
