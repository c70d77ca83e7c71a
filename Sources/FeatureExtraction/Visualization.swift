import DeterministicRandom
import Foundation
import MancsModel
import ReIDData
import ReIDEval

// `mancs visualize`: ranking strips and attention heat maps for a few queries,
// and an index.html listing them. See docs/visual.md.

// MARK: - Settings and results

public struct VisualizationOptions: Sendable {
    /// Queries to draw (chosen at random, by `seed`, among the valid ones).
    public var queries = 8
    public var seed: UInt64 = 0
    /// Gallery images after the query in a strip.
    public var topK = 10
    /// Size of every picture in a strip or a heat-map row.
    public var tileHeight = 256
    public var tileWidth = 128
    public var quality = 90
    /// Images per forward pass (at most the network's maximum batch).
    public var batchSize: Int? = nil
    public var loaderThreads = 2
    public init(queries: Int = 8, seed: UInt64 = 0, topK: Int = 10, tileHeight: Int = 256, tileWidth: Int = 128) {
        self.queries = queries; self.seed = seed; self.topK = topK
        self.tileHeight = tileHeight; self.tileWidth = tileWidth
    }
}

/// One gallery image in a query's ranking.
public struct RankedMatch: Sendable {
    public var galleryIndex: Int
    public var pid: Int, camera: Int
    public var distance: Float
    public var correct: Bool
    public var path: String
}

/// What was drawn for one query.
public struct VisualizedQuery: Sendable {
    public var queryIndex: Int
    public var path: String
    public var pid: Int, camera: Int
    public var matches: [RankedMatch]
    /// File names inside the output folder.
    public var rankingFile: String
    public var attentionFile: String
    /// The stages and value ranges (min...max of the channel mean) of the masks drawn.
    public var maskStages: [Int]
    public var maskRanges: [ClosedRange<Float>]
}

// MARK: - Layout of the pictures

/// Pixel layout of a strip: margin, a frame around each tile, spacing, and a
/// wider gap after the query.
struct StripLayout {
    let tileWidth: Int, tileHeight: Int
    let margin = 8, border = 4, spacing = 4, gap = 24

    var cellWidth: Int { tileWidth + 2 * border }
    var cellHeight: Int { tileHeight + 2 * border }
    /// x of cell `i` (0 = query) in a strip.
    func cellX(_ i: Int) -> Int { margin + i * (cellWidth + spacing) + (i > 0 ? gap - spacing : 0) }
    func stripWidth(cells: Int) -> Int { cellX(cells - 1) + cellWidth + margin }
    var height: Int { cellHeight + 2 * margin }
    /// Heat-map rows: evenly spaced cells, no gap.
    func plainX(_ i: Int) -> Int { margin + i * (cellWidth + spacing) }
    func plainWidth(cells: Int) -> Int { plainX(cells - 1) + cellWidth + margin }
}

// MARK: - Query choice and ranking

/// Queries whose identity appears in the gallery under another camera (the
/// ones the Market protocol scores), then `count` of them drawn by `seed`, in
/// increasing index order.
func chooseQueries(_ query: ReIDSplit, gallery: ReIDSplit, count: Int, seed: UInt64) -> [Int] {
    var camerasOfPid: [Int: Set<Int>] = [:]
    for g in gallery.images { camerasOfPid[g.pid, default: []].insert(g.camera) }
    var valid = query.images.indices.filter { i in
        let q = query.images[i]
        return camerasOfPid[q.pid].map { !$0.subtracting([q.camera]).isEmpty } ?? false
    }
    // Partial Fisher-Yates with SplitMix64.
    var rng = SplitMix64(seed: seed)
    let n = min(count, valid.count)
    for i in 0..<n {
        let j = i + Int(rng.next() % UInt64(valid.count - i))
        valid.swapAt(i, j)
    }
    return valid.prefix(n).sorted()
}

