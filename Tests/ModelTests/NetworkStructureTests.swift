import Foundation
import HDF5Kit
import MancsModel
import Testing
import TestSupport

@Suite struct NetworkStructureTests {
    /// PyTorch's `named_parameters()` order for the mancs-small-ls1 configuration
    /// (printed from shared/reference/mancs_ref.py): names are taken from the
    /// fixture, the order from the reference module tree.
    static func expectedOrder(_ c: MancsConfig) -> [String] {
        var names = ["backbone.conv1.weight", "backbone.bn1.weight", "backbone.bn1.bias"]
        for s in 1...4 {
            for i in 0..<c.blocks[s - 1] {
                let p = "backbone.layer\(s).\(i)"
                for l in ["conv1", "bn1", "conv2", "bn2", "conv3", "bn3"] {
                    names += l.hasPrefix("conv") ? ["\(p).\(l).weight"] : ["\(p).\(l).weight", "\(p).\(l).bias"]
                }
                if i == 0 { names += ["\(p).downsample.0.weight", "\(p).downsample.1.weight", "\(p).downsample.1.bias"] }
                if s == 4 && i == c.blocks[3] - 1 { names.append("\(p).prelu.weight") }
            }
        }
        for s in c.attentionStages {
            names += ["conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias"].map { "attention.layer\(s).\($0)" }
        }
        for m in ["heads.rank.fc", "heads.cls.fc", "heads.cls.bn", "heads.cls.classifier", "heads.att.classifier"] {
            names += ["\(m).weight", "\(m).bias"]
        }
        return names
    }

    @Test func namesShapesAndOrderMatchTheFixtures() throws {
        for url in SharedFiles.fixtures {
            let file = try HDF5File(openForReading: url.path)
            let net = try MancsNetwork(config: try fixtureConfig(file), maxBatch: 2)
            let model = try file.root.group("model"), buffers = try file.root.group("buffers")
            // Same set of names, same shapes.
            #expect(Set(net.parameters.tensors.map(\.name)) == Set(try model.members()), "\(url.lastPathComponent)")
            #expect(Set(net.buffers.tensors.map(\.name)) == Set(try buffers.members()), "\(url.lastPathComponent)")
            for t in net.parameters.tensors { #expect(try model.shape(t.name) == t.shape, "\(t.name)") }
            for t in net.buffers.tensors { #expect(try buffers.shape(t.name) == t.shape, "\(t.name)") }
            // PyTorch's order (HDF5 lists names sorted, so the order comes from the module tree).
            #expect(net.parameters.tensors.map(\.name) == Self.expectedOrder(net.config))
            let bnOrder = net.parameters.tensors.map(\.name).filter { $0.hasSuffix(".bias") }
                .map { String($0.dropLast(5)) }.filter { net.buffers.info("\($0).running_mean") != nil }
            #expect(net.buffers.tensors.map(\.name) == bnOrder.flatMap { ["\($0).running_mean", "\($0).running_var"] })
        }
    }

    @Test func orderMatchesPyTorchForTheSmallFixtureConfiguration() throws {
        // Spot checks of the exact PyTorch listing for blocks 1,1,2,1 / FAB 2,4 (no downsample in layer3.1).
        let net = try MancsNetwork(config: smallFixtureConfig(), maxBatch: 2)
        let names = net.parameters.tensors.map(\.name)
        #expect(names.count == 79)
        #expect(names[12...14] == ["backbone.layer1.0.downsample.0.weight", "backbone.layer1.0.downsample.1.weight",
                                   "backbone.layer1.0.downsample.1.bias"])
        #expect(names[39...40] == ["backbone.layer3.1.conv1.weight", "backbone.layer3.1.bn1.weight"])
        #expect(names[60...61] == ["backbone.layer4.0.prelu.weight", "attention.layer2.conv1.weight"])
        #expect(names.last == "heads.att.classifier.bias")
        #expect(net.parameters.info("heads.att.classifier.weight")?.shape == [5, 320])
    }

