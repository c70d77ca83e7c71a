import Foundation
import HDF5Kit
import ReIDEval
import Testing
import TestSupport

@Suite struct FeaturesFileTests {
    func sample() throws -> FeaturesFile {
        var rng = SplitMix64(seed: 3)
        var q = try randomSet(5, dim: 6, ids: 3, cams: 2, integer: false, rng: &rng)
        q.paths = (0..<5).map { "query/000\($0)_c1s1_0001_00.jpg" }
        let g = try randomSet(8, dim: 6, ids: 3, cams: 2, integer: false, rng: &rng)
        let mq = try randomSet(4, dim: 6, ids: 3, cams: 2, integer: false, rng: &rng)
        return try FeaturesFile(query: q, gallery: g, multiQuery: mq)
    }

    @Test func roundTrip() throws {
        let dir = SharedFiles.temporaryDirectory("eval-features")
        let path = dir.appendingPathComponent("f.h5").path
        let f = try sample()
        try f.write(to: path)
        let back = try FeaturesFile.read(path)
        #expect(back.query == f.query)
        #expect(back.gallery == f.gallery)
        #expect(back.multiQuery == f.multiQuery)
        #expect(back.query.paths?.first == "query/0000_c1s1_0001_00.jpg")
        #expect(back.gallery.paths == nil)
        #expect(back.dim == 6)
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.path) == ["f.h5"])  // no temporary left
    }

    /// A file written by another tool (h5py-style: float64 features, int32 labels) reads too.
    @Test func convertsOtherNumericTypes() throws {
        let path = SharedFiles.temporaryDirectory("eval-features").appendingPathComponent("other.h5").path
        let file = try HDF5File(creating: path)
        for split in ["query", "gallery"] {
            try file.root.write("/\(split)/features", [0.5, 1.5, 2.5, 3.5] as [Double], shape: [2, 2])
            try file.root.write("/\(split)/pids", [3, 4] as [Int32], shape: [2])
            try file.root.write("/\(split)/camids", [1, 2] as [Int32], shape: [2])
        }
        file.close()
        let f = try FeaturesFile.read(path)
        #expect(f.gallery.features == [0.5, 1.5, 2.5, 3.5])
        #expect(f.query.pids == [3, 4] && f.query.camids == [1, 2])
        #expect(f.multiQuery == nil)
    }

    /// Writes a file from (dataset, values, shape) triples; nil removes the dataset.
    func badFile(_ edit: (inout [String: (values: [Float], shape: [Int])]) -> Void) throws -> String {
        var sets: [String: (values: [Float], shape: [Int])] = [:]
        for split in ["query", "gallery"] {
            sets["/\(split)/features"] = ([1, 2, 3, 4, 5, 6], [3, 2])
            sets["/\(split)/pids"] = ([1, 2, 3], [3])
            sets["/\(split)/camids"] = ([1, 1, 2], [3])
        }
        edit(&sets)
        let path = SharedFiles.temporaryDirectory("eval-features").appendingPathComponent("bad.h5").path
        let file = try HDF5File(creating: path)
        for (name, d) in sets {
            if name.hasSuffix("features") { try file.root.write(name, d.values, shape: d.shape) }
            else { try file.root.write(name, d.values.map { Int64($0) }, shape: d.shape) }
        }
        file.close()
        return path
    }

    func expectError(_ path: String, mentioning words: [String]) {
        #expect {
            _ = try FeaturesFile.read(path)
        } throws: { error in
            let text = "\(error)"
            return error is EvalError && !text.contains("\n") && words.allSatisfy { text.contains($0) }
        }
    }

    @Test func missingDataset() throws {
        expectError(try badFile { $0["/gallery/camids"] = nil }, mentioning: ["missing dataset /gallery/camids"])
        expectError(try badFile { $0 = $0.filter { !$0.key.hasPrefix("/query") } }, mentioning: ["missing group /query"])
    }

    @Test func mismatchedLengths() throws {
        expectError(try badFile { $0["/query/pids"] = ([1, 2], [2]) },
                    mentioning: ["/query/pids has 2 entries", "/query/features has 3 rows"])
        expectError(try badFile { $0["/gallery/camids"] = ([1, 2, 3, 4], [4]) },
                    mentioning: ["/gallery/camids has 4 entries"])
    }

    @Test func differentDimensions() throws {
        expectError(try badFile { $0["/gallery/features"] = ([1, 2, 3, 4, 5, 6, 7, 8, 9], [3, 3]) },
                    mentioning: ["dimension 2", "/gallery/features has 3"])
    }

    @Test func wrongRank() throws {
        expectError(try badFile { $0["/query/features"] = ([1, 2, 3], [3]) }, mentioning: ["/query/features must be 2-D"])
    }

    @Test func notAFeaturesFile() throws {
        let dir = SharedFiles.temporaryDirectory("eval-features")
        let junk = dir.appendingPathComponent("junk.h5").path
        try Data("not hdf5".utf8).write(to: URL(fileURLWithPath: junk))
        expectError(junk, mentioning: ["junk.h5"])
        expectError(dir.appendingPathComponent("absent.h5").path, mentioning: ["absent.h5", "no such file"])
    }
}