/// The top `k` gallery entries of one query by distance (ties by gallery index),
/// after the Market protocol drops same-identity same-camera entries.
func rankGallery(distances: ArraySlice<Float>, query: ReIDImage, gallery: ReIDSplit, k: Int) -> [RankedMatch] {
    let base = distances.startIndex
    let kept = gallery.images.indices.filter { g in
        !(gallery.images[g].pid == query.pid && gallery.images[g].camera == query.camera)
    }
    let order = kept.sorted { a, b in
        let da = distances[base + a], db = distances[base + b]
        return da < db || (da == db && a < b)
    }
    return order.prefix(k).map { g in
        let image = gallery.images[g]
        return RankedMatch(galleryIndex: g, pid: image.pid, camera: image.camera,
                           distance: max(distances[base + g], 0).squareRoot(),
                           correct: image.pid == query.pid, path: image.path)
    }
}

// MARK: - The whole picture set

/// Writes, for `options.queries` queries of `dataset`: `query_NNN_ranking.jpg`
/// (the query, a gap, then its top-k gallery images framed green when right and
/// red when wrong), `query_NNN_attention.jpg` (the query, then each FAB stage's
/// mask heat map over it) and `index.html` into `directory`. Runs `network` in
/// inference mode over the whole gallery and the chosen queries (one process).
@discardableResult
public func writeVisualization(network: MancsNetwork, dataset: ReIDDataset, directory: String,
                               options: VisualizationOptions = VisualizationOptions(),
                               progress: ((String) -> Void)? = nil) throws -> [VisualizedQuery] {
    guard options.queries >= 1 else { throw ExtractionError("visualize: the number of queries must be at least 1") }
    guard options.topK >= 1 else { throw ExtractionError("visualize: top-k must be at least 1") }
    guard options.tileHeight >= 8, options.tileWidth >= 8 else {
        throw ExtractionError("visualize: tiles must be at least 8x8 pixels, got \(options.tileHeight)x\(options.tileWidth)")
    }
    guard dataset.gallery.count > 0 else { throw ExtractionError("visualize: \(dataset.name) has an empty gallery") }
    let chosen = chooseQueries(dataset.query, gallery: dataset.gallery, count: options.queries, seed: options.seed)
    guard !chosen.isEmpty else {
        throw ExtractionError("visualize: no query of \(dataset.name) has its identity in the gallery under another camera")
    }
    do { try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true) } catch {
        throw ExtractionError("\(directory): cannot create the output folder (\(error.localizedDescription))")
    }

    // Features: the gallery, then the chosen queries with their masks.
    let extractor = FeatureExtractor(network: network, batchSize: options.batchSize, loaderThreads: options.loaderThreads)
    let e = extractor.dim
    progress?("extracting \(dataset.gallery.count) gallery images")
    let galleryFeatures = try extractor.extract(images: dataset.gallery.images)
    let queryImages = chosen.map { dataset.query.images[$0] }
    var queryFeatures = [Float](repeating: 0, count: chosen.count * e)
    var maps: [[AttentionMap]] = []
    var start = 0
    while start < queryImages.count {
        let end = min(start + extractor.chunkSize, queryImages.count)
        let pixels = try extractor.loader.load(queryImages[start..<end])
        queryFeatures.withUnsafeMutableBufferPointer { extractor.forward(pixels, count: end - start, into: $0.baseAddress! + start * e) }
        let masks = network.attentionMasks
        for item in 0..<(end - start) { maps.append(masks.map { AttentionMap($0, item: item) }) }
        start = end
    }
    let query = try FeatureSet(features: queryFeatures, dim: e, pids: queryImages.map { Int64($0.pid) },
                               camids: queryImages.map { Int64($0.camera) }, name: "query")
    let gallery = try FeatureSet(features: galleryFeatures, dim: e, pids: dataset.gallery.images.map { Int64($0.pid) },
                                 camids: dataset.gallery.images.map { Int64($0.camera) }, name: "gallery")
    let distances = squaredDistances(query: query, gallery: gallery)

    // Pictures.
    let layout = StripLayout(tileWidth: options.tileWidth, tileHeight: options.tileHeight)
    let tiles = TileMaker(height: options.tileHeight, width: options.tileWidth)
    var drawn: [VisualizedQuery] = []
    for (n, qi) in chosen.enumerated() {
        let q = dataset.query.images[qi]
        let row = distances[(n * gallery.count)..<((n + 1) * gallery.count)]
        let matches = rankGallery(distances: row, query: q, gallery: dataset.gallery, k: options.topK)
        let queryTile = try tiles.tile(q)

        var strip = RGBCanvas(width: layout.stripWidth(cells: options.topK + 1), height: layout.height)
        strip.paste(queryTile, x: layout.cellX(0), y: layout.margin, border: layout.border, .query)
        for (i, m) in matches.enumerated() {
            strip.paste(try tiles.tile(dataset.gallery.images[m.galleryIndex]), x: layout.cellX(i + 1), y: layout.margin,
                        border: layout.border, m.correct ? .match : .mismatch)
        }
        let name = String(format: "query_%03d", n)
        try writeJPEG(strip.image, to: directory + "/\(name)_ranking.jpg", quality: options.quality)

        let stageMaps = maps[n]
        var heat = RGBCanvas(width: layout.plainWidth(cells: stageMaps.count + 1), height: layout.height)
        heat.paste(queryTile, x: layout.plainX(0), y: layout.margin, border: layout.border, .query)
        for (i, map) in stageMaps.enumerated() {
            heat.paste(map.overlay(on: queryTile), x: layout.plainX(i + 1), y: layout.margin, border: layout.border, .white)
        }
        try writeJPEG(heat.image, to: directory + "/\(name)_attention.jpg", quality: options.quality)
        drawn.append(VisualizedQuery(queryIndex: qi, path: q.path, pid: q.pid, camera: q.camera, matches: matches,
                                     rankingFile: "\(name)_ranking.jpg", attentionFile: "\(name)_attention.jpg",
                                     maskStages: stageMaps.map(\.stage), maskRanges: stageMaps.map(\.range)))
        progress?("wrote \(name) (query \(qi), pid \(q.pid))")
    }
    let html = visualizationIndexHTML(drawn, dataset: dataset.name, topK: options.topK)
    do { try html.write(toFile: directory + "/index.html", atomically: true, encoding: .utf8) } catch {
        throw ExtractionError("\(directory)/index.html: cannot write (\(error.localizedDescription))")
    }
    return drawn
}

