import Foundation
import HDF5Kit
import Kernels
import MancsModel

/// The Mancs checkpoint file format (docs/checkpoints.md, docs/method.md §7):
///
///     /                 attrs format="mancs-checkpoint", version=1, global_step, epoch,
///                       world_size, seed, config (JSON text)
///     /model/<name>     float32 parameters, PyTorch names and layouts (conv OIHW)
///     /buffers/<name>   float32 BatchNorm running statistics
///     /optimizer        attr step; exp_avg/<name>, exp_avg_sq/<name> (as their parameter)
///     /state            attrs best_map, best_step (once evaluated); sampler
///                       [epoch, batch_in_epoch] int64; rng int64 [0] (kept empty: the
///                       trainer's random streams are functions of seed, step and shard)
///
/// Every dataset carries HDF5's Fletcher32 checksum, so reading it detects damage.
public enum Checkpoint {
    public static let formatName = "mancs-checkpoint"
    public static let formatVersion: Int64 = 1

    /// What `load` read besides the tensors.
    public struct Loaded: Sendable {
        public var state: TrainingState
        public var adamStep: Int
        public var path: String
    }

    // MARK: Writing one file

    /// Writes a complete checkpoint to `path` (no atomicity: see `save`).
    /// Refuses non-finite values, naming the tensor, so a diverged run never
    /// replaces a good checkpoint.
    public static func write(to path: String, parameters: ParameterStore, buffers: ParameterStore,
                             adam: AdamMoments, state: TrainingState) throws {
        precondition(adam.m.count >= parameters.count && adam.v.count >= parameters.count,
                     "Adam moments (\(adam.m.count), \(adam.v.count)) smaller than the parameter store (\(parameters.count))")
        try requireFinite(parameters.values, parameters, "parameter", state.globalStep)
        try requireFinite(buffers.values, buffers, "buffer", state.globalStep)
        try requireFinite(adam.m, parameters, "Adam exp_avg of", state.globalStep)
        try requireFinite(adam.v, parameters, "Adam exp_avg_sq of", state.globalStep)

        let file = try HDF5File(creating: path)
        defer { file.close() }
        let root = file.root
        try root.setAttribute("format", string: formatName)
        try root.setAttribute("version", [formatVersion])
        try root.setAttribute("global_step", [state.globalStep])
        try root.setAttribute("epoch", [state.epoch])
        try root.setAttribute("world_size", [state.worldSize])
        try root.setAttribute("seed", [Int64(bitPattern: state.seed)])
        try root.setAttribute("config", string: state.config)

        let model = try root.createGroup("model")
        for t in parameters.tensors { try model.write(t.name, parameters.export(t), shape: t.shape, checksum: true) }
        let bufs = try root.createGroup("buffers")
        for t in buffers.tensors { try bufs.write(t.name, buffers.export(t), shape: t.shape, checksum: true) }

        let opt = try root.createGroup("optimizer")
        try opt.setAttribute("step", [Int64(adam.step)])
        let m = try opt.createGroup("exp_avg"), v = try opt.createGroup("exp_avg_sq")
        for t in parameters.tensors {
            try m.write(t.name, fileLayout(t, adam.m), shape: t.shape, checksum: true)
            try v.write(t.name, fileLayout(t, adam.v), shape: t.shape, checksum: true)
        }

        let st = try root.createGroup("state")
        if let best = state.best {
            try st.setAttribute("best_map", [best.mAP])
            if let step = best.step { try st.setAttribute("best_step", [step]) }
        }
        try st.write("sampler", [state.epoch, state.batchInEpoch], shape: [2], checksum: true)
        try st.write("rng", [Int64](), shape: [0], checksum: true)  // format version 1 readers require it
        try file.flush()
    }

    // MARK: Reading