    @Test func resNet50SizeHas36_83MillionParameters() throws {
        let c = MancsConfig()  // ResNet-50, 751 classes
        // Independent count: torchvision ResNet-50 without fc is 23,508,032; then
        // the PReLU, the FABs (C -> C/16 -> C with biases) and the heads.
        let resnet50 = 23_508_032
        let prelu = 2048
        let fabs = [512, 1024, 2048].reduce(0) { $0 + 2 * $1 * ($1 / 16) + $1 / 16 + $1 }
        let d = 2048, k = 751
        let heads = (d * d + d) + (d * d + d) + 2 * d + (k * d + k) + (k * 3584 + k)
        let expected = resnet50 + prelu + fabs + heads
        #expect(expected == 36_829_950)
        let net = try MancsNetwork(config: c, maxBatch: 1)
        #expect(net.parameters.count == expected)
    }

    @Test func invalidConfigurationsThrow() {
        var c = tinyConfig()
        c.blocks = [1, 1, 1]
        #expect(throws: MancsConfigError.self) { try MancsNetwork(config: c, maxBatch: 2) }
        c = tinyConfig()
        c.attentionStages = [4, 2]
        #expect(throws: MancsConfigError.self) { try MancsNetwork(config: c, maxBatch: 2) }
        #expect(throws: MancsConfigError.self) { try MancsNetwork(config: tinyConfig(), maxBatch: 0) }
    }

    @Test func initialisationIsTorchvisionStyleAndDeterministic() throws {
        let a = try MancsNetwork(config: smallFixtureConfig(), maxBatch: 2, seed: 7)
        let b = try MancsNetwork(config: smallFixtureConfig(), maxBatch: 2, seed: 7)
        let c = try MancsNetwork(config: smallFixtureConfig(), maxBatch: 2, seed: 8)
        #expect(Array(a.parameters.values) == Array(b.parameters.values))
        #expect(Array(a.parameters.values) != Array(c.parameters.values))
        let p = a.parameters
        #expect(p.export(p.info("backbone.layer2.0.bn3.weight")!).allSatisfy { $0 == 1 })
        #expect(p.export(p.info("backbone.layer2.0.bn3.bias")!).allSatisfy { $0 == 0 })
        #expect(p.export(p.info("backbone.layer4.0.prelu.weight")!).allSatisfy { $0 == 0.25 })
        #expect(p.export(p.info("attention.layer4.conv1.bias")!).allSatisfy { $0 == 0 })
        #expect(a.buffers.export(a.buffers.info("heads.cls.bn.running_var")!).allSatisfy { $0 == 1 })
        // Kaiming normal, fan_out: std sqrt(2 / (out * k * k)).
        let w = p.export(p.info("backbone.layer4.0.conv2.weight")!)  // 64 x 64 x 3 x 3
        let std = (w.reduce(0.0) { $0 + Double($1) * Double($1) } / Double(w.count)).squareRoot()
        #expect(abs(std - (2.0 / (64 * 9)).squareRoot()) < 0.03 * (2.0 / (64 * 9)).squareRoot())
        // Linear: uniform(+-1/sqrt(in)).
        let fc = p.export(p.info("heads.cls.fc.weight")!)
        let bound = Float(1 / (256.0).squareRoot())
        #expect(fc.allSatisfy { abs($0) <= bound } && fc.contains { abs($0) > 0.9 * bound })
        let bias = p.export(p.info("heads.att.classifier.bias")!)
        #expect(bias.allSatisfy { abs($0) <= Float(1 / (320.0).squareRoot()) } && bias.contains { $0 != 0 })
    }
}

/// The architecture recorded in a fixture's /config.
func fixtureConfig(_ file: HDF5File) throws -> MancsConfig {
    let g = try file.root.group("config")
    func i(_ k: String) throws -> Int { Int(try g.attribute(k, as: Int64.self)[0]) }
    var c = MancsConfig()
    c.baseWidth = try i("base_width")
    c.blocks = try g.attribute("blocks", as: Int64.self).map { Int($0) }
    c.lastStride = try i("last_stride")
    c.numClasses = try i("num_classes")
    c.attentionStages = try g.attribute("attention_stages", as: Int64.self).map { Int($0) }
    c.reduction = try i("reduction")
    c.embeddingDim = try i("embedding_dim")
    c.clsHidden = try i("cls_hidden")
    c.height = try i("height")
    c.width = try i("width")
    return c
}
