import Foundation
import HDF5Kit
import Testing
import TestSupport

/// Files HDF5Kit did not write: each is refused with an error naming the file
/// and the object, never followed out of the file, never sized from a header
/// without checking, never read past a buffer.
@Suite struct HostileFileTests {
    func path(_ name: String) -> String { SharedFiles.temporaryDirectory("hostile").appendingPathComponent(name).path }

    func message(_ body: () throws -> Void) -> String {
        do { try body(); return "no error" } catch { return "\(error)" }
    }

    @Test func hardLinkCycleIsRefusedByTheWalk() throws {
        let p = path("cycle.h5")
        HostileHDF5.make(p) { f in
            HostileHDF5.group(f, "/model")
            HostileHDF5.floats(f, "/model/w", [1, 2])
            HostileHDF5.hardLink(f, "/", "/model/loop")  // h5py: f["model/loop"] = f["/"]
        }
        let file = try HDF5File(openForReading: p)
        let m = message { try file.root.walkDatasets { _, _ in } }
        #expect(m.contains("cycle") && m.contains("/model/loop"), "\(m)")
    }

    @Test func aGroupLinkedTwiceIsRefused() throws {
        let p = path("alias.h5")
        HostileHDF5.make(p) { f in
            HostileHDF5.group(f, "/a")
            HostileHDF5.floats(f, "/a/w", [1])
            HostileHDF5.hardLink(f, "/a", "/b")
        }
        let file = try HDF5File(openForReading: p)
        let m = message { try file.root.walkDatasets { _, _ in } }
        #expect(m.contains("/b") && m.contains("cycle"), "\(m)")
    }

    @Test func softAndExternalLinksAreNotFollowed() throws {
        let other = path("other.h5")
        HostileHDF5.make(other) { f in HostileHDF5.floats(f, "/secret", [42]) }
        let p = path("links.h5")
        HostileHDF5.make(p) { f in
            HostileHDF5.group(f, "/model")
            HostileHDF5.floats(f, "/model/w", [1])
            HostileHDF5.externalLink(f, file: other, object: "/secret", "/model/ext")
            HostileHDF5.softLink(f, "/model/w", "/model/soft")
            HostileHDF5.externalLink(f, file: other, object: "/", "/elsewhere")
        }
        let file = try HDF5File(openForReading: p)
        let ext = message { _ = try file.root.read("model/ext", as: Float.self) }
        #expect(ext.contains("external link") && ext.contains("/model/ext"), "\(ext)")
        let soft = message { _ = try file.root.read("model/soft", as: Float.self) }
        #expect(soft.contains("soft link") && soft.contains("/model/soft"), "\(soft)")
        let through = message { _ = try file.root.shape("elsewhere/secret") }
        #expect(through.contains("external link"), "\(through)")
        #expect(throws: HDF5Error.self) { try file.root.walkDatasets { _, _ in } }
        #expect(try file.root.read("model/w", as: Float.self).values == [1])
    }

    @Test func externalStorageIsRefused() throws {
        let raw = path("raw.bin")
        try Data(repeating: 0x41, count: 16).write(to: URL(fileURLWithPath: raw))
        let p = path("extstore.h5")
        HostileHDF5.make(p) { f in HostileHDF5.externalStorage(f, "/w", rawFile: raw, count: 4) }
        let file = try HDF5File(openForReading: p)
        let m = message { _ = try file.root.read("w", as: Float.self) }
        #expect(m.contains("external") && m.contains("/w"), "\(m)")
    }

    @Test func stringAttributeWithManyElementsIsRefused() throws {
        let p = path("attrs.h5")
        let many = (0..<64).map { "mancs-checkpoint-\($0)" }
        HostileHDF5.make(p) { f in
            HostileHDF5.stringAttribute(f, object: "/", "vlen", many, dims: [64])
            HostileHDF5.stringAttribute(f, object: "/", "fixed", many, dims: [64], fixed: 32)
            HostileHDF5.stringAttribute(f, object: "/", "one", ["ok"], dims: [1], fixed: 8)
            HostileHDF5.stringAttribute(f, object: "/", "scalar", ["fine"], dims: [])
        }
        let file = try HDF5File(openForReading: p)
        for name in ["vlen", "fixed"] {
            let m = message { _ = try file.root.stringAttribute(name) }
            #expect(m.contains("64") && m.contains(name), "\(m)")
        }
        #expect(try file.root.stringAttribute("one") == "ok")
        #expect(try file.root.stringAttribute("scalar") == "fine")
    }

