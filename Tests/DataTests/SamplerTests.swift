import Foundation
import Testing
import TestSupport
@testable import ReIDData

@Suite struct SamplerTests {


    @Test func shardsPartitionTheGlobalBatch() throws {
        let labels = (0..<37).flatMap { l in [Int](repeating: l, count: 1 + (l * 7) % 9) }
        for epoch in [0, 3] {
            for index in 0..<(37 / 8) {
                let global = try PKSampler(labels: labels, p: 8, k: 4, seed: 42).globalBatch(epoch: epoch, index: index)
                #expect(global.slots.count == 32)
                for n in [1, 2, 4] {
                    var joined: [PKSlot] = []
                    for r in 0..<n {
                        let s = try PKSampler(labels: labels, p: 8, k: 4, seed: 42, rank: r, worldSize: n)
                        let b = s.batch(epoch: epoch, index: index)
                        #expect(b.slots.count == s.localBatchSize && s.localBatchSize == 32 / n)
                        joined += b.slots
                    }
                    #expect(joined == global.slots, "n = \(n)")
                }
            }
        }
    }

    @Test func batchesAreWellFormed() throws {
        let labels = (0..<37).flatMap { l in [Int](repeating: l, count: 1 + (l * 7) % 9) }
        let s = try PKSampler(labels: labels, p: 8, k: 4, seed: 1)
        #expect(s.batchesPerEpoch == 4)
        var seen = Set<Int>()
        for index in 0..<s.batchesPerEpoch {
            let b = s.globalBatch(epoch: 0, index: index)
            for g in 0..<8 {
                let group = b.slots[(g * 4)..<(g * 4 + 4)]
                let label = group.first!.label
                #expect(group.allSatisfy { $0.label == label && labels[$0.imageIndex] == label })
                #expect(seen.insert(label).inserted, "an identity appears once per epoch")
                let pool = s.imagesOfLabel[label].count
                if pool >= 4 { #expect(Set(group.map(\.imageIndex)).count == 4, "without replacement") }
            }
            #expect(Set(b.slots.map(\.augmentationKey)).count == 32)
        }
        #expect(s.permutation(epoch: 0) != s.permutation(epoch: 1))
        #expect(try PKSampler(labels: labels, p: 8, k: 4, seed: 2).permutation(epoch: 0) != s.permutation(epoch: 0))
    }

    @Test func startingAnywhereContinuesTheStream() throws {
        let labels = (0..<37).flatMap { l in [Int](repeating: l, count: 1 + (l * 7) % 9) }
        let a = try PKSampler(labels: labels, p: 8, k: 4, seed: 9, rank: 1, worldSize: 2)
        var stream: [PKBatch] = []
        var pos = (epoch: 0, index: 0)
        for _ in 0..<10 { stream.append(a.batch(epoch: pos.epoch, index: pos.index)); pos = a.position(after: pos.epoch, pos.index) }
        let b = try PKSampler(labels: labels, p: 8, k: 4, seed: 9, rank: 1, worldSize: 2) // a fresh sampler, as after a restart
        pos = (epoch: 1, index: 2)
        for i in 6..<10 {
            #expect(b.batch(epoch: pos.epoch, index: pos.index) == stream[i])
            pos = b.position(after: pos.epoch, pos.index)
        }
    }

    @Test func badConfigurationsAreClearErrors() {
        let labels = (0..<10).flatMap { [$0, $0] }
        do { _ = try PKSampler(labels: labels, p: 6, k: 2, seed: 0, rank: 0, worldSize: 4); Issue.record("no error") } catch {
            #expect("\(error)".contains("not divisible by the world size 4"))
        }
        do { _ = try PKSampler(labels: labels, p: 16, k: 2, seed: 0); Issue.record("no error") } catch {
            #expect("\(error)".contains("fewer than P = 16"))
        }
        #expect(throws: SamplerError.self) { try PKSampler(labels: [], p: 1, k: 1, seed: 0) }
        #expect(throws: SamplerError.self) { try PKSampler(labels: [0, 2], p: 1, k: 1, seed: 0) }
    }
}
