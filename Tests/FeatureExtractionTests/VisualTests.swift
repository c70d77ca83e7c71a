import Foundation
@testable import MancsModel
import ReIDData
@testable import FeatureExtraction
import ReIDEval
import Testing
import TestSupport

@Suite("Visualisation", .serialized)
struct VisualTests {
    @Test("visualize writes decodable JPEGs of the layout's size and an index.html")
    func writesPictures() throws {
        let root = SharedFiles.temporaryDirectory("mancs-visual")
        defer { try? FileManager.default.removeItem(at: root) }
        TinyReID.writeDataset(root.appendingPathComponent("data"))
        let dataset = try loadDataset(name: "market1501", root: root.appendingPathComponent("data").path)
        let net = try TinyReID.network(seed: 2, maxBatch: 4)
        let out = root.appendingPathComponent("pictures").path
        var options = VisualizationOptions(queries: 4, seed: 1, topK: 5, tileHeight: 64, tileWidth: 32)
        options.batchSize = 4
        let drawn = try writeVisualization(network: net, dataset: dataset, directory: out, options: options)
        #expect(drawn.count == 4)
        #expect(Set(drawn.map(\.queryIndex)).count == 4)
        let layout = StripLayout(tileWidth: 32, tileHeight: 64)
        let decoder = JPEGDecoder()
        let html = try String(contentsOfFile: out + "/index.html", encoding: .utf8)
        for q in drawn {
            #expect(q.matches.count == 5)
            // Market protocol: no same-identity image from the query's camera.
            #expect(!q.matches.contains { $0.pid == q.pid && $0.camera == q.camera })
            #expect(q.matches.map(\.distance) == q.matches.map(\.distance).sorted())
            #expect(q.matches.allSatisfy { $0.correct == ($0.pid == q.pid) })
            let ranking = try decoder.decode(file: out + "/" + q.rankingFile)
            #expect(ranking.width == layout.stripWidth(cells: 6) && ranking.height == layout.height)
            let attention = try decoder.decode(file: out + "/" + q.attentionFile)
            #expect(q.maskStages == [2, 3, 4])
            #expect(attention.width == layout.plainWidth(cells: 4) && attention.height == layout.height)
            #expect(html.contains(q.rankingFile) && html.contains(q.attentionFile))
            // The frame colours: the query's is blue, each match green or red (JPEG: roughly).
            func pixel(_ img: RGB8Image, _ x: Int, _ y: Int) -> (Int, Int, Int) {
                let i = (y * img.width + x) * 3
                return (Int(img.pixels[i]), Int(img.pixels[i + 1]), Int(img.pixels[i + 2]))
            }
            let qb = pixel(ranking, layout.cellX(0) + 1, layout.margin + layout.cellHeight / 2)
            #expect(qb.2 > 150 && qb.0 < 100)
            for (i, m) in q.matches.enumerated() {
                let c = pixel(ranking, layout.cellX(i + 1) + 1, layout.margin + layout.cellHeight / 2)
                if m.correct { #expect(c.1 > 120 && c.0 < 90, "match \(i) frame \(c)") } else { #expect(c.0 > 150 && c.1 < 90, "mismatch \(i) frame \(c)") }
            }
        }
        // Same seed, same queries.
        let again = try writeVisualization(network: net, dataset: dataset, directory: out, options: options)
        #expect(again.map(\.queryIndex) == drawn.map(\.queryIndex))
    }

    @Test("query choice: only valid queries, distinct, capped by their number")
    func queryChoice() throws {
        func image(_ pid: Int, _ cam: Int) -> ReIDImage { ReIDImage(source: .jpeg(path: "x"), pid: pid, camera: cam) }
        let query = ReIDSplit(images: [image(1, 0), image(2, 0), image(3, 1), image(4, 0)])
        let gallery = ReIDSplit(images: [image(1, 1), image(2, 0), image(3, 0), image(0, 1)])
        // pid 2 only in its own camera, pid 4 absent: 0 and 2 are the valid queries.
        #expect(chooseQueries(query, gallery: gallery, count: 10, seed: 3) == [0, 2])
        #expect(chooseQueries(query, gallery: gallery, count: 1, seed: 3).count == 1)
    }

    @Test("attention maps: channel mean, bilinear upsampling, heat overlay")
    func attentionMaps() {
        // 1 image, 2x2 positions, 2 channels.
        let values: [Float] = [0.2, 0.4, 0.6, 0.8, 0.1, 0.1, 0.9, 0.9]
        let map = values.withUnsafeBufferPointer {
            AttentionMap(AttentionMask(stage: 3, batch: 1, height: 2, width: 2, channels: 2, values: $0.baseAddress!), item: 0)
        }
        #expect(map.values.map { ($0 * 100).rounded() / 100 } == [0.3, 0.7, 0.1, 0.9])
        let constant = AttentionMap(stage: 2, height: 3, width: 2, values: [Float](repeating: 0.5, count: 6))
        #expect(constant.upsampled(height: 7, width: 5).allSatisfy { abs($0 - 0.5) < 1e-6 })
        // A left-to-right ramp stays monotone and within its range when upsampled.
        let ramp = AttentionMap(stage: 2, height: 1, width: 2, values: [0, 1])
        let up = ramp.upsampled(height: 1, width: 8)
        #expect(up == up.sorted() && up.first! == 0 && up.last! == 1)
        // Overlay: the low end turns blue, the high end red.
        let grey = RGB8Image(width: 8, height: 1, pixels: [UInt8](repeating: 128, count: 24))
        let hot = ramp.overlay(on: grey)
        #expect(hot.pixels[2] > hot.pixels[0])            // left: blue > red
        #expect(hot.pixels[21] > hot.pixels[23])          // right: red > blue
        #expect(jet(0)[2] > 100 && jet(1)[0] > 100 && jet(0.5)[1] == 255)
    }
}
