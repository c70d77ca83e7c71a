import Foundation

/// Locates `shared/` (fixtures, reference) from the package root: it sits beside
/// the checkout (`../shared`), or wherever MANCS_SHARED points.
public enum SharedFiles {
    public static var packageRoot: URL {
        // Tests/TestSupport/Fixtures.swift -> package root
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    }

    public static var sharedDirectory: URL? {
        if let env = ProcessInfo.processInfo.environment["MANCS_SHARED"] { return URL(fileURLWithPath: env) }
        let candidate = packageRoot.deletingLastPathComponent().appendingPathComponent("shared")
        return FileManager.default.fileExists(atPath: candidate.path) ? candidate : nil
    }

    /// Every `*.h5` fixture under shared/fixtures, sorted.
    public static var fixtures: [URL] {
        guard let dir = sharedDirectory?.appendingPathComponent("fixtures"),
              let names = try? FileManager.default.contentsOfDirectory(atPath: dir.path) else { return [] }
        return names.filter { $0.hasSuffix(".h5") }.sorted().map { dir.appendingPathComponent($0) }
    }

    /// A fresh temporary directory for one test.
    public static func temporaryDirectory(_ label: String = "mancs-test") -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("\(label)-\(UUID().uuidString)")
        try? FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }
}
