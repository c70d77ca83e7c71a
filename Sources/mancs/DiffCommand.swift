import ArgumentParser
import Foundation
import HDF5Kit

/// Compares the tensors of two HDF5 files (checkpoints, features, gradient
/// dumps): are two runs identical, or how far apart are they?
struct DiffCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "diff",
        abstract: "Compare the float tensors of two HDF5 files (checkpoints, features).",
        discussion: "Exit 0 when every tensor present in both files is within the tolerance (0 = bit-identical), 1 otherwise, 2 on unreadable input.")

    @Argument(help: "First file.") var first: String
    @Argument(help: "Second file.") var second: String
    @Option(help: "Comma-separated groups to compare (default: every group).") var groups: String?
    @Option(help: "Largest allowed relative L2 difference per tensor (0 = bit-identical).") var tolerance: Double = 0
    @Option(help: "Absolute floor: a tensor whose largest difference is at most this never differs (gradients that are zero in exact arithmetic, e.g. a bias before BatchNorm, hold only rounding noise; default 0).") var absoluteTolerance: Double = 0
    @Flag(help: "List every tensor, not only the ones that differ.") var verbose = false
    @Flag(help: "Apply --tolerance to every compared tensor taken together as one vector (e.g. two models' whole parameter vectors) instead of to each tensor.") var whole = false

    func validate() throws {
        try FlagCheck.real("tolerance", tolerance)
        try FlagCheck.real("absolute-tolerance", absoluteTolerance)
    }

    func run() throws {
        let a: HDF5File, b: HDF5File
        do {
            for path in [first, second] { try FileProbe.check(path, kind: "hdf5") }  // libhdf5 may crash: a child reads first
            a = try HDF5File(openForReading: first)
            b = try HDF5File(openForReading: second)
        } catch {
            FileHandle.standardError.write(Data("mancs diff: \(error)\n".utf8))
            throw ExitCode(2)
        }
        let roots = groups.map { $0.split(separator: ",").map { "/" + $0.trimmingCharacters(in: CharacterSet(charactersIn: "/ ")) } } ?? ["/"]
        var compared = 0, differing = 0, onlyOne: [String] = []
        var worst = (name: "", rel: 0.0)
        var wholeDiff2 = 0.0, wholeRef2 = 0.0
        for root in roots {
            let namesA = Set(try datasets(in: a, under: root)), namesB = Set(try datasets(in: b, under: root))
            onlyOne += namesA.symmetricDifference(namesB).sorted()
            for name in namesA.intersection(namesB).sorted() {
                guard let x = try? a.root.read(name, as: Double.self), let y = try? b.root.read(name, as: Double.self) else { continue }
                compared += 1
                if x.shape != y.shape {
                    differing += 1
                    print("\(name): shapes differ \(x.shape) vs \(y.shape)")
                    continue
                }
                var diff2 = 0.0, ref2 = 0.0, maxAbs = 0.0
                for i in 0..<x.values.count {
                    let d = x.values[i] - y.values[i]
                    diff2 += d * d; ref2 += x.values[i] * x.values[i]; maxAbs = max(maxAbs, abs(d))
                }
                wholeDiff2 += diff2; wholeRef2 += ref2
                let rel = diff2 == 0 ? 0 : sqrt(diff2) / max(sqrt(ref2), 1e-30)
                if rel > worst.rel && maxAbs > absoluteTolerance { worst = (name, rel) }
                let bad = !whole && (tolerance == 0 ? diff2 != 0 : rel > tolerance) && maxAbs > absoluteTolerance
                if bad { differing += 1 }
                if bad || verbose { print(String(format: "%@: relative L2 %.3e, max abs %.3e%@", name, rel, maxAbs, bad ? "  DIFFERS" : "")) }
            }
        }
        for n in onlyOne { print("\(n): only in one file") }
        print("compared \(compared) tensors: \(differing) differ\(tolerance == 0 ? "" : " beyond \(tolerance)"), worst \(worst.name.isEmpty ? "-" : worst.name) \(String(format: "%.3e", worst.rel))")
        if compared == 0 {
            FileHandle.standardError.write(Data("mancs diff: no tensor in common under \(roots.joined(separator: ","))\n".utf8))
            throw ExitCode(2)
        }
        var wholeDiffers = false
        if whole {
            let rel = wholeDiff2 == 0 ? 0 : sqrt(wholeDiff2) / max(sqrt(wholeRef2), 1e-30)
            wholeDiffers = tolerance == 0 ? wholeDiff2 != 0 : rel > tolerance
            print(String(format: "whole vector of the %d tensors: relative L2 %.3e%@", compared, rel, wholeDiffers ? "  DIFFERS" : ""))
        }
        if differing > 0 || wholeDiffers { throw ExitCode(1) }
    }

    /// Paths of every numeric dataset below a group.
    func datasets(in file: HDF5File, under path: String) throws -> [String] {
        guard path == "/" || file.root.exists(path) else { return [] }
        let group = try file.root.group(path)
        var out: [String] = []
        // walkDatasets refuses link cycles and links to other files.
        try group.walkDatasets { g, name in out.append(g.path == "/" ? "/" + name : g.path + "/" + name) }
        return out
    }
}
