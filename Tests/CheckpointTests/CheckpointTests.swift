import Checkpoint
import Foundation
import HDF5Kit
import MancsModel
import CHDF5
import Testing
import TestSupport

// MARK: A tiny Mancs-shaped model (names and shapes as in docs/method.md §1)

/// Parameter and buffer shapes of a small Mancs network, torchvision-named.
func tinyShapes(width w: Int = 4, blocks: [Int] = [2, 1, 1, 1], classes: Int = 5, reduction: Int = 4)
    -> (params: [(name: String, shape: [Int])], buffers: [(name: String, shape: [Int])]) {
    var p: [(name: String, shape: [Int])] = [], b: [(name: String, shape: [Int])] = []
    func bn(_ name: String, _ c: Int) {
        p += [("\(name).weight", [c]), ("\(name).bias", [c])]
        b += [("\(name).running_mean", [c]), ("\(name).running_var", [c])]
    }
    p.append(("backbone.conv1.weight", [w, 3, 7, 7])); bn("backbone.bn1", w)
    var inC = w
    for s in 1...4 {
        let planes = w << (s - 1), out = 4 * planes
        for i in 0..<blocks[s - 1] {
            let pre = "backbone.layer\(s).\(i)"
            p.append(("\(pre).conv1.weight", [planes, inC, 1, 1])); bn("\(pre).bn1", planes)
            p.append(("\(pre).conv2.weight", [planes, planes, 3, 3])); bn("\(pre).bn2", planes)
            p.append(("\(pre).conv3.weight", [out, planes, 1, 1])); bn("\(pre).bn3", out)
            if i == 0 { p.append(("\(pre).downsample.0.weight", [out, inC, 1, 1])); bn("\(pre).downsample.1", out) }
            inC = out
        }
    }
    let d = 32 * w
    p.append(("backbone.layer4.\(blocks[3] - 1).prelu.weight", [d]))
    var att = 0
    for s in 2...4 {
        let c = 4 * (w << (s - 1)); att += c
        p += [("attention.layer\(s).conv1.weight", [c / reduction, c, 1, 1]), ("attention.layer\(s).conv1.bias", [c / reduction]),
              ("attention.layer\(s).conv2.weight", [c, c / reduction, 1, 1]), ("attention.layer\(s).conv2.bias", [c])]
    }
    p += [("heads.rank.fc.weight", [d, d]), ("heads.rank.fc.bias", [d]),
          ("heads.cls.fc.weight", [d, d]), ("heads.cls.fc.bias", [d])]
    bn("heads.cls.bn", d)
    p += [("heads.cls.classifier.weight", [classes, d]), ("heads.cls.classifier.bias", [classes]),
          ("heads.att.classifier.weight", [classes, att]), ("heads.att.classifier.bias", [classes])]
    return (p, b)
}

/// Stores, Adam moments and state filled with deterministic values.
final class TinyModel {
    let params: ParameterStore
    let buffers: ParameterStore
    let m: UnsafeMutableBufferPointer<Float>
    let v: UnsafeMutableBufferPointer<Float>
    var adam: AdamMoments

    init(classes: Int = 5, fillSeed: UInt64? = 1) {
        let s = tinyShapes(classes: classes)
        params = ParameterStore(shapes: s.params, withGradients: true)
        buffers = ParameterStore(shapes: s.buffers, withGradients: false)
        m = .allocate(capacity: params.count); m.initialize(repeating: 0)
        v = .allocate(capacity: params.count); v.initialize(repeating: 0)
        adam = AdamMoments(m: m, v: v, step: 0)
        if let seed = fillSeed {
            var rng = SplitMix64(seed: seed)
            for i in params.values.indices { params.values[i] = rng.nextSigned() }
            for i in buffers.values.indices { buffers.values[i] = rng.nextSigned() + 1.5 }
            for i in m.indices { m[i] = rng.nextSigned() * 1e-3; v[i] = abs(rng.nextSigned()) * 1e-6 }
            adam.step = 1234
        }
    }
    deinit { m.deallocate(); v.deallocate() }
}

