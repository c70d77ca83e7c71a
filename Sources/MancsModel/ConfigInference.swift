extension MancsConfig {
    /// The architecture implied by parameter shapes (names as in `/model` of a
    /// checkpoint), for files written without a `config`. The last stride and the
    /// input size leave no trace in the shapes, so the caller gives them.
    /// Throws, naming the tensor, when a needed one is missing or inconsistent;
    /// loading the parameters then checks every shape.
    public static func inferred(fromShapes shapes: [String: [Int]], lastStride: Int = 2, height: Int = 256,
                                width: Int = 128) throws -> MancsConfig {
        func shape(_ name: String, rank: Int) throws -> [Int] {
            guard let s = shapes[name] else { throw MancsConfigError(message: "cannot infer the architecture: no tensor \(name)") }
            guard s.count == rank else { throw MancsConfigError(message: "cannot infer the architecture: \(name) has shape \(s)") }
            return s
        }
        var c = MancsConfig()
        c.baseWidth = try shape("backbone.conv1.weight", rank: 4)[0]
        c.blocks = (1...4).map { s in
            var n = 0
            while shapes["backbone.layer\(s).\(n).conv1.weight"] != nil { n += 1 }
            return n
        }
        c.attentionStages = (1...4).filter { shapes["attention.layer\($0).conv1.weight"] != nil }
        if let s = c.attentionStages.first {
            let a = try shape("attention.layer\(s).conv1.weight", rank: 4)  // [C/r, C, 1, 1]
            guard a[0] > 0 else { throw MancsConfigError(message: "cannot infer the architecture: attention.layer\(s).conv1.weight has shape \(a)") }
            c.reduction = a[1] / a[0]
        }
        c.embeddingDim = try shape("heads.rank.fc.weight", rank: 2)[0]
        c.clsHidden = try shape("heads.cls.fc.weight", rank: 2)[0]
        c.numClasses = try shape("heads.cls.classifier.weight", rank: 2)[0]
        c.lastStride = lastStride
        c.height = height
        c.width = width
        try c.validate()
        return c
    }
}