// MARK: - index.html

func visualizationIndexHTML(_ queries: [VisualizedQuery], dataset: String, topK: Int) -> String {
    var h = """
        <!DOCTYPE html>
        <html><head><meta charset="utf-8"><title>mancs visualize: \(htmlEscape(dataset))</title>
        <style>body{font-family:sans-serif;margin:1em} img{display:block;margin:4px 0} .ok{color:#080} .bad{color:#c00} td,th{padding:0 6px;text-align:left}</style>
        </head><body>
        <h1>\(htmlEscape(dataset)): \(queries.count) queries, top \(topK)</h1>
        <p>Each ranking: the query (blue frame), then its nearest gallery images by Euclidean distance on f_rank,
        after removing the query identity's images from the query's own camera (Market-1501 protocol);
        green frame = same identity, red = another identity. Each attention row: the query, then the mean
        over channels of each FAB stage's mask, upsampled bilinearly and coloured from its own minimum (blue)
        to maximum (red).</p>

        """
    for (n, q) in queries.enumerated() {
        let hits = q.matches.filter(\.correct).count
        h += "<h2>Query \(n + 1): \(htmlEscape((q.path as NSString).lastPathComponent)) (pid \(q.pid), camera \(q.camera + 1)): \(hits) of \(q.matches.count) right</h2>\n"
        h += "<img src=\"\(q.rankingFile)\" alt=\"ranking of query \(n + 1)\">\n<table><tr><th>rank</th>"
        for i in q.matches.indices { h += "<th>\(i + 1)</th>" }
        h += "</tr><tr><td>pid</td>"
        for m in q.matches { h += "<td class=\"\(m.correct ? "ok" : "bad")\">\(m.pid)</td>" }
        h += "</tr><tr><td>distance</td>"
        for m in q.matches { h += "<td>\(String(format: "%.3f", m.distance))</td>" }
        h += "</tr></table>\n"
        let ranges = zip(q.maskStages, q.maskRanges).map { "stage \($0): \(String(format: "%.3f", $1.lowerBound))–\(String(format: "%.3f", $1.upperBound))" }
        h += "<img src=\"\(q.attentionFile)\" alt=\"attention of query \(n + 1)\">\n<p>mask ranges: \(ranges.joined(separator: "; "))</p>\n"
    }
    h += "</body></html>\n"
    return h
}
