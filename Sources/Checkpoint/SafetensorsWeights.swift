import Foundation
import HDF5Kit
import MancsModel
import WeightsFiles

// Weights in safetensors files: `mancs export` writes one from a checkpoint
// (PyTorch names and layouts, the architecture in `__metadata__`); inference
// (`mancs extract`, `eval --checkpoint`, `visualize`) reads it back strictly,
// `mancs-dist --pretrained` leniently (torchvision/timm backbones too). The
// format itself is parsed in WeightsFiles (checked code); only the layout copy
// into a store (`ParameterStore.load`) runs in the -Ounchecked model target.

/// The `__metadata__` keys `mancs export` writes (docs/evaluation.md, "Exporting weights").
public enum ExportMetadata {
    public static let format = "format"            // "mancs-weights"
    public static let formatName = "mancs-weights"
    public static let formatVersion = "format_version"  // "1"
    /// JSON object of shared/reference/mancs_ref.py's `Config(...)` keyword arguments:
    /// base_width, blocks, last_stride, num_classes, attention_stages, reduction,
    /// embedding_dim, cls_hidden, height, width.
    public static let config = "config"
    public static let bnEps = "bn_eps"
    public static let bnMomentum = "bn_momentum"
    public static let globalStep = "global_step"
    public static let mancsVersion = "mancs_version"

    /// The metadata of an export of a network with `config` trained for `step` steps.
    public static func make(_ c: MancsConfig, step: Int64) throws -> [String: String] {
        let reference: [String: Any] = [
            "base_width": c.baseWidth, "blocks": c.blocks, "last_stride": c.lastStride, "num_classes": c.numClasses,
            "attention_stages": c.attentionStages, "reduction": c.reduction, "embedding_dim": c.resolvedEmbeddingDim,
            "cls_hidden": c.resolvedClsHidden, "height": c.height, "width": c.width,
        ]
        let json = try JSONSerialization.data(withJSONObject: reference, options: [.sortedKeys])
        return [format: formatName, formatVersion: "1", config: String(decoding: json, as: UTF8.self),
                bnEps: "\(c.bnEps)", bnMomentum: "\(c.bnMomentum)", globalStep: "\(step)",
                mancsVersion: MancsModel.mancsVersion]
    }
}

/// What `Checkpoint.exportSafetensors` wrote.
public struct ExportSummary: Sendable {
    public var path: String
    public var config: MancsConfig
    public var globalStep: Int64
    public var tensors: Int
    public var parameterCount: Int
    public var bufferCount: Int
    public var bytes: Int
}

extension Checkpoint {
    // MARK: Which format

    /// Whether `path` holds a safetensors file rather than HDF5: HDF5 starts with
    /// its 8-byte signature, safetensors with a header length then `{`.
    public static func isSafetensors(_ path: String) -> Bool {
        // Only a regular file is opened here: opening a FIFO would block.
        guard (try? FileManager.default.attributesOfItem(atPath: path)[.type] as? FileAttributeType) == .typeRegular,
              let handle = FileHandle(forReadingAtPath: path) else { return false }
        defer { try? handle.close() }
        let head = [UInt8]((try? handle.read(upToCount: 9)) ?? Data())
        guard head.count == 9 else { return false }
        return head[..<8] != [0x89, 0x48, 0x44, 0x46, 0x0D, 0x0A, 0x1A, 0x0A] && head[8] == UInt8(ascii: "{")
    }

    static func readSafetensors(_ url: URL) throws -> SafetensorsFile {
        do { return try SafetensorsFile(contentsOf: url) } catch let e as SafetensorsError { throw CheckpointError(e.message) }
    }

    // MARK: Architecture and strict loading (inference)

    /// The architecture of a safetensors weights file: its `config` metadata
    /// (written by `mancs export`) when present, else inferred from the tensor
    /// shapes (last stride 2, input 256 x 128).
    static func inferConfig(safetensors file: SafetensorsFile) throws -> MancsConfig {
        var shapes: [String: [Int]] = [:]
        for e in file.entries { shapes[e.name] = e.shape }
        var c = try inferConfig(tensorNames: file.entries.map(\.name), shape: { shapes[$0] ?? [] }, source: file.path, prefix: "")
        let meta = file.metadata
        if let json = meta[ExportMetadata.config] { try applySettings(json, to: &c, path: file.path) }
        for (key, target) in [(ExportMetadata.bnEps, \MancsConfig.bnEps), (ExportMetadata.bnMomentum, \.bnMomentum)] {
            guard let text = meta[key] else { continue }
            guard let v = Float(text), v.isFinite, v > 0, v < 1 else {
                throw CheckpointError("\(file.path): __metadata__ \(key) must be a number in (0, 1), got \(text)")
            }
            c[keyPath: target] = v
        }
        // The metadata names the resolved widths; 0 means "the feature dimension", as in a checkpoint's config.
        if c.embeddingDim == c.featureDim { c.embeddingDim = 0 }
        if c.clsHidden == c.featureDim { c.clsHidden = 0 }
        do { try c.validate() } catch { throw CheckpointError("\(file.path): \(error)") }
        return c
    }

