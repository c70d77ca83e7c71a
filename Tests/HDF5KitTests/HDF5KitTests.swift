import Foundation
import Testing
import HDF5Kit
import TestSupport

@Suite struct HDF5KitTests {
    @Test func roundTripsDatasetsAndAttributes() throws {
        let dir = SharedFiles.temporaryDirectory()
        let path = dir.appendingPathComponent("t.h5").path
        do {
            let f = try HDF5File(creating: path)
            try f.root.write("a/b/x", [Float(1), 2, 3, 4, 5, 6], shape: [2, 3], checksum: true)
            try f.root.write("ids", [Int64(7), -1], shape: [2])
            try f.root.write("scalar", [Double(2.5)], shape: [])
            try f.root.writeStrings("paths", ["a.jpg", "b/é.jpg"])
            try f.root.setAttribute("format", string: "mancs-checkpoint")
            try f.root.setAttribute("step", [Int64(42)])
            try f.root.setAttribute("blocks", [Int64(3), 4, 6, 3], scalar: false)
        }
        let f = try HDF5File(openForReading: path)
        let (x, shape) = try f.root.read("a/b/x", as: Float.self)
        #expect(x == [1, 2, 3, 4, 5, 6])
        #expect(shape == [2, 3])
        #expect(try f.root.readRows("a/b/x", start: 1, count: 1, as: Float.self) == [4, 5, 6])
        #expect(try f.root.read("ids", as: Int64.self).values == [7, -1])
        #expect(try f.root.read("scalar", as: Float.self).values == [2.5])
        #expect(try f.root.shape("scalar") == [])
        #expect(try f.root.readStrings("paths") == ["a.jpg", "b/é.jpg"])
        #expect(try f.root.stringAttribute("format") == "mancs-checkpoint")
        #expect(try f.root.attribute("step", as: Int64.self) == [42])
        #expect(try f.root.attribute("blocks", as: Int64.self) == [3, 4, 6, 3])
        #expect(try f.root.members() == ["a", "ids", "paths", "scalar"])
        #expect(f.root.isGroup("a"))
        #expect(!f.root.isGroup("ids"))
        #expect(f.root.exists("a/b/x"))
        #expect(!f.root.exists("a/c/x"))
        #expect(throws: HDF5Error.self) { try f.root.read("nope", as: Float.self) }
    }

    @Test func reportsMissingAndDamagedFiles() throws {
        let dir = SharedFiles.temporaryDirectory()
        #expect(throws: HDF5Error.self) { try HDF5File(openForReading: dir.appendingPathComponent("none.h5").path) }
        let junk = dir.appendingPathComponent("junk.h5")
        try Data("not hdf5 at all".utf8).write(to: junk)
        #expect(throws: HDF5Error.self) { try HDF5File(openForReading: junk.path) }
    }
}
