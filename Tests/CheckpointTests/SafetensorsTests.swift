import Checkpoint
import Foundation
import MancsModel
import Testing
import TestSupport
import WeightsFiles

@Suite struct SafetensorsTests {
    /// The network's backbone tensors under torchvision names (no prefix), as an
    /// ImageNet checkpoint would hold them.
    static func torchvisionTensors(_ net: MancsNetwork) -> [(name: String, shape: [Int], values: [Float])] {
        (net.parameters.tensors.map { (net.parameters, $0) } + net.buffers.tensors.map { (net.buffers, $0) })
            .filter { $0.1.name.hasPrefix("backbone.") }
            .map { (String($0.1.name.dropFirst("backbone.".count)), $0.1.shape, $0.0.export($0.1)) }
    }

    @Test func torchvisionNamesLoadIntoTheBackbone() throws {
        let source = try MancsNetwork(config: tinyConfig(), maxBatch: 2, seed: 1)
        // Make the running stats distinguishable from the initial 0 / 1.
        for i in source.buffers.values.indices { source.buffers.values[i] = Float(i % 7) * 0.1 + 0.5 }
        var tensors = Self.torchvisionTensors(source)
        let dropped = tensors.removeLast()  // layer4's last BN running_var: reported missing
        tensors.append(("fc.weight", [3, 4], [Float](repeating: 1, count: 12)))
        tensors.append(("bn1.num_batches_tracked", [], [0]))
        tensors.append(("layer9.0.conv1.weight", [2], [1, 2]))
        let url = SharedFiles.temporaryDirectory().appendingPathComponent("resnet.safetensors")
        try SafetensorsFile.write(tensors, to: url)

        let target = try MancsNetwork(config: tinyConfig(), maxBatch: 2, seed: 2)
        let headBefore = target.parameters.export(target.parameters.info("heads.rank.fc.weight")!)
        let report = try target.loadPretrained(safetensors: url)
        #expect(report.unexpected == ["layer9.0.conv1.weight"])
        #expect(Set(report.ignored) == ["fc.weight", "bn1.num_batches_tracked"])
        #expect(report.missing.contains("backbone." + dropped.name))
        #expect(report.missing.contains("heads.rank.fc.weight") && report.missing.contains("attention.layer2.conv1.weight"))
        #expect(report.loaded.count == tensors.count - 3)
        for t in target.parameters.tensors where t.name.hasPrefix("backbone.") {
            #expect(target.parameters.export(t) == source.parameters.export(source.parameters.info(t.name)!), "\(t.name)")
        }
        let mean = target.buffers.info("backbone.layer1.0.bn2.running_mean")!
        #expect(target.buffers.export(mean) == source.buffers.export(mean))
        #expect(target.parameters.export(target.parameters.info("heads.rank.fc.weight")!) == headBefore)
    }

    @Test func prefixedNamesAndHalfPrecisionLoad() throws {
        let source = try MancsNetwork(config: tinyConfig(), maxBatch: 2, seed: 4)
        let all = source.parameters.tensors.map { ($0.name, $0.shape, source.parameters.export($0)) }
        for dtype in [SafetensorsDType.f16, .bf16] {
            let url = SharedFiles.temporaryDirectory().appendingPathComponent("mancs.safetensors")
            try SafetensorsFile.write(all, to: url, dtype: dtype)
            let target = try MancsNetwork(config: tinyConfig(), maxBatch: 2, seed: 5)
            let report = try target.loadPretrained(safetensors: url)
            #expect(report.unexpected.isEmpty && report.loaded.count == all.count)
            #expect(report.missing == target.buffers.tensors.map(\.name))
            let tol: Float = dtype == .f16 ? 1e-3 : 8e-3  // relative precision of the format
            for t in target.parameters.tensors {
                let a = target.parameters.export(t), b = source.parameters.export(source.parameters.info(t.name)!)
                #expect(zip(a, b).allSatisfy { abs($0 - $1) <= tol * max(abs($1), 1e-2) }, "\(dtype) \(t.name)")
            }
        }
    }

