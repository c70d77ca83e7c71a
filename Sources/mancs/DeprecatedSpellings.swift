import Foundation

/// Old spellings that still work, each with a one-line note on stderr.
/// `mancs eval --json FILE` wrote the metrics to FILE; `--json` now means what it
/// means in `data`, `inspect` and `bench` (print JSON instead of the table), and
/// the file is `--json-out FILE`.
enum DeprecatedSpellings {
    static func rewrite(_ args: [String]) -> [String] {
        guard args.first == "eval" else { return args }
        var out: [String] = [], i = 0, noted = false
        func note() {
            guard !noted else { return }
            noted = true
            FileHandle.standardError.write(Data("mancs eval: --json FILE is deprecated; use --json-out FILE (--json alone prints the JSON instead of the table)\n".utf8))
        }
        while i < args.count {
            let a = args[i]
            if a.hasPrefix("--json=") {
                note(); out += ["--json-out", String(a.dropFirst("--json=".count))]
            } else if a == "--json", i + 1 < args.count, !args[i + 1].hasPrefix("-") {
                note(); out += ["--json-out", args[i + 1]]; i += 1
            } else {
                out.append(a)
            }
            i += 1
        }
        return out
    }
}
