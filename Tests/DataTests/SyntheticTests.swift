import CTurboJPEG
import Foundation
import Testing
import TestSupport
import ReIDData

// MARK: - Helpers: a small Market-1501 reader and the raw-pixel baseline, written here on purpose
// (independent of the ReIDData parser) so the generator is checked against the protocol itself.

private struct MarketFile { let path: String; let pid: Int; let camera: Int }

/// Reads `PID_cC...jpg` names the way a Market-1501 parser does; junk (pid -1) is kept, callers filter.
private func readMarketFolder(_ url: URL) throws -> [MarketFile] {
    try FileManager.default.contentsOfDirectory(atPath: url.path).sorted().compactMap { name in
        guard name.hasSuffix(".jpg") else { return nil }
        let parts = name.split(separator: "_")
        guard parts.count == 4, let pid = Int(parts[0]), parts[1].hasPrefix("c"),
              let camera = Int(String(parts[1].dropFirst().prefix(1))) else {
            Issue.record("unexpected file name \(name)"); return nil
        }
        return MarketFile(path: url.appendingPathComponent(name).path, pid: pid, camera: camera)
    }
}

private func marketSplitCounts(_ files: [MarketFile]) -> SyntheticDataset.SplitCounts {
    let kept = files.filter { $0.pid != -1 }
    return .init(ids: Set(kept.map(\.pid)).count, images: kept.count, cameras: Set(kept.map(\.camera)).count)
}

/// Decodes a JPEG with TurboJPEG to RGB bytes.
private func decodeWithTurboJPEG(_ path: String) throws -> (rgb: [UInt8], width: Int, height: Int) {
    let data = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
    let handle = try #require(tjInitDecompress())
    defer { tjDestroy(handle) }
    var width: Int32 = 0, height: Int32 = 0, subsampling: Int32 = 0, colorspace: Int32 = 0
    #expect(tjDecompressHeader3(handle, data, UInt(data.count), &width, &height, &subsampling, &colorspace) == 0)
    var rgb = [UInt8](repeating: 0, count: Int(width * height * 3))
    let status = tjDecompress2(handle, data, UInt(data.count), &rgb, width, 0, height, Int32(TJPF_RGB.rawValue), Int32(TJFLAG_ACCURATEDCT))
    #expect(status == 0, "tjDecompress2 failed on \(path)")
    return (rgb, Int(width), Int(height))
}

/// Area-average resize of an RGB image to 32x16 (the size divides evenly for 128x64), as floats in [0, 1].
private func pixelFeature(_ path: String) throws -> [Float] {
    let (rgb, w, h) = try decodeWithTurboJPEG(path)
    let outH = 32, outW = 16, fy = h / outH, fx = w / outW
    var feature = [Float](repeating: 0, count: outH * outW * 3)
    for y in 0..<h { for x in 0..<w { for c in 0..<3 {
        feature[((y / fy) * outW + x / fx) * 3 + c] += Float(rgb[(y * w + x) * 3 + c]) / 255
    } } }
    return feature.map { $0 / Float(fy * fx) }
}

/// Market protocol rank-1 on Euclidean distances: same pid AND camera removed, queries without a
/// remaining match skipped. Also returns the rank-1 a random ranking would get (the chance level).
private func pixelRank1(query: [MarketFile], gallery: [MarketFile], features: ([MarketFile]) throws -> [[Float]]) throws
    -> (rank1: Double, chance: Double, valid: Int) {
    let q = try features(query), g = try features(gallery)
    var hits = 0, valid = 0, chance = 0.0
    for (i, file) in query.enumerated() {
        var best = Float.infinity, bestPID = Int.min, candidates = 0, matches = 0
        for (j, other) in gallery.enumerated() where !(other.pid == file.pid && other.camera == file.camera) {
            candidates += 1
            if other.pid == file.pid { matches += 1 }
            var d: Float = 0
            for k in 0..<q[i].count { let t = q[i][k] - g[j][k]; d += t * t }
            if d < best { best = d; bestPID = other.pid }
        }
        guard matches > 0 else { continue }
        valid += 1
        if bestPID == file.pid { hits += 1 }
        chance += Double(matches) / Double(candidates)
    }
    return (Double(hits) / Double(valid), chance / Double(valid), valid)
}

// MARK: - A dataset shared by the tests (made once; debug builds draw slowly)

private let sharedOptions = SyntheticDataset.Options(trainIDs: 20, testIDs: 50, imagesPerID: 8, cameras: 4, seed: 0)
private let shared: Result<(URL, SyntheticDataset.Summary), Error> = Result {
    let dir = SharedFiles.temporaryDirectory("synth-shared")
    return (dir, try SyntheticDataset.write(to: dir, options: sharedOptions))
}

// MARK: - Tests

