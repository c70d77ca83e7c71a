import CHDF5
import Foundation
import HDF5Kit
import Testing
import TestSupport

/// Variable-length strings are read from the file's global heap by HDF5Kit
/// itself (libhdf5 1.10.8 trusts the heap's sizes: see VariableStrings.swift).
@Suite struct VariableStringTests {
    func path(_ name: String) -> String { SharedFiles.temporaryDirectory("vlen").appendingPathComponent(name).path }

    func message(_ body: () throws -> Void) -> String {
        do { try body(); return "no error" } catch { return "\(error)" }
    }

    @Test func readsStringsAcrossHeapCollectionsAndWhileWriting() throws {
        // Strings over 4 KiB each get collections of their own; empty strings none.
        let strings = ["", "a.jpg", "b/é.jpg", String(repeating: "x", count: 5000), String(repeating: "日本", count: 3000), ""]
        let p = path("many.h5")
        do {
            let f = try HDF5File(creating: p)
            try f.root.writeStrings("paths", strings)
            try f.root.setAttribute("format", string: "mancs-checkpoint")
            // Read back through the same open file: libhdf5's cache is flushed first.
            #expect(try f.root.readStrings("paths") == strings)
            #expect(try f.root.stringAttribute("format") == "mancs-checkpoint")
        }
        let f = try HDF5File(openForReading: p)
        #expect(try f.root.readStrings("paths") == strings)
        #expect(try f.root.stringAttribute("format") == "mancs-checkpoint")
    }

    @Test func readsAFileWithAUserBlock() throws {
        // Addresses in the file are relative to the end of a user block.
        let p = path("userblock.h5")
        withHDF5Lock {
            let fcpl = H5Pcreate(mancs_h5p_file_create())
            H5Pset_userblock(fcpl, 1024)
            let f = H5Fcreate(p, mancs_h5f_acc_trunc(), fcpl, mancs_h5p_default())
            precondition(f >= 0)
            H5Pclose(fcpl); H5Fclose(f)
        }
        do {
            let f = try HDF5File(openForReading: p, writable: true)
            try f.root.writeStrings("paths", ["one", "two"])
        }
        let f = try HDF5File(openForReading: p)
        #expect(try f.root.readStrings("paths") == ["one", "two"])
    }

    /// A file with one variable-length string attribute whose heap collection
    /// `damage` rewrites (given the file's bytes and the collection's offset).
    func damaged(_ name: String, _ damage: (inout [UInt8], Int) -> Void) throws -> String {
        let p = path(name)
        do { try HDF5File(creating: p).root.setAttribute("format", string: "mancs-checkpoint") }
        var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: p)))
        let gcol = Array("GCOL".utf8)
        let at = try #require((0..<(bytes.count - 4)).first { Array(bytes[$0..<($0 + 4)]) == gcol })
        damage(&bytes, at)
        try Data(bytes).write(to: URL(fileURLWithPath: p))
        return p
    }

    func put(_ bytes: inout [UInt8], _ value: UInt64, at offset: Int) {
        for k in 0..<8 { bytes[offset + k] = UInt8(truncatingIfNeeded: value >> (8 * UInt64(k))) }
    }

    @Test func damagedHeapCollectionsAreRefused() throws {
        // Layout: "GCOL", version, 3 reserved, collection size (8), then the
        // first object: index (2), references (2), reserved (4), size (8), data.
        let cases: [(String, (inout [UInt8], Int) -> Void, String)] = [
            ("object-4gib.h5", { b, at in self.put(&b, 0xffff_ffff, at: at + 24) }, "runs past its end"),
            ("collection-huge.h5", { b, at in self.put(&b, 1 << 40, at: at + 8) }, "more bytes than the file holds"),
            ("no-signature.h5", { b, at in b[at] = UInt8(ascii: "X") }, "no heap collection"),
            ("wrong-index.h5", { b, at in b[at + 16] = 7 }, "has none such"),
            ("empty-free-space.h5", { b, at in b[at + 16] = 0; self.put(&b, 0, at: at + 24) }, "empty free-space entry"),
        ]
        for (name, damage, why) in cases {
            let p = try damaged(name, damage)
            let f = try HDF5File(openForReading: p)
            let m = message { _ = try f.root.stringAttribute("format") }
            #expect(m.contains(p) && m.contains("attribute format") && m.contains(why), "\(name): \(m)")
        }
    }

    @Test func fuzzRegressionVlenAttributeIsAnError() throws {
        // Found by Tests/fuzz/run.sh: a heap object claiming 4 GiB made
        // libhdf5's H5HG_read crash `mancs inspect` (a segmentation fault).
        let p = SharedFiles.packageRoot.appendingPathComponent("Tests/fuzz/regressions/hdf5/h5hg-read-vlen-attribute-segfault.h5").path
        let f = try HDF5File(openForReading: p)
        let m = message { _ = try f.root.stringAttribute("format") }
        #expect(m.contains(p) && m.contains("runs past its end"), "\(m)")
    }
}
