import Checkpoint
import CTurboJPEG
import FeatureExtraction
import Foundation
import HDF5Kit
import MancsModel
import ReIDData
import ReIDEval
import TestSupport

// MARK: - A tiny dataset and a tiny model for the extraction tests

/// The tiny dataset written into a fresh temporary folder, which goes with the object.
final class TinyDatasetFolder {
    let root: URL
    let dataset: ReIDDataset
    var dataPath: String { root.appendingPathComponent("data").path }

    init(_ label: String) throws {
        root = SharedFiles.temporaryDirectory(label)
        TinyReID.writeDataset(root.appendingPathComponent("data"))
        dataset = try loadDataset(name: "market1501", root: root.appendingPathComponent("data").path)
    }

    deinit { try? FileManager.default.removeItem(at: root) }
}

enum TinyReID {
    /// Base width 8, blocks 1,1,1,1, 64x32 input, 4 classes: E = 256.
    static var config: MancsConfig {
        var c = MancsConfig()
        c.baseWidth = 8; c.blocks = [1, 1, 1, 1]; c.height = 64; c.width = 32; c.numClasses = 4
        return c
    }

    /// A smooth colour pattern that depends on the identity (and a little on the picture).
    static func pixels(width: Int, height: Int, pid: Int, shot: Int) -> [UInt8] {
        var p = [UInt8](repeating: 0, count: width * height * 3)
        for y in 0..<height {
            for x in 0..<width {
                let i = (y * width + x) * 3
                p[i] = UInt8((x * 200 / width + pid * 53 + shot * 7) % 256)
                p[i + 1] = UInt8((y * 255 / height + pid * 97) % 256)
                p[i + 2] = UInt8(((x + y) * 3 + pid * 31 + shot * 11) % 256)
            }
        }
        return p
    }

    static func writeJPEG(_ path: String, pid: Int, shot: Int, width: Int = 32, height: Int = 72) {
        let handle = tjInitCompress()!
        defer { tjDestroy(handle) }
        var buffer: UnsafeMutablePointer<UInt8>? = nil
        var size: UInt = 0
        let px = pixels(width: width, height: height, pid: pid, shot: shot)
        let r = px.withUnsafeBufferPointer {
            tjCompress2(handle, $0.baseAddress, Int32(width), 0, Int32(height), Int32(TJPF_RGB.rawValue), &buffer, &size,
                        Int32(TJSAMP_420.rawValue), 92, 0)
        }
        precondition(r == 0, "tjCompress2 failed")
        defer { tjFree(buffer) }
        try! Data(bytes: buffer!, count: Int(size)).write(to: URL(fileURLWithPath: path))
    }

    /// A Market-1501 layout: 4 training ids, 3 test ids (query on camera 1,
    /// gallery on cameras 1 and 2, one distractor), gt_bbox for multi-query.
    static func writeDataset(_ root: URL) {
        let fm = FileManager.default
        for d in ["bounding_box_train", "query", "bounding_box_test", "gt_bbox"] {
            try! fm.createDirectory(at: root.appendingPathComponent(d), withIntermediateDirectories: true)
        }
        func put(_ dir: String, _ pid: Int, cam: Int, shot: Int) {
            let name = String(format: "%04d_c%ds1_%06d_00.jpg", pid, cam, shot)
            writeJPEG(root.appendingPathComponent(dir).appendingPathComponent(name).path, pid: pid, shot: shot)
        }
        for pid in 1...4 { for shot in 0..<4 { put("bounding_box_train", pid, cam: 1 + shot % 2, shot: shot) } }
        for pid in 11...13 {
            put("query", pid, cam: 1, shot: 0)
            put("query", pid, cam: 2, shot: 5)
            put("bounding_box_test", pid, cam: 1, shot: 1)
            put("bounding_box_test", pid, cam: 2, shot: 2)
            put("bounding_box_test", pid, cam: 2, shot: 3)
            put("gt_bbox", pid, cam: 1, shot: 4)
            put("gt_bbox", pid, cam: 1, shot: 6)
        }
        put("bounding_box_test", 0, cam: 1, shot: 9)
    }

    /// A tiny network with non-trivial BatchNorm running statistics.
    static func network(seed: UInt64, maxBatch: Int = 8) throws -> MancsNetwork {
        let net = try MancsNetwork(config: config, maxBatch: maxBatch, seed: seed)
        var rng = SplitMix64(seed: seed &+ 99)
        for t in net.buffers.tensors {
            let p = net.buffers.pointer(t.name)
            let isVar = t.name.hasSuffix("running_var")
            for i in 0..<t.count { p[i] = isVar ? 0.5 + abs(rng.nextSigned()) : 0.1 * rng.nextSigned() }
        }
        return net
    }

    /// A weights-only file as h5py would write it: /model and /buffers, no attributes.
    static func writeWeightsOnly(_ net: MancsNetwork, to path: String, tamper: String? = nil) throws {
        let file = try HDF5File(creating: path)
        defer { file.close() }
        let model = try file.root.createGroup("model")
        for t in net.parameters.tensors {
            if t.name == tamper {
                try model.write(t.name, [Float](repeating: 0, count: t.count + t.shape.last!), shape: t.shape.dropLast() + [t.shape.last! + 1])
            } else {
                try model.write(t.name, net.parameters.export(t), shape: t.shape)
            }
        }
        try net.buffers.write(to: try file.root.createGroup("buffers"))
    }

    /// A full Mancs checkpoint whose config names the 64x32 input.
    static func writeCheckpoint(_ net: MancsNetwork, to path: String) throws {
        let n = net.parameters.count
        let m = UnsafeMutableBufferPointer<Float>.allocate(capacity: n), v = UnsafeMutableBufferPointer<Float>.allocate(capacity: n)
        m.initialize(repeating: 0); v.initialize(repeating: 0)
        defer { m.deallocate(); v.deallocate() }
        let model = try JSONSerialization.jsonObject(with: JSONEncoder().encode(net.config))
        let config = String(decoding: try JSONSerialization.data(withJSONObject: ["model": model]), as: UTF8.self)
        try Checkpoint.write(to: path, parameters: net.parameters, buffers: net.buffers,
                             adam: AdamMoments(m: m, v: v, step: 0), state: TrainingState(config: config))
    }
}