    /// Loads every parameter and buffer from a safetensors file with Mancs
    /// names: each must be there with its shape, and nothing else may be (but
    /// `num_batches_tracked`). Checks everything before changing anything.
    static func loadWeights(safetensors file: SafetensorsFile, parameters: ParameterStore, buffers: ParameterStore) throws {
        var plan: [(ParameterStore, TensorInfo, SafetensorsFile.Entry)] = []
        for (store, kind) in [(parameters, "parameter"), (buffers, "buffer")] {
            for t in store.tensors {
                guard let e = file.entry(t.name) else {
                    throw CheckpointError("\(file.path): \(kind) \(t.name) is missing (another architecture?)")
                }
                guard e.shape == t.shape else {
                    throw CheckpointError("\(file.path): \(t.name) has shape \(e.shape) in the file but \(t.shape) in the model (another architecture?)")
                }
                plan.append((store, t, e))
            }
        }
        if let extra = file.entries.first(where: {
            parameters.info($0.name) == nil && buffers.info($0.name) == nil && !$0.name.hasSuffix("num_batches_tracked")
        }) {
            throw CheckpointError("\(file.path): \(extra.name) is not a tensor of this model (another architecture?)")
        }
        let values: [[Float]]
        do { values = try plan.map { try file.floats($0.2) } } catch let e as SafetensorsError { throw CheckpointError(e.message) }
        for (p, v) in zip(plan, values) { p.0.load(p.1, from: v) }
    }

    /// `mancs inspect` of a safetensors file: what its metadata says, its tensors
    /// counted (BatchNorm running statistics as buffers), every float tensor read
    /// and converted once.
    public static func summarizeSafetensors(_ url: URL) throws -> CheckpointSummary {
        let file = try readSafetensors(url)
        let meta = file.metadata
        // format: "safetensors", or "safetensors (mancs-weights)" for a mancs export.
        let format = "safetensors" + (meta[ExportMetadata.format].map { " (\($0))" } ?? "")
        var s = CheckpointSummary(path: url.path, format: format, version: meta[ExportMetadata.formatVersion].flatMap { Int64($0) },
                                  globalStep: meta[ExportMetadata.globalStep].flatMap { Int64($0) }, epoch: nil, worldSize: nil, seed: nil,
                                  config: meta[ExportMetadata.config], parameterTensors: 0, parameterCount: 0, bufferTensors: 0,
                                  bufferCount: 0, adamStep: nil, hasState: false, datasetsVerified: 0,
                                  fileBytes: ((try? FileManager.default.attributesOfItem(atPath: url.path)[.size]) as? Int) ?? 0)
        for e in file.entries where !e.name.hasSuffix("num_batches_tracked") {
            if e.name.hasSuffix(".running_mean") || e.name.hasSuffix(".running_var") {
                s.bufferTensors += 1; s.bufferCount += e.elementCount
            } else {
                s.parameterTensors += 1; s.parameterCount += e.elementCount
            }
            if SafetensorsDType(rawValue: e.dtype)?.isFloat == true {
                do { _ = try file.floats(e) } catch let error as SafetensorsError { throw CheckpointError(error.message) }
                s.datasetsVerified += 1
            }
        }
        return s
    }

    // MARK: Export

