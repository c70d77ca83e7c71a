import Foundation
import MancsModel
import Testing
import TestSupport

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
}
