import Foundation

/// Old spellings that still work, each with a one-line note on stderr.
/// - `mancs eval --json FILE` wrote the metrics to FILE; `--json` now means what it
///   means in `data`, `inspect` and `bench` (print JSON instead of the table), and
///   the file is `--json-out FILE`.
/// - `mancs bench --batch N` was the training batch of all ranks together; `--batch`
///   elsewhere is the images per forward pass of one rank, so bench's is `--global-batch N`.
enum DeprecatedSpellings {
    static func rewrite(_ args: [String]) -> [String] {
        switch args.first {
        case "eval":
            return rename(args, old: "--json", new: "--json-out", valueRequired: true,
                          note: "mancs eval: --json FILE is deprecated; use --json-out FILE (--json alone prints the JSON instead of the table)")
        case "bench":
            return rename(args, old: "--batch", new: "--global-batch", valueRequired: false,
                          note: "mancs bench: --batch is deprecated; use --global-batch (the batch of all ranks together; elsewhere --batch is images per forward pass of one rank)")
        default:
            return args
        }
    }

    /// Replaces `old VALUE` and `old=VALUE` with `new VALUE`, noting it once. With
    /// `valueRequired`, a bare `old` (followed by another flag or nothing) is a
    /// different, current flag and stays as it is.
    static func rename(_ args: [String], old: String, new: String, valueRequired: Bool, note: String) -> [String] {
        var out: [String] = [], i = 0, noted = false
        func noteOnce() {
            guard !noted else { return }
            noted = true
            FileHandle.standardError.write(Data((note + "\n").utf8))
        }
        while i < args.count {
            let a = args[i]
            if a.hasPrefix(old + "=") {
                noteOnce(); out += [new, String(a.dropFirst(old.count + 1))]
            } else if a == old, i + 1 < args.count, !valueRequired || !args[i + 1].hasPrefix("-") {
                noteOnce(); out += [new, args[i + 1]]; i += 1
            } else if a == old, !valueRequired {
                noteOnce(); out.append(new)  // no value: the parser names what is missing
            } else {
                out.append(a)
            }
            i += 1
        }
        return out
    }
}
