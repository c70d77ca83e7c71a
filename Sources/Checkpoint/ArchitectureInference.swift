import Foundation
import HDF5Kit
import MancsModel

extension Checkpoint {
    /// The architecture of a checkpoint or weights file. Settings present in its
    /// `config` attribute win (they are the only source of the last stride and
    /// the input size); the rest is read from tensor names and shapes:
    /// base width from `backbone.conv1.weight`, blocks from `backbone.layer<s>.<i>.*`,
    /// attention stages and reduction from `attention.layer<s>.conv1.weight`,
    /// embedding dim, cls hidden width and classes from the heads.
    /// A safetensors file (`isSafetensors`) gets its architecture the same way,
    /// from its `__metadata__` and its tensors.
    public static func inferConfig(_ url: URL) throws -> MancsConfig {
        if isSafetensors(url.path) { return try inferConfig(safetensors: readSafetensors(url)) }
        let file = try openWeights(url.path)
        defer { file.close() }
        let root = file.root
        let model = try root.group("model")
        var c = try inferConfig(tensorNames: try model.members(), shape: { try model.shape($0) }, source: url.path, prefix: "/model/")
        if root.hasAttribute("config") { try applySettings(try root.stringAttribute("config"), to: &c, path: url.path) }
        do { try c.validate() } catch { throw CheckpointError("\(url.path): \(error)") }
        return c
    }

    /// The architecture implied by tensor names and shapes alone (the one
    /// inference for HDF5 and safetensors files). Block indices are bounded, as
    /// the names come from an untrusted file; the last stride and the input size
    /// leave no trace in the shapes and keep their defaults.
    static func inferConfig(tensorNames names: [String], shape read: (String) throws -> [Int], source: String,
                            prefix: String) throws -> MancsConfig {
        let present = Set(names)
        func shape(_ n: String, rank: Int) throws -> [Int] {
            guard present.contains(n) else { throw CheckpointError("\(source): \(prefix)\(n) is missing: cannot infer the architecture") }
            let s = try read(n)
            guard s.count == rank, s.allSatisfy({ $0 > 0 }) else {
                throw CheckpointError("\(source): \(prefix)\(n) has shape \(s): cannot infer the architecture")
            }
            return s
        }
        var c = MancsConfig()
        c.baseWidth = try shape("backbone.conv1.weight", rank: 4)[0]
        c.blocks = try (1...4).map { s in
            let stage = "backbone.layer\(s)."
            let indices = Set(names.filter { $0.hasPrefix(stage) }.compactMap { Int($0.dropFirst(stage.count).split(separator: ".").first ?? "") })
            if let absurd = indices.first(where: { !(0..<64).contains($0) }) {
                throw CheckpointError("\(source): \(prefix)backbone.layer\(s).\(absurd).*: block index out of range (at most 64 blocks per stage)")
            }
            guard let top = indices.max() else { throw CheckpointError("\(source): no tensors of backbone.layer\(s): cannot infer the architecture") }
            return top + 1
        }
        c.attentionStages = (1...4).filter { present.contains("attention.layer\($0).conv1.weight") }
        if let s = c.attentionStages.first {
            let w = try shape("attention.layer\(s).conv1.weight", rank: 4)  // [C/r, C, 1, 1]
            c.reduction = w[1] / w[0]
        }
        let rank = try shape("heads.rank.fc.weight", rank: 2)  // [E, D]
        let hidden = try shape("heads.cls.fc.weight", rank: 2)  // [H, D]
        let classes = try shape("heads.cls.classifier.weight", rank: 2)  // [classes, H]
        c.numClasses = classes[0]
        c.embeddingDim = rank[0] == c.featureDim ? 0 : rank[0]
        c.clsHidden = hidden[0] == c.featureDim ? 0 : hidden[0]
        return c
    }

    /// Overrides `config` with the model settings of a JSON text: the keys of
    /// MancsConfig (camelCase or snake_case), in a `model` object or at the top level.
    public static func applySettings(_ json: String, to config: inout MancsConfig, path: String = "config") throws {
        guard let any = try? JSONSerialization.jsonObject(with: Data(json.utf8)), let top = any as? [String: Any] else {
            throw CheckpointError("\(path): config is not a JSON object")
        }
        let object = (top["model"] as? [String: Any]) ?? top
        var settings: [String: Any] = [:]
        for (k, v) in object { settings[k.replacingOccurrences(of: "_", with: "").lowercased()] = v }
        func int(_ k: String) -> Int? { (settings[k] as? NSNumber)?.intValue }
        func ints(_ k: String) -> [Int]? { (settings[k] as? [Any])?.compactMap { ($0 as? NSNumber)?.intValue } }
        if let v = int("basewidth") { config.baseWidth = v }
        if let v = ints("blocks") { config.blocks = v }
        if let v = int("laststride") { config.lastStride = v }
        if let v = int("numclasses") { config.numClasses = v }
        if let v = ints("attentionstages") { config.attentionStages = v }
        if let v = int("reduction") { config.reduction = v }
        if let v = int("embeddingdim") { config.embeddingDim = v }
        if let v = int("clshidden") { config.clsHidden = v }
        if let v = int("height") { config.height = v }
        if let v = int("width") { config.width = v }
        if let v = (settings["bnmomentum"] as? NSNumber)?.floatValue { config.bnMomentum = v }
        if let v = (settings["bneps"] as? NSNumber)?.floatValue { config.bnEps = v }
    }
}