func sampleState(step: Int64) -> TrainingState {
    TrainingState(globalStep: step, epoch: 7, batchInEpoch: 11, worldSize: 2, seed: 0xDEAD_BEEF_CAFE_F00D,
                  config: #"{"model":{"lastStride":1,"height":128,"width":64}}"#, best: BestEvaluation(mAP: 0.5, step: 40))
}

func bits(_ b: UnsafeMutableBufferPointer<Float>) -> [UInt32] { b.map(\.bitPattern) }

@Suite(.serialized) struct CheckpointTests {
    // MARK: Round trip

    @Test func roundTripIsBitIdentical() throws {
        let run = SharedFiles.temporaryDirectory("ckpt")
        let a = TinyModel()
        let url = try Checkpoint.save(parameters: a.params, buffers: a.buffers, adam: a.adam, state: sampleState(step: 42), runDirectory: run)
        #expect(url.lastPathComponent == "step-00000042.h5")
        #expect(url.deletingLastPathComponent().lastPathComponent == "checkpoints")

        let b = TinyModel(fillSeed: nil)
        let loaded = try Checkpoint.load(url, parameters: b.params, buffers: b.buffers, adam: b.adam)
        #expect(bits(b.params.values) == bits(a.params.values))
        #expect(bits(b.buffers.values) == bits(a.buffers.values))
        #expect(bits(b.m) == bits(a.m))
        #expect(bits(b.v) == bits(a.v))
        #expect(loaded.adamStep == 1234)
        #expect(loaded.state == sampleState(step: 42))
    }

    @Test func theBestEvaluationOfAnOlderCheckpointIsReadFromItsJSON() throws {
        let run = SharedFiles.temporaryDirectory("ckpt")
        let a = TinyModel()
        var state = sampleState(step: 8)
        state.best = nil
        let url = try Checkpoint.save(parameters: a.params, buffers: a.buffers, adam: a.adam, state: state, runDirectory: run)
        let b = TinyModel(fillSeed: nil)
        #expect(try Checkpoint.load(url, parameters: b.params, buffers: b.buffers, adam: b.adam).state.best == nil)
        // Files written before best_map/best_step kept the mAP as JSON text in /state's `json` attribute.
        do {
            let file = try HDF5File(openForReading: url.path, writable: true)
            defer { file.close() }
            try file.root.group("state").setAttribute("json", string: #"{"best_map": 0.42}"#)
        }
        let loaded = try Checkpoint.load(url, parameters: b.params, buffers: b.buffers, adam: b.adam)
        #expect(loaded.state.best == BestEvaluation(mAP: 0.42, step: nil))
    }

    // MARK: Layout in the file

    @Test func convWeightsAreOIHWInTheFile() throws {
        let run = SharedFiles.temporaryDirectory("ckpt")
        let a = TinyModel()
        let t = a.params.info("backbone.layer1.0.conv2.weight")!  // [4, 4, 3, 3]
        let (o, i, k) = (t.shape[0], t.shape[1], t.shape[2])
        // Internal OHWI: element (o, y, x, i); its value encodes its OIHW coordinates.
        func code(_ o: Int, _ i: Int, _ y: Int, _ x: Int) -> Float { Float(o * 1000 + i * 100 + y * 10 + x) }
        let p = a.params.pointer(t.name)
        for oo in 0..<o { for y in 0..<k { for x in 0..<k { for ii in 0..<i {
            p[((oo * k + y) * k + x) * i + ii] = code(oo, ii, y, x)
            a.m[t.offset + ((oo * k + y) * k + x) * i + ii] = -code(oo, ii, y, x)
        } } } }
        let url = try Checkpoint.save(parameters: a.params, buffers: a.buffers, adam: a.adam, state: sampleState(step: 1), runDirectory: run)
        let file = try HDF5File(openForReading: url.path)
        let (w, shape) = try file.root.read("model/\(t.name)", as: Float.self)
        #expect(shape == [4, 4, 3, 3])
        // PyTorch flat index of (o=2, i=3, y=1, x=0) is ((2*4+3)*3+1)*3+0 = 102.
        #expect(w[102] == 2310)
        #expect(w == (0..<(o * i * k * k)).map { n in code(n / (i * k * k), (n / (k * k)) % i, (n / k) % k, n % k) })
        let mFile = try file.root.read("optimizer/exp_avg/\(t.name)", as: Float.self).values
        #expect(mFile[102] == -2310)
        #expect(try file.root.stringAttribute("format") == "mancs-checkpoint")
        #expect(try file.root.attribute("version", as: Int64.self) == [1])
        #expect(try file.root.attribute("global_step", as: Int64.self) == [1])
    }

    // MARK: Damage

    @Test func truncatedNewestIsSkipped() throws {
        let run = SharedFiles.temporaryDirectory("ckpt")
        let a = TinyModel()
        for step in Int64(1)...3 {
            try Checkpoint.save(parameters: a.params, buffers: a.buffers, adam: a.adam, state: sampleState(step: step), runDirectory: run)
        }
        let dir = Checkpoint.directory(runDirectory: run)
        let newest = dir.appendingPathComponent("step-00000003.h5")
        let size = try FileManager.default.attributesOfItem(atPath: newest.path)[.size] as! Int
        let h = try FileHandle(forWritingTo: newest)
        try h.truncate(atOffset: UInt64(size / 2))
        try h.close()

        let (url, warnings) = Checkpoint.latestValidCheckpoint(in: dir)
        #expect(url?.lastPathComponent == "step-00000002.h5")
        #expect(warnings.count == 1)
        #expect(warnings.first?.contains("step-00000003.h5") == true)
        #expect(Checkpoint.latestValidCheckpoint(in: run.appendingPathComponent("nothing-here")).url == nil)
    }

    @Test func flippedByteInDataIsDetected() throws {
        let run = SharedFiles.temporaryDirectory("ckpt")
        let a = TinyModel()
        // A recognisable value fills one tensor so its bytes can be found in the file.
        let t = a.params.info("heads.cls.fc.weight")!
        for j in 0..<t.count { a.params.values[t.offset + j] = 1234.5678 }
        let url = try Checkpoint.save(parameters: a.params, buffers: a.buffers, adam: a.adam, state: sampleState(step: 5), runDirectory: run)
        _ = try Checkpoint.verify(url)

        var bytes = [UInt8](try Data(contentsOf: url))
        let pattern = withUnsafeBytes(of: Float(1234.5678).bitPattern.littleEndian) { [UInt8]($0) }
        let start = try #require((0..<(bytes.count - 4)).first { Array(bytes[$0..<($0 + 4)]) == pattern })
        let target = start + t.count * 2  // the middle of that tensor's data
        bytes[target] ^= 0x10
        try Data(bytes).write(to: url)

        #expect(throws: CheckpointError.self) { try Checkpoint.verify(url) }
        let b = TinyModel(fillSeed: nil)
        #expect(throws: (any Error).self) { try Checkpoint.load(url, parameters: b.params, buffers: b.buffers, adam: b.adam) }
        #expect(Checkpoint.latestValidCheckpoint(in: Checkpoint.directory(runDirectory: run)).url == nil)
    }

    // MARK: Retention and refusal

    @Test func retentionKeepsTheLastThree() throws {
        let run = SharedFiles.temporaryDirectory("ckpt")
        try saveSteps([10, 20, 30, 40, 50], run, CheckpointRetention(keep: 3))
        #expect(stepsOnDisk(run) == [30, 40, 50])
    }

    func saveSteps(_ steps: [Int64], _ run: URL, _ retention: CheckpointRetention) throws {
        let a = TinyModel()
        for step in steps {
            try Checkpoint.save(parameters: a.params, buffers: a.buffers, adam: a.adam, state: sampleState(step: step),
                                runDirectory: run, retention: retention)
        }
    }

    func stepsOnDisk(_ run: URL) -> [Int64] {
        Checkpoint.checkpointFiles(in: Checkpoint.directory(runDirectory: run)).map(\.step)
    }

    @Test func aFreshRunInAnOldDirectoryKeepsWhatItWrites() throws {
        // Trained to step 8, then `--resume none --max-steps 2` in the same directory.
        let run = SharedFiles.temporaryDirectory("ckpt")
        try saveSteps([2, 4, 6, 8], run, CheckpointRetention(keep: 3))
        try saveSteps([2], run, CheckpointRetention(keep: 3, resumedFrom: 0))
        #expect(stepsOnDisk(run) == [2, 4, 6, 8])
    }

    @Test func resumingFromAnOlderFileKeepsTheNewerOnes() throws {
        // `--resume step-00000004.h5` while 6 and 8 exist: this run's 5, 6, 7 push out 4 only.
        let run = SharedFiles.temporaryDirectory("ckpt")
        try saveSteps([4, 6, 8], run, CheckpointRetention(keep: 3))
        try saveSteps([5, 6, 7], run, CheckpointRetention(keep: 3, resumedFrom: 4))
        #expect(stepsOnDisk(run) == [5, 6, 7, 8])
        // A later run resumed from 7 prunes its own sequence (5, 6, 7, 9, 10) to two;
        // the earlier run's 8, newer than 7, still stays.
        try saveSteps([9, 10], run, CheckpointRetention(keep: 2, resumedFrom: 7))
        #expect(stepsOnDisk(run) == [8, 9, 10])
    }

    @Test func everyNewerFileDamagedStillKeepsTheNewProgress() throws {
        // 100..300 unreadable: a requeued job starts from 0 and must keep step 50.
        let run = SharedFiles.temporaryDirectory("ckpt")
        try saveSteps([100, 200, 300], run, CheckpointRetention(keep: 3))
        for step in [100, 200, 300] {
            try Data("damaged".utf8).write(to: Checkpoint.directory(runDirectory: run).appendingPathComponent(Checkpoint.fileName(step: Int64(step))))
        }
        #expect(Checkpoint.latestValidCheckpoint(in: Checkpoint.directory(runDirectory: run)).url == nil)
        try saveSteps([50], run, CheckpointRetention(keep: 1, resumedFrom: 0))
        #expect(stepsOnDisk(run) == [50, 100, 200, 300])
        #expect(Checkpoint.latestValidCheckpoint(in: Checkpoint.directory(runDirectory: run)).url?.lastPathComponent == "step-00000050.h5")
    }

    @Test func refusesNonFiniteParameters() throws {
        let run = SharedFiles.temporaryDirectory("ckpt")
        let a = TinyModel()
        let good = try Checkpoint.save(parameters: a.params, buffers: a.buffers, adam: a.adam, state: sampleState(step: 7), runDirectory: run)
        let goodBytes = try Data(contentsOf: good)
        a.params.pointer("attention.layer3.conv2.bias")[2] = .nan
        let error = #expect(throws: CheckpointError.self) {
            try Checkpoint.save(parameters: a.params, buffers: a.buffers, adam: a.adam, state: sampleState(step: 7), runDirectory: run)
        }
        #expect(error?.message.contains("attention.layer3.conv2.bias") == true)
        // The good checkpoint of the same step is untouched; no temporary is left behind.
        #expect(try Data(contentsOf: good) == goodBytes)
        #expect(try FileManager.default.contentsOfDirectory(atPath: good.deletingLastPathComponent().path) == ["step-00000007.h5"])
    }

    // MARK: Another architecture

    @Test func mismatchedArchitectureNamesTheTensorAndShapes() throws {
        let run = SharedFiles.temporaryDirectory("ckpt")
        let a = TinyModel(classes: 5)
        let url = try Checkpoint.save(parameters: a.params, buffers: a.buffers, adam: a.adam, state: sampleState(step: 3), runDirectory: run)
        let b = TinyModel(classes: 9, fillSeed: nil)
        let error = #expect(throws: CheckpointError.self) {
            try Checkpoint.load(url, parameters: b.params, buffers: b.buffers, adam: b.adam)
        }
        let message = error?.message ?? ""
        #expect(message.contains("heads.cls.classifier.weight"))
        #expect(message.contains("[5, 128]") && message.contains("[9, 128]"))
        // Nothing was loaded: the stores are still zero.
        #expect(b.params.values.allSatisfy { $0 == 0 })
    }

    // MARK: Weights written by another tool

    @Test func weightsOnlyFileLoadsForInference() throws {
        let dir = SharedFiles.temporaryDirectory("ckpt")
        let path = dir.appendingPathComponent("h5py-style.h5").path
        let a = TinyModel()
        do {
            let f = try HDF5File(creating: path)
            for t in a.params.tensors { try f.root.write("model/\(t.name)", a.params.export(t), shape: t.shape) }
            for t in a.buffers.tensors { try f.root.write("buffers/\(t.name)", a.buffers.export(t), shape: t.shape) }
            try f.root.write("buffers/heads.cls.bn.num_batches_tracked", [Int64(100)], shape: [])
        }
        let url = URL(fileURLWithPath: path)
        let b = TinyModel(fillSeed: nil)
        let config = try Checkpoint.loadWeights(url, parameters: b.params, buffers: b.buffers)
        #expect(config == nil)
        #expect(bits(b.params.values) == bits(a.params.values))
        #expect(bits(b.buffers.values) == bits(a.buffers.values))
        // It cannot resume training, and says so.
        let error = #expect(throws: CheckpointError.self) { try Checkpoint.load(url, parameters: b.params, buffers: b.buffers, adam: b.adam) }
        #expect(error?.message.contains("weights only") == true)

        let inferred = try Checkpoint.inferConfig(url)
        #expect(inferred.baseWidth == 4)
        #expect(inferred.blocks == [2, 1, 1, 1])
        #expect(inferred.attentionStages == [2, 3, 4])
        #expect(inferred.reduction == 4)
        #expect(inferred.numClasses == 5)
        #expect(inferred.resolvedEmbeddingDim == 128)
        #expect(inferred.lastStride == 2)
        let summary = try Checkpoint.verify(url)
        #expect(summary.format == nil && summary.adamStep == nil)
        #expect(summary.parameterCount == a.params.count)
    }

    @Test func configAttributeOverridesWhatShapesCannotShow() throws {
        let run = SharedFiles.temporaryDirectory("ckpt")
        let a = TinyModel()
        let url = try Checkpoint.save(parameters: a.params, buffers: a.buffers, adam: a.adam, state: sampleState(step: 2), runDirectory: run)
        let c = try Checkpoint.inferConfig(url)
        #expect(c.lastStride == 1 && c.height == 128 && c.width == 64)
        #expect(c.baseWidth == 4 && c.numClasses == 5)
    }

    // MARK: What inspect reports

    @Test func verifySummarisesAGoodFileAndRejectsABadOne() throws {
        let run = SharedFiles.temporaryDirectory("ckpt")
        let a = TinyModel()
        let url = try Checkpoint.save(parameters: a.params, buffers: a.buffers, adam: a.adam, state: sampleState(step: 9), runDirectory: run)
        let s = try Checkpoint.verify(url)
        #expect(s.format == "mancs-checkpoint" && s.version == 1)
        #expect(s.globalStep == 9 && s.epoch == 7 && s.worldSize == 2 && s.seed == 0xDEAD_BEEF_CAFE_F00D)
        #expect(s.parameterCount == a.params.count && s.parameterTensors == a.params.tensors.count)
        #expect(s.bufferCount == a.buffers.count)
        #expect(s.adamStep == 1234 && s.hasState)
        // model + buffers + two moments + sampler + rng
        #expect(s.datasetsVerified == 3 * a.params.tensors.count + a.buffers.tensors.count + 2)

        let notHDF5 = run.appendingPathComponent("notes.h5")
        try Data("hello".utf8).write(to: notHDF5)
        #expect(throws: (any Error).self) { try Checkpoint.verify(notHDF5) }
        let otherHDF5 = run.appendingPathComponent("other.h5").path
        do { let f = try HDF5File(creating: otherHDF5); try f.root.setAttribute("format", string: "something-else") }
        let error = #expect(throws: CheckpointError.self) { try Checkpoint.verify(URL(fileURLWithPath: otherHDF5)) }
        #expect(error?.message.contains("not a Mancs checkpoint") == true)
    }

    // MARK: Hostile files (issue 15)

    /// Two good checkpoints, then `edit` applied to a copy saved as the newest.
    func runWithDamagedNewest(_ edit: (hid_t) -> Void) throws -> (dir: URL, newest: URL) {
        let run = SharedFiles.temporaryDirectory("ckpt")
        let a = TinyModel()
        for step: Int64 in [1, 2] {
            try Checkpoint.save(parameters: a.params, buffers: a.buffers, adam: a.adam, state: sampleState(step: step), runDirectory: run)
        }
        let dir = Checkpoint.directory(runDirectory: run)
        let newest = dir.appendingPathComponent("step-00000003.h5")
        try FileManager.default.copyItem(at: dir.appendingPathComponent("step-00000002.h5"), to: newest)
        HostileHDF5.edit(newest.path) { f in
            HostileHDF5.deleteAttribute(f, object: "/", "global_step")
            var three = Int64(3)
            let sp = H5Screate(H5S_SCALAR); defer { H5Sclose(sp) }
            let at = H5Acreate_by_name(f, "/", "global_step", mancs_h5t_native_int64(), sp, mancs_h5p_default(), mancs_h5p_default(), mancs_h5p_default())
            H5Awrite(at, mancs_h5t_native_int64(), &three); H5Aclose(at)
            edit(f)
        }
        return (dir, newest)
    }

    @Test func linkCycleIsRefusedAndResumeFallsBack() throws {
        let (dir, newest) = try runWithDamagedNewest { f in HostileHDF5.hardLink(f, "/", "/model/loop") }
        let error = #expect(throws: CheckpointError.self) { try Checkpoint.verify(newest) }
        #expect(error?.message.contains("cycle") == true, "\(String(describing: error))")
        let (url, warnings) = Checkpoint.latestValidCheckpoint(in: dir)
        #expect(url?.lastPathComponent == "step-00000002.h5")
        #expect(warnings.count == 1 && warnings[0].contains("step-00000003.h5"))
    }

    @Test func formatAttributeArrayIsRefused() throws {
        let (dir, newest) = try runWithDamagedNewest { f in
            HostileHDF5.deleteAttribute(f, object: "/", "format")
            HostileHDF5.stringAttribute(f, object: "/", "format", Array(repeating: "mancs-checkpoint", count: 64), dims: [64])
        }
        #expect(throws: CheckpointError.self) { try Checkpoint.verify(newest) }
        #expect(Checkpoint.latestValidCheckpoint(in: dir).url?.lastPathComponent == "step-00000002.h5")
    }

    @Test func architectureIsRecoveredFromTheReferenceFixtures() throws {
        // Weights-only files (no `config` string): the architecture comes from the
        // tensor shapes alone, and must be the one the fixture's /config records.
        for url in SharedFiles.fixtures {
            let c = try Checkpoint.inferConfig(url)
            let file = try HDF5File(openForReading: url.path)
            defer { file.close() }
            let g = try file.root.group("config")
            func ints(_ k: String) throws -> [Int] { try g.attribute(k, as: Int64.self).map { Int($0) } }
            let name = url.lastPathComponent
            #expect(c.baseWidth == (try ints("base_width"))[0], "\(name)")
            #expect(c.blocks == (try ints("blocks")), "\(name)")
            #expect(c.attentionStages == (try ints("attention_stages")), "\(name)")
            #expect(c.reduction == (try ints("reduction"))[0], "\(name)")
            #expect(c.numClasses == (try ints("num_classes"))[0], "\(name)")
            var recorded = c
            recorded.embeddingDim = try ints("embedding_dim")[0]
            recorded.clsHidden = try ints("cls_hidden")[0]
            #expect(c.resolvedEmbeddingDim == recorded.resolvedEmbeddingDim, "\(name)")
            #expect(c.resolvedClsHidden == recorded.resolvedClsHidden, "\(name)")
            // And a network of that architecture loads every tensor of the file.
            let net = try MancsNetwork(config: c, maxBatch: 2)
            _ = try Checkpoint.loadWeights(url, parameters: net.parameters, buffers: net.buffers)
        }
        // Too little to infer from: one error naming the file and the missing tensor.
        let path = SharedFiles.temporaryDirectory("ckpt").appendingPathComponent("stem-only.h5").path
        do {
            let f = try HDF5File(creating: path)
            try f.root.write("model/backbone.conv1.weight", [Float](repeating: 0, count: 8 * 3 * 7 * 7), shape: [8, 3, 7, 7])
        }
        let error = #expect(throws: CheckpointError.self) { try Checkpoint.inferConfig(URL(fileURLWithPath: path)) }
        #expect(error?.message.contains("stem-only.h5") == true, "\(String(describing: error))")
    }

    @Test func absurdArchitectureInAFileIsRefused() throws {
        let dir = SharedFiles.temporaryDirectory("ckpt")
        for (label, name) in [("many", "backbone.layer1.99999999.conv1.weight"), ("overflow", "backbone.layer2.9223372036854775807.bn1.weight")] {
            let path = dir.appendingPathComponent("\(label).h5").path
            do {
                let f = try HDF5File(creating: path)
                for (n, shape) in tinyShapes().params {
                    try f.root.write("model/\(n)", [Float](repeating: 0, count: shape.reduce(1, *)), shape: shape)
                }
                try f.root.write("model/\(name)", [Float(0)], shape: [1])
            }
            let error = #expect(throws: CheckpointError.self) { try Checkpoint.inferConfig(URL(fileURLWithPath: path)) }
            #expect(error?.message.contains("out of range") == true, "\(String(describing: error))")
        }
    }

    @Test func negativeGlobalStepIsRefused() throws {
        let run = SharedFiles.temporaryDirectory("ckpt")
        let a = TinyModel()
        let url = try Checkpoint.save(parameters: a.params, buffers: a.buffers, adam: a.adam, state: sampleState(step: 3), runDirectory: run)
        HostileHDF5.edit(url.path) { f in
            HostileHDF5.deleteAttribute(f, object: "/", "global_step")
            var minus = Int64(-5)
            let sp = H5Screate(H5S_SCALAR); defer { H5Sclose(sp) }
            let at = H5Acreate_by_name(f, "/", "global_step", mancs_h5t_native_int64(), sp, mancs_h5p_default(), mancs_h5p_default(), mancs_h5p_default())
            H5Awrite(at, mancs_h5t_native_int64(), &minus); H5Aclose(at)
        }
        let b = TinyModel(fillSeed: nil)
        let error = #expect(throws: CheckpointError.self) { try Checkpoint.load(url, parameters: b.params, buffers: b.buffers, adam: b.adam) }
        #expect(error?.message.contains("global_step -5") == true, "\(String(describing: error))")
    }
}