@Suite struct SyntheticTests {
    @Test func jpegEncoderRoundTrips() throws {
        let w = 24, h = 16
        var rgb = [UInt8](repeating: 0, count: w * h * 3)
        for y in 0..<h { for x in 0..<w { rgb[(y * w + x) * 3] = UInt8(x * 10); rgb[(y * w + x) * 3 + 1] = UInt8(y * 15); rgb[(y * w + x) * 3 + 2] = 128 } }
        let jpeg = try encodeJPEG(rgb: rgb, width: w, height: h, quality: 95)
        #expect(jpeg.prefix(2) == [0xFF, 0xD8])
        let dir = SharedFiles.temporaryDirectory("jpeg")
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("a.jpg").path
        try Data(jpeg).write(to: URL(fileURLWithPath: path))
        let decoded = try decodeWithTurboJPEG(path)
        #expect(decoded.width == w && decoded.height == h)
        let worst = zip(rgb, decoded.rgb).map { abs(Int($0) - Int($1)) }.max() ?? 999
        #expect(worst <= 8, "JPEG round trip differs by \(worst) levels")
    }

    @Test func jpegEncoderRejectsBadInput() {
        #expect(throws: JPEGEncodeError.self) { try encodeJPEG(rgb: [0, 0, 0], width: 2, height: 2) }
        #expect(throws: JPEGEncodeError.self) { try encodeJPEG(rgb: [UInt8](repeating: 0, count: 12), width: 2, height: 2, quality: 0) }
    }

    @Test func badOptionsAreRejectedWithAMessage() {
        func message(_ options: SyntheticDataset.Options) -> String {
            do { try options.validate(); return "" } catch { return "\(error)" }
        }
        #expect(message(.init(cameras: 1)).contains("--cameras"))
        #expect(message(.init(imagesPerID: 1)).contains("--images-per-id"))
        #expect(message(.init(testIDs: 0)).contains("--test-ids"))
        #expect(message(.init()) == "")
    }

    @Test func sameSeedGivesIdenticalFilesAndOtherSeedsDiffer() throws {
        let options = SyntheticDataset.Options(trainIDs: 3, testIDs: 3, imagesPerID: 3, cameras: 3, seed: 7)
        let a = SharedFiles.temporaryDirectory("synth-a"), b = SharedFiles.temporaryDirectory("synth-b"), c = SharedFiles.temporaryDirectory("synth-c")
        defer { for dir in [a, b, c] { try? FileManager.default.removeItem(at: dir) } }
        try SyntheticDataset.write(to: a, options: options)
        try SyntheticDataset.write(to: b, options: options)
        var other = options; other.seed = 8
        try SyntheticDataset.write(to: c, options: other)
        var compared = 0
        for folder in [SyntheticDataset.trainFolder, SyntheticDataset.queryFolder, SyntheticDataset.galleryFolder] {
            let namesA = try FileManager.default.contentsOfDirectory(atPath: a.appendingPathComponent(folder).path).sorted()
            let namesB = try FileManager.default.contentsOfDirectory(atPath: b.appendingPathComponent(folder).path).sorted()
            #expect(namesA == namesB)
            for name in namesA {
                let bytesA = try Data(contentsOf: a.appendingPathComponent(folder).appendingPathComponent(name))
                let bytesB = try Data(contentsOf: b.appendingPathComponent(folder).appendingPathComponent(name))
                #expect(bytesA == bytesB, "\(folder)/\(name) differs between two runs")
                compared += 1
            }
            let namesC = try FileManager.default.contentsOfDirectory(atPath: c.appendingPathComponent(folder).path).sorted()
            #expect(namesA != namesC, "seed 8 wrote the same \(folder) names as seed 7")
        }
        #expect(compared >= 20)
    }

    @Test func listingDigestChangesWithTheListingOnly() throws {
        let dir = SharedFiles.temporaryDirectory("synth-digest")
        defer { try? FileManager.default.removeItem(at: dir) }
        try SyntheticDataset.write(to: dir, options: .init(trainIDs: 2, testIDs: 2, imagesPerID: 2, cameras: 2, seed: 3))
        let first = try loadDataset(name: "market1501", root: dir.path).listingDigest
        #expect(try loadDataset(name: "market1501", root: dir.path).listingDigest == first)
        let train = dir.appendingPathComponent(SyntheticDataset.trainFolder)
        let victim = try FileManager.default.contentsOfDirectory(atPath: train.path).sorted()[0]
        try FileManager.default.removeItem(at: train.appendingPathComponent(victim))
        #expect(try loadDataset(name: "market1501", root: dir.path).listingDigest != first)
    }

