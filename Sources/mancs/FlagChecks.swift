import ArgumentParser
import Distributed

/// Range checks of numeric flags, shared by every subcommand's `validate()`:
/// a zero, a negative, a NaN or an absurd size is one error naming the flag
/// (exit 64, with the usage), before anything is read or allocated. The
/// messages are mancs-dist's (`TrainSettings.validateRanges`).
enum FlagCheck {
    /// `--flag` must lie in `range`.
    static func int(_ flag: String, _ x: Int, _ range: ClosedRange<Int>) throws {
        guard range.contains(x) else {
            throw ValidationError("--\(flag) must be between \(range.lowerBound) and \(range.upperBound), got \(x)")
        }
    }

    /// An optional `--flag`: checked when given.
    static func int(_ flag: String, _ x: Int?, _ range: ClosedRange<Int>) throws {
        if let x { try int(flag, x, range) }
    }

    /// `--flag` must be finite and non-negative (positive with `positive`), and at most `max`.
    static func real(_ flag: String, _ x: Double, positive: Bool = false, max: Double = .greatestFiniteMagnitude) throws {
        guard x.isFinite, positive ? x > 0 : x >= 0 else {
            throw ValidationError("--\(flag) must be a finite \(positive ? "positive" : "non-negative") number, got \(x)")
        }
        guard x <= max else { throw ValidationError("--\(flag) must be at most \(max), got \(x)") }
    }

    // Shared limits, so one flag has one range in every command.
    /// Input size of the network (as mancs-dist's --height/--width).
    static let height = 32...4096, width = 16...4096
    /// Images per forward pass of one rank.
    static let batch = 1...4096
    static let threads = 0...4096, loaderThreads = 1...256
}

/// `--threads`, the same flag with the same meaning, default and help in every
/// subcommand and in mancs-dist: compute threads per rank, 0 = this rank's
/// share of its node (`NodeShare.defaultComputeThreads`).
struct ThreadsOption: ParsableArguments {
    @Option(help: "Compute threads per rank: GEMMs and layers are split over them (default 0 = this rank's share of the node: the cores it may run on, at most cores / ranks on the node). Several per rank under mpirun need --bind-to none or --map-by slot:PE=N.")
    var threads: Int?  // optional so that --help shows mancs-dist's wording only

    func validate() throws { try FlagCheck.int("threads", threads, FlagCheck.threads) }

    /// The count to run with: the given one, or this rank's share of its node.
    var resolved: Int { (threads ?? 0) > 0 ? threads! : NodeShare.defaultComputeThreads }
}

/// `--batch` of the commands that run the network for inference (extract,
/// eval --checkpoint, visualize): one meaning everywhere. (mancs bench's
/// training batch of all ranks together is `--global-batch`.)
enum BatchFlag {
    static let help = "Images per forward pass of each rank (the features do not depend on it; memory grows with it)."
}