    /// Writes the weights of a checkpoint (or weights file) as safetensors:
    /// every parameter and BatchNorm running statistic under its PyTorch name and
    /// layout (conv weights OIHW), float32, plus `<bn>.num_batches_tracked` (I64,
    /// the checkpoint's global step) so that PyTorch's strict `load_state_dict`
    /// accepts it, and the architecture in `__metadata__` (`ExportMetadata`).
    /// Atomic: temporary, fsync, read back and compared, rename, fsync the folder.
    @discardableResult
    public static func exportSafetensors(from source: URL, to out: URL) throws -> ExportSummary {
        guard FileManager.default.fileExists(atPath: source.path) else {
            throw CheckpointError("\(source.path): no such checkpoint file")
        }
        let config = try inferConfig(source)
        let network: MancsNetwork
        do { network = try MancsNetwork(config: config, maxBatch: 1) } catch {
            throw CheckpointError("\(source.path): cannot build the network it describes: \(error)")
        }
        let (parameters, buffers) = (network.parameters, network.buffers)
        var step: Int64 = 0
        try loadWeights(source, parameters: parameters, buffers: buffers)
        if isSafetensors(source.path) {
            step = try readSafetensors(source).metadata[ExportMetadata.globalStep].flatMap { Int64($0) } ?? 0
        } else {
            let file = try openWeights(source.path)
            defer { file.close() }
            if file.root.hasAttribute("global_step") { step = try file.root.attribute("global_step", as: Int64.self).first ?? 0 }
        }
        var tensors: [SafetensorsFile.Tensor] = []
        for store in [parameters, buffers] {
            for t in store.tensors { tensors.append(.init(name: t.name, shape: t.shape, floats: store.export(t))) }
        }
        for t in buffers.tensors where t.name.hasSuffix(".running_mean") {
            let bn = t.name.dropLast(".running_mean".count)
            tensors.append(.init(name: bn + ".num_batches_tracked", shape: [], values: .int64([max(step, 0)])))
        }
        let data: Data
        do { data = try SafetensorsFile.encode(tensors, metadata: try ExportMetadata.make(config, step: step)) } catch {
            throw CheckpointError("\(out.path): \(error)")
        }
        try HDF5File.replaceAtomically(out, write: { temp in
            do { try data.write(to: URL(fileURLWithPath: temp)) } catch {
                throw CheckpointError("\(out.path): cannot write (\(error.localizedDescription))")
            }
        }, verify: { temp in
            let back = try readSafetensors(URL(fileURLWithPath: temp))
            guard back.entries.count == tensors.count else {
                throw CheckpointError("\(out.path): read back \(back.entries.count) tensors, wrote \(tensors.count)")
            }
            for t in tensors {
                guard case .floats(let values) = t.values else { continue }
                guard let e = back.entry(t.name), try back.floats(e) == values else {
                    throw CheckpointError("\(out.path): \(t.name) reads back differently")
                }
            }
        })
        return ExportSummary(path: out.path, config: config, globalStep: step, tensors: tensors.count,
                             parameterCount: parameters.count, bufferCount: buffers.count, bytes: data.count)
    }
}

// MARK: - Pretrained weights (mancs-dist --pretrained)

/// What `loadPretrained` did, by tensor name (names as in the network).
public struct PretrainedLoadReport: Sendable, CustomStringConvertible {
    /// Network tensors (parameters and buffers) set from the file.
    public var loaded: [String] = []
    /// Network tensors the file did not provide (kept as they were).
    public var missing: [String] = []
    /// File tensors that match nothing in the network.
    public var unexpected: [String] = []
    /// File tensors skipped on purpose (`fc.*`, `num_batches_tracked`).
    public var ignored: [String] = []

    public var description: String {
        "loaded \(loaded.count), missing \(missing.count), unexpected \(unexpected.count), ignored \(ignored.count)"
    }
}

extension MancsNetwork {
    /// Loads weights by name from a safetensors file: Mancs names (e.g. a
    /// `mancs export` file), or torchvision/timm backbone names with or without
    /// a `backbone.` prefix. BN running statistics go to `buffers`; `fc.*` and
    /// `num_batches_tracked` are ignored. Throws on a malformed file or a shape
    /// mismatch (naming the tensor and both shapes), before changing anything.
    @discardableResult
    public func loadPretrained(safetensors url: URL) throws -> PretrainedLoadReport {
        let file = try SafetensorsFile(contentsOf: url)
        var report = PretrainedLoadReport()
        var plan: [(store: ParameterStore, info: TensorInfo, entry: SafetensorsFile.Entry)] = []
        var seen = Set<String>()
        for e in file.entries {
            let name = e.name
            if name.hasSuffix("num_batches_tracked") || name.hasPrefix("fc.") || name.hasPrefix("backbone.fc.") {
                report.ignored.append(name)
                continue
            }
            let candidates = name.hasPrefix("backbone.") ? [name] : [name, "backbone." + name]
            guard let (store, info) = candidates.lazy.compactMap({ n -> (ParameterStore, TensorInfo)? in
                if let i = self.parameters.info(n) { return (self.parameters, i) }
                if let i = self.buffers.info(n) { return (self.buffers, i) }
                return nil
            }).first else {
                report.unexpected.append(name)
                continue
            }
            guard e.shape == info.shape else {
                throw SafetensorsError("\(url.path): tensor \(name) has shape \(e.shape), the network's \(info.name) has \(info.shape)")
            }
            guard !seen.contains(info.name) else {
                throw SafetensorsError("\(url.path): tensor \(name) maps onto \(info.name), which another tensor already set")
            }
            seen.insert(info.name)
            plan.append((store, info, e))
        }
        // Convert everything first so a bad dtype leaves the network untouched.
        let values = try plan.map { try file.floats($0.entry) }
        for (p, v) in zip(plan, values) { p.store.load(p.info, from: v) }
        report.loaded = (parameters.tensors + buffers.tensors).map(\.name).filter { seen.contains($0) }
        report.missing = (parameters.tensors + buffers.tensors).map(\.name).filter { !seen.contains($0) }
        return report
    }
}