    /// Loads a full checkpoint (weights, buffers, Adam moments, training state)
    /// into the given stores. Shapes are checked before anything is changed.
    public static func load(_ url: URL, parameters: ParameterStore, buffers: ParameterStore,
                            adam: AdamMoments) throws -> Loaded {
        let file = try openWeights(url.path)
        defer { file.close() }
        let root = file.root
        guard root.hasAttribute("format"), root.exists("optimizer/exp_avg"), root.exists("optimizer/exp_avg_sq"),
              root.exists("state") else {
            throw CheckpointError("\(url.path): holds weights only (no /optimizer or /state): it can start "
                                  + "inference or fine-tuning, not resume a run")
        }
        try checkShapes(root, "model", parameters, url.path, strict: true)
        try checkShapes(root, "buffers", buffers, url.path, strict: false)
        try checkShapes(root, "optimizer/exp_avg", parameters, url.path, strict: true)
        try checkShapes(root, "optimizer/exp_avg_sq", parameters, url.path, strict: true)

        try readTensors(root, "model", parameters) { t, data in parameters.load(t, from: data) }
        try readTensors(root, "buffers", buffers) { t, data in buffers.load(t, from: data) }
        try readTensors(root, "optimizer/exp_avg", parameters) { t, data in internalLayout(t, data, adam.m) }
        try readTensors(root, "optimizer/exp_avg_sq", parameters) { t, data in internalLayout(t, data, adam.v) }

        let opt = try root.group("optimizer")
        let step = try opt.attribute("step", as: Int64.self).first ?? 0
        var state = TrainingState()
        state.globalStep = try root.attribute("global_step", as: Int64.self).first ?? 0
        state.epoch = try root.attribute("epoch", as: Int64.self).first ?? 0
        state.worldSize = try root.attribute("world_size", as: Int64.self).first ?? 1
        state.seed = UInt64(bitPattern: try root.attribute("seed", as: Int64.self).first ?? 0)
        state.config = root.hasAttribute("config") ? try root.stringAttribute("config") : "{}"
        let st = try root.group("state")
        state.best = try bestEvaluation(st)
        let sampler = try st.read("sampler", as: Int64.self).values
        guard sampler.count == 2 else { throw CheckpointError("\(url.path): /state/sampler must hold [epoch, batch_in_epoch]") }
        state.batchInEpoch = sampler[1]
        // Counters index the sampler and the schedule: refuse what no run writes.
        guard (0..<(1 << 40)).contains(state.globalStep), (0..<(1 << 40)).contains(step), state.epoch >= 0,
              state.batchInEpoch >= 0, (1...1 << 20).contains(state.worldSize) else {
            throw CheckpointError("\(url.path): training state out of range (global_step \(state.globalStep), optimizer step \(step), "
                                  + "epoch \(state.epoch), batch_in_epoch \(state.batchInEpoch), world_size \(state.worldSize))")
        }
        return Loaded(state: state, adamStep: Int(step), path: url.path)
    }

    /// The best evaluation a checkpoint's `/state` records: attributes `best_map`
    /// and `best_step`, or (files written before them) the `json` attribute's `best_map`.
    static func bestEvaluation(_ st: HDF5Group) throws -> BestEvaluation? {
        if st.hasAttribute("best_map"), let mAP = try st.attribute("best_map", as: Double.self).first {
            let step = st.hasAttribute("best_step") ? try st.attribute("best_step", as: Int64.self).first : nil
            return BestEvaluation(mAP: mAP, step: step)
        }
        struct Legacy: Decodable { var best_map: Double? }
        guard st.hasAttribute("json"),
              let legacy = try? JSONDecoder().decode(Legacy.self, from: Data(try st.stringAttribute("json").utf8)),
              let mAP = legacy.best_map else { return nil }
        return BestEvaluation(mAP: mAP, step: nil)
    }

    /// Loads only `/model` and `/buffers` (enough for inference; files written by
    /// other tools such as h5py qualify), or every tensor of a safetensors file
    /// (`mancs export`). Returns the `config` attribute (metadata) if present.
    @discardableResult
    public static func loadWeights(_ url: URL, parameters: ParameterStore, buffers: ParameterStore) throws -> String? {
        if isSafetensors(url.path) {
            let file = try readSafetensors(url)
            try loadWeights(safetensors: file, parameters: parameters, buffers: buffers)
            return file.metadata[ExportMetadata.config]
        }
        let file = try openWeights(url.path)
        defer { file.close() }
        let root = file.root
        try checkShapes(root, "model", parameters, url.path, strict: true)
        try checkShapes(root, "buffers", buffers, url.path, strict: false)
        try readTensors(root, "model", parameters) { t, data in parameters.load(t, from: data) }
        try readTensors(root, "buffers", buffers) { t, data in buffers.load(t, from: data) }
        return root.hasAttribute("config") ? try root.stringAttribute("config") : nil
    }

    // MARK: Opening