    @Test func refusesToMixWithAnExistingDataset() throws {
        let options = SyntheticDataset.Options(trainIDs: 1, testIDs: 1, imagesPerID: 2, cameras: 2, distractors: 1, junk: 1)
        let dir = SharedFiles.temporaryDirectory("synth-twice")
        defer { try? FileManager.default.removeItem(at: dir) }
        try SyntheticDataset.write(to: dir, options: options)
        #expect(throws: SyntheticDatasetError.self) { try SyntheticDataset.write(to: dir, options: options) }
        let again = try SyntheticDataset.write(to: dir, options: options, replacingExisting: true)
        #expect(try readMarketFolder(dir.appendingPathComponent(SyntheticDataset.trainFolder)).count == again.train.images)
    }

    @Test func countsMatchWhatAMarketParserReads() throws {
        let (dir, summary) = try shared.get()
        let train = try readMarketFolder(dir.appendingPathComponent(SyntheticDataset.trainFolder))
        let query = try readMarketFolder(dir.appendingPathComponent(SyntheticDataset.queryFolder))
        let gallery = try readMarketFolder(dir.appendingPathComponent(SyntheticDataset.galleryFolder))
        #expect(marketSplitCounts(train) == summary.train)
        #expect(marketSplitCounts(query) == summary.query)
        #expect(marketSplitCounts(gallery) == summary.gallery)
        // What was promised by the options.
        let o = sharedOptions
        #expect(summary.train == .init(ids: o.trainIDs, images: o.trainIDs * o.imagesPerID, cameras: o.cameras))
        #expect(summary.gallery.ids == o.testIDs + 1)                       // + pid 0
        #expect(summary.gallery.images == o.testIDs * o.imagesPerID + o.distractorCount)
        #expect(summary.distractors == o.distractorCount && gallery.filter { $0.pid == 0 }.count == o.distractorCount)
        #expect(summary.junk == o.junkCount && gallery.filter { $0.pid == -1 }.count == o.junkCount)
        #expect(summary.query.ids == o.testIDs)
        #expect((2 * o.testIDs...3 * o.testIDs).contains(summary.query.images))
        #expect(summary.filesWritten == train.count + query.count + gallery.count)
        #expect(train.allSatisfy { $0.pid > 0 } && query.allSatisfy { $0.pid > 0 })
        #expect(train.allSatisfy { (1...o.cameras).contains($0.camera) })
    }

    @Test func testIdentitiesAreDisjointAndQueriesSpanCameras() throws {
        let (dir, summary) = try shared.get()
        let train = try readMarketFolder(dir.appendingPathComponent(SyntheticDataset.trainFolder))
        let query = try readMarketFolder(dir.appendingPathComponent(SyntheticDataset.queryFolder))
        let gallery = try readMarketFolder(dir.appendingPathComponent(SyntheticDataset.galleryFolder))
        let trainIDs = Set(train.map(\.pid)), queryIDs = Set(query.map(\.pid))
        #expect(trainIDs.isDisjoint(with: queryIDs))
        #expect(trainIDs.isDisjoint(with: gallery.map(\.pid)))
        #expect(queryIDs == Set(summary.testPIDs) && trainIDs == Set(summary.trainPIDs))
        for pid in queryIDs {
            let queryCameras = Set(query.filter { $0.pid == pid }.map(\.camera))
            let galleryCameras = Set(gallery.filter { $0.pid == pid }.map(\.camera))
            #expect(queryCameras.count >= 2, "test id \(pid) has queries from \(queryCameras.count) camera(s)")
            #expect(!galleryCameras.subtracting(queryCameras).isEmpty, "test id \(pid) has no gallery picture outside its query cameras")
        }
        // Every training identity is seen by at least two cameras.
        for pid in trainIDs { #expect(Set(train.filter { $0.pid == pid }.map(\.camera)).count >= 2) }
    }

    @Test func rawPixelsFindSomeIdentitiesButFewerThanHalf() throws {
        let (dir, _) = try shared.get()
        let query = try readMarketFolder(dir.appendingPathComponent(SyntheticDataset.queryFolder))
        let gallery = try readMarketFolder(dir.appendingPathComponent(SyntheticDataset.galleryFolder)).filter { $0.pid != -1 }
        let result = try pixelRank1(query: query, gallery: gallery) { files in try files.map { try pixelFeature($0.path) } }
        print("synthetic raw-pixel baseline (32x16, Euclidean, Market protocol): rank-1 \(result.rank1) over \(result.valid) queries, chance \(result.chance)")
        #expect(result.valid == query.count, "every query should have a valid match")
        #expect(result.rank1 < 0.5, "raw pixels reach rank-1 \(result.rank1): the dataset is too easy")
        #expect(result.rank1 > 2 * result.chance, "raw pixels reach rank-1 \(result.rank1), chance is \(result.chance): no identity signal")
    }
}