    @Test func shapeMismatchThrowsNamingTensorAndShapes() throws {
        let net = try MancsNetwork(config: tinyConfig(), maxBatch: 2)
        let url = SharedFiles.temporaryDirectory().appendingPathComponent("bad.safetensors")
        try SafetensorsFile.write([("conv1.weight", [4, 3, 3, 3], [Float](repeating: 0, count: 108))], to: url)
        let before = Array(net.parameters.values)
        #expect { try net.loadPretrained(safetensors: url) } throws: { e in
            let m = "\(e)"
            return m.contains("conv1.weight") && m.contains("[4, 3, 3, 3]") && m.contains("[4, 3, 7, 7]")
        }
        #expect(Array(net.parameters.values) == before)
    }

    @Test func hugeShapesDoNotWrapTheByteCount() throws {
        // 2^62 x 4 float32 wraps to 0 bytes in unchecked arithmetic and matched [0, 0].
        let dir = SharedFiles.temporaryDirectory()
        let json = Array(#"{"conv1.weight": {"dtype": "F32", "shape": [4611686018427387904, 4], "data_offsets": [0, 0]}}"#.utf8)
        let url = dir.appendingPathComponent("huge.safetensors")
        try Data(withUnsafeBytes(of: UInt64(json.count).littleEndian) { Array($0) } + json).write(to: url)
        let error = #expect(throws: SafetensorsError.self) { _ = try SafetensorsFile(contentsOf: url) }
        #expect(error?.description.contains("overflows") == true, "\(String(describing: error))")
    }

    @Test func malformedFilesThrow() throws {
        let net = try MancsNetwork(config: tinyConfig(), maxBatch: 2)
        let dir = SharedFiles.temporaryDirectory()
        func file(_ bytes: [UInt8]) throws -> URL {
            let url = dir.appendingPathComponent(UUID().uuidString)
            try Data(bytes).write(to: url)
            return url
        }
        func header(_ json: String, payload: Int = 0) -> [UInt8] {
            let h = Array(json.utf8)
            return withUnsafeBytes(of: UInt64(h.count).littleEndian) { Array($0) } + h + [UInt8](repeating: 0, count: payload)
        }
        let cases: [[UInt8]] = [
            [1, 2, 3],                                                   // shorter than the length field
            [0xFF, 0, 0, 0, 0, 0, 0, 0, 0x7B],                         // header length beyond the file
            header("{not json"),
            header("[1, 2]"),
            header(#"{"conv1.weight": {"dtype": "F32", "shape": [2], "data_offsets": [0, 16]}}"#, payload: 8),
            header(#"{"conv1.weight": {"dtype": "F32", "shape": [2], "data_offsets": [0, 4]}}"#, payload: 8),
            header(#"{"conv1.weight": {"dtype": "F32"}}"#),
        ]
        for bytes in cases {
            let url = try file(bytes)
            #expect(throws: SafetensorsError.self) { try net.loadPretrained(safetensors: url) }
        }
        #expect(throws: SafetensorsError.self) { try net.loadPretrained(safetensors: dir.appendingPathComponent("none")) }
        // An unsupported dtype on a known tensor is an error too, before anything changes.
        let i64 = try file(header(#"{"bn1.weight": {"dtype": "I64", "shape": [4], "data_offsets": [0, 32]}}"#, payload: 32))
        #expect(throws: SafetensorsError.self) { try net.loadPretrained(safetensors: i64) }
    }

    @Test func headerEntriesAreValidatedExactly() throws {
        let dir = SharedFiles.temporaryDirectory()
        func parse(_ json: String, payload: Int) -> String? {
            let h = Array(json.utf8)
            let bytes = withUnsafeBytes(of: UInt64(h.count).littleEndian) { Array($0) } + h + [UInt8](repeating: 0, count: payload)
            let url = dir.appendingPathComponent(UUID().uuidString)
            try? Data(bytes).write(to: url)
            do { _ = try SafetensorsFile(contentsOf: url); return nil } catch { return "\(error)" }
        }
        // Fractional and negative dims, a metadata value that is not a string,
        // overlapping tensors, too many dims, a wrong size for a non-float dtype.
        #expect(parse(#"{"a": {"dtype": "F32", "shape": [2.5], "data_offsets": [0, 8]}}"#, payload: 8)?.contains("integers") == true)
        #expect(parse(#"{"a": {"dtype": "F32", "shape": [-2], "data_offsets": [0, 8]}}"#, payload: 8)?.contains("non-negative") == true)
        #expect(parse(#"{"__metadata__": {"k": 1}}"#, payload: 0)?.contains("__metadata__") == true)
        #expect(parse(#"{"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}, "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}"#,
                      payload: 12)?.contains("overlap") == true)
        #expect(parse(#"{"a": {"dtype": "U8", "shape": [1,1,1,1,1,1,1,1,1], "data_offsets": [0, 1]}}"#, payload: 1) != nil)
        #expect(parse(#"{"a": {"dtype": "I64", "shape": [2], "data_offsets": [0, 8]}}"#, payload: 8)?.contains("needs 16 bytes") == true)
        // A FIFO is refused without being opened (opening it would block).
        let fifo = dir.appendingPathComponent("fifo.safetensors")
        #expect(mkfifo(fifo.path, 0o600) == 0)
        #expect(throws: SafetensorsError.self) { _ = try SafetensorsFile(contentsOf: fifo) }
        #expect(!Checkpoint.isSafetensors(fifo.path))
        // A valid file: metadata and an I64 scalar are read.
        #expect(parse(#"{"__metadata__": {"k": "v"}, "n": {"dtype": "I64", "shape": [], "data_offsets": [0, 8]}}"#, payload: 8) == nil)
    }

    /// A file written by the reference implementation (Python `safetensors.torch.save_file`,
    /// the fuzz seed Tests/fuzz/corpus/safetensors/metadata.safetensors): metadata,
    /// F32, F64, BF16 and an I64 scalar, as PyTorch wrote them.
    @Test func readsTheReferenceWritersFile() throws {
        let url = SharedFiles.packageRoot.appendingPathComponent("Tests/fuzz/corpus/safetensors/metadata.safetensors")
        let file = try SafetensorsFile(contentsOf: url)
        #expect(file.metadata == ["format": "mancs-weights", "config": #"{"base_width": 4, "blocks": [1, 1, 1, 1]}"#, "bn_eps": "1e-05"])
        #expect(try file.floats(#require(file.entry("backbone.bn1.weight"))) == [1, -2.5])
        let fc = try #require(file.entry("heads.rank.fc.weight"))
        let fcValues = try file.floats(fc)
        #expect(fc.dtype == "F64" && fc.shape == [2, 3] && fcValues == [0, 1, 2, 3, 4, 5])
        #expect(try file.floats(#require(file.entry("x.bf16"))) == [0.5, 3])
        let counter = try #require(file.entry("backbone.bn1.num_batches_tracked"))
        #expect(counter.dtype == "I64" && counter.shape == [] && counter.elementCount == 1 && counter.byteRange.count == 8)
        #expect(throws: SafetensorsError.self) { try file.floats(counter) }
    }

    // MARK: Export (mancs export) and strict reading (inference)

    @Test func exportRoundTripsBitIdenticallyWithTheArchitecture() throws {
        let a = TinyModel()
        let run = SharedFiles.temporaryDirectory("export")
        let ckpt = try Checkpoint.save(parameters: a.params, buffers: a.buffers, adam: a.adam, state: sampleState(step: 42), runDirectory: run)
        let out = run.appendingPathComponent("model.safetensors")
        let summary = try Checkpoint.exportSafetensors(from: ckpt, to: out)
        #expect(Checkpoint.isSafetensors(out.path) && !Checkpoint.isSafetensors(ckpt.path))
        #expect(try FileManager.default.contentsOfDirectory(atPath: run.path).filter { $0.contains("tmp") }.isEmpty)

        // Every parameter and buffer, bit-identical, through the strict loader.
        let b = TinyModel(fillSeed: nil)
        let config = try Checkpoint.loadWeights(out, parameters: b.params, buffers: b.buffers)
        #expect(bits(b.params.values) == bits(a.params.values) && bits(b.buffers.values) == bits(a.buffers.values))
        #expect(try Checkpoint.inferConfig(out) == Checkpoint.inferConfig(ckpt))
        #expect(summary.globalStep == 42 && summary.parameterCount == a.params.count && summary.bufferCount == a.buffers.count)

        // The metadata holds the reference Config's keyword arguments; each BN has
        // num_batches_tracked (the step) so PyTorch's strict load_state_dict accepts the file.
        let file = try SafetensorsFile(contentsOf: out)
        #expect(file.metadata["format"] == "mancs-weights" && file.metadata["global_step"] == "42")
        let json = try #require(config.flatMap { try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] })
        #expect(Set(json.keys) == ["base_width", "blocks", "last_stride", "num_classes", "attention_stages", "reduction",
                                   "embedding_dim", "cls_hidden", "height", "width"])
        #expect(json["last_stride"] as? Int == 1 && json["height"] as? Int == 128 && json["blocks"] as? [Int] == [2, 1, 1, 1])
        let counters = file.entries.filter { $0.name.hasSuffix(".num_batches_tracked") }
        #expect(counters.count == a.buffers.tensors.count / 2 && counters.allSatisfy { $0.dtype == "I64" && $0.shape == [] })
        #expect(file.entries.count == a.params.tensors.count + a.buffers.tensors.count + counters.count)
        let conv = try #require(file.entry("backbone.conv1.weight"))
        let convValues = try file.floats(conv)
        #expect(conv.shape == [4, 3, 7, 7] && convValues == a.params.export(a.params.info(conv.name)!))
    }

    @Test func exportFailuresLeaveNothingBehind() throws {
        let a = TinyModel()
        let run = SharedFiles.temporaryDirectory("export-fail")
        let ckpt = try Checkpoint.save(parameters: a.params, buffers: a.buffers, adam: a.adam, state: sampleState(step: 3), runDirectory: run)
        #expect(throws: CheckpointError.self) {
            try Checkpoint.exportSafetensors(from: ckpt, to: run.appendingPathComponent("no/such/dir/m.safetensors"))
        }
        let out = run.appendingPathComponent("m.safetensors")
        try Data("keep me".utf8).write(to: out)
        let garbage = run.appendingPathComponent("garbage.h5")
        try Data(repeating: 7, count: 100).write(to: garbage)
        #expect(throws: (any Error).self) { try Checkpoint.exportSafetensors(from: garbage, to: out) }
        #expect(try Data(contentsOf: out) == Data("keep me".utf8))
        #expect(throws: CheckpointError.self) { try Checkpoint.exportSafetensors(from: run.appendingPathComponent("none.h5"), to: out) }
        #expect(try FileManager.default.contentsOfDirectory(atPath: run.path).filter { $0.contains("tmp") }.isEmpty)
    }

    @Test func strictLoadingRefusesMissingExtraAndMisshapenTensors() throws {
        let a = TinyModel()
        let dir = SharedFiles.temporaryDirectory("strict")
        let all = (a.params.tensors.map { ($0.name, $0.shape, a.params.export($0)) }
                   + a.buffers.tensors.map { ($0.name, $0.shape, a.buffers.export($0)) })
        func attempt(_ tensors: [(String, [Int], [Float])]) throws -> String? {
            let url = dir.appendingPathComponent(UUID().uuidString + ".safetensors")
            try SafetensorsFile.write(tensors.map { (name: $0.0, shape: $0.1, values: $0.2) }, to: url)
            let b = TinyModel(fillSeed: nil)
            let before = bits(b.params.values)
            do { try Checkpoint.loadWeights(url, parameters: b.params, buffers: b.buffers); return nil } catch {
                #expect(bits(b.params.values) == before, "nothing changes on a refusal")
                return "\(error)"
            }
        }
        #expect(try attempt(all) == nil)
        #expect(try attempt(Array(all.dropLast()))?.contains("\(all.last!.0) is missing") == true)
        #expect(try attempt(all + [("layer9.weight", [1], [0])])?.contains("layer9.weight is not a tensor of this model") == true)
        var misshapen = all
        misshapen[0] = (all[0].0, [all[0].2.count], all[0].2)
        #expect(try attempt(misshapen)?.contains("has shape") == true)
    }
}