    /// Opens a file that must be a Mancs checkpoint of a version this code reads.
    static func openCheckpoint(_ path: String) throws -> HDF5File {
        let file = try HDF5File(openForReading: path)
        let root = file.root
        guard root.hasAttribute("format"), let format = try? root.stringAttribute("format") else {
            throw CheckpointError("\(path): not a Mancs checkpoint (no format attribute)")
        }
        guard format == formatName else { throw CheckpointError("\(path): not a Mancs checkpoint (format \"\(format)\")") }
        let version = try root.attribute("version", as: Int64.self).first ?? -1
        guard version == formatVersion else {
            throw CheckpointError("\(path): checkpoint version \(version) is not supported (this build reads \(formatVersion))")
        }
        return file
    }

    /// Opens a file with weights: a Mancs checkpoint, or any HDF5 file with /model (and /buffers).
    static func openWeights(_ path: String) throws -> HDF5File {
        let file = try HDF5File(openForReading: path)
        let root = file.root
        if root.hasAttribute("format") {
            file.close()
            return try openCheckpoint(path)
        }
        guard root.exists("model") else { throw CheckpointError("\(path): no /model group: not a Mancs weights file") }
        return file
    }

    // MARK: Tensors

    /// Checks that the group holds every tensor of the store with its shape; with
    /// `strict`, also that it holds nothing else. Names the first mismatch.
    static func checkShapes(_ root: HDF5Group, _ groupName: String, _ store: ParameterStore, _ path: String, strict: Bool) throws {
        if store.tensors.isEmpty && !root.exists(groupName) { return }
        guard root.exists(groupName) else { throw CheckpointError("\(path): missing group /\(groupName)") }
        let group = try root.group(groupName)
        let names = Set(try group.members())
        for t in store.tensors {
            guard names.contains(t.name) else {
                throw CheckpointError("\(path): /\(groupName)/\(t.name) is missing (another architecture?)")
            }
            let shape = try group.shape(t.name)
            guard shape == t.shape else {
                throw CheckpointError("\(path): /\(groupName)/\(t.name) has shape \(shape) in the file but \(t.shape) in the model (another architecture?)")
            }
        }
        if strict {
            // BatchNorm's num_batches_tracked (a PyTorch state_dict entry) is harmless.
            if let extra = names.sorted().first(where: { store.info($0) == nil && !$0.hasSuffix("num_batches_tracked") }) {
                throw CheckpointError("\(path): /\(groupName)/\(extra) is not a tensor of this model (another architecture?)")
            }
        }
    }

    static func readTensors(_ root: HDF5Group, _ groupName: String, _ store: ParameterStore,
                            _ apply: (TensorInfo, [Float]) -> Void) throws {
        guard !store.tensors.isEmpty else { return }
        let group = try root.group(groupName)
        for t in store.tensors { apply(t, try group.read(t.name, as: Float.self).values) }
    }

    /// A tensor of a flat buffer laid out like the parameter store, in file layout.
    static func fileLayout(_ t: TensorInfo, _ buffer: UnsafeMutableBufferPointer<Float>) -> [Float] {
        let src = UnsafePointer(buffer.baseAddress! + t.offset)
        guard t.isConvWeight else { return Array(UnsafeBufferPointer(start: src, count: t.count)) }
        var out = [Float](repeating: 0, count: t.count)
        out.withUnsafeMutableBufferPointer {
            convWeightOHWIToOIHW(src, $0.baseAddress!, out: t.shape[0], in: t.shape[1], kernel: t.shape[2])
        }
        return out
    }

    /// Stores file-layout values of a tensor into a flat buffer laid out like the parameter store.
    static func internalLayout(_ t: TensorInfo, _ data: [Float], _ buffer: UnsafeMutableBufferPointer<Float>) {
        let dst = buffer.baseAddress! + t.offset
        data.withUnsafeBufferPointer { src in
            if t.isConvWeight {
                convWeightOIHWToOHWI(src.baseAddress!, dst, out: t.shape[0], in: t.shape[1], kernel: t.shape[2])
            } else {
                dst.update(from: src.baseAddress!, count: t.count)
            }
        }
    }

    static func requireFinite(_ buffer: UnsafeMutableBufferPointer<Float>, _ store: ParameterStore,
                              _ what: String, _ step: Int64) throws {
        for t in store.tensors {
            let p = buffer.baseAddress! + t.offset
            for i in 0..<t.count where !p[i].isFinite {
                throw CheckpointError("refusing to save the checkpoint of step \(step): \(what) \(t.name) "
                                      + "has a non-finite value (\(p[i])) at index \(i)")
            }
        }
    }
}