    @Test func stringDatasetsAreSizedFromTheirDataspace() throws {
        let p = path("paths.h5")
        let six = ["a", "b", "c", "d", "e", "f"]
        HostileHDF5.make(p) { f in
            HostileHDF5.stringDataset(f, "/vlen2d", six, dims: [2, 3])
            HostileHDF5.stringDataset(f, "/fixed2d", six, dims: [2, 3], fixed: 4)
            HostileHDF5.stringDataset(f, "/fixed1d", six, dims: [6], fixed: 4)
            HostileHDF5.stringDataset(f, "/scalar", ["x.jpg"], dims: [])
        }
        let file = try HDF5File(openForReading: p)
        for name in ["vlen2d", "fixed2d"] {
            let m = message { _ = try file.root.readStrings(name) }
            #expect(m.contains("2 x 3") || m.contains("[2, 3]"), "\(m)")
        }
        #expect(try file.root.readStrings("fixed1d") == six)
        #expect(try file.root.readStrings("scalar") == ["x.jpg"])
    }

    @Test func datasetDimsAreCheckedBeforeAllocating() throws {
        let p = path("huge.h5")
        HostileHDF5.make(p) { f in
            HostileHDF5.hugeEmpty(f, "/terabytes", dims: [1 << 20, 1 << 20])
            HostileHDF5.hugeEmpty(f, "/small", dims: [4, 1024])
        }
        let file = try HDF5File(openForReading: p)
        let m = message { _ = try file.root.read("terabytes", as: Float.self) }
        #expect(m.contains("/terabytes") && m.contains("1048576"), "\(m)")
        let rows = message { _ = try file.root.readRows("terabytes", start: 0, count: 1 << 19, as: Float.self) }
        #expect(rows.contains("/terabytes"), "\(rows)")
        // No storage at all: a dataset that holds nothing is refused too, not read as zeros.
        let empty = message { _ = try file.root.read("small", as: Float.self) }
        #expect(empty.contains("/small") && empty.contains("no data"), "\(empty)")
    }

    @Test func fuzzRegressionsGiveErrorsNotCrashes() throws {
        // Files the fuzzer found (Tests/fuzz/regressions/hdf5): each opens with an
        // error or is read (as the fuzz target reads it) with one; none may
        // crash or hang.
        let dir = SharedFiles.packageRoot.appendingPathComponent("Tests/fuzz/regressions/hdf5")
        let names = try FileManager.default.contentsOfDirectory(atPath: dir.path).filter { $0.hasSuffix(".h5") }
        #expect(!names.isEmpty)
        for name in names {
            let path = dir.appendingPathComponent(name).path
            do {
                let file = try HDF5File(openForReading: path)
                var errors: [String] = []
                func record(_ body: () throws -> Void) {
                    do { try body() } catch { errors.append("\(error)") }
                }
                record { try file.root.walkDatasets { g, n in
                    record { _ = try g.read(n, as: Double.self) }
                    record { _ = try g.readStrings(n) }
                    record { _ = try g.readRows(n, start: 0, count: 1, as: Float.self) }
                } }
                for a in ["format", "version", "global_step", "epoch", "world_size", "seed", "config"] where file.root.hasAttribute(a) {
                    record { _ = try file.root.stringAttribute(a) }
                    record { _ = try file.root.attribute(a, as: Int64.self) }
                }
                #expect(errors.allSatisfy { $0.contains(path) }, "\(errors)")
            } catch let e as HDF5Error {
                #expect(e.message.contains(path))
            }
        }
    }
}
