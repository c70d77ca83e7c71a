import ArgumentParser
import MancsModel
import MancsTraining
import ReIDData
import ReIDEval

/// A setting that is one of a few names (`--triplet-mining local`). The enum
/// parses itself, from a flag or a config file, with one message that names
/// the flag and every allowed value, taken from the enum's own cases.
/// (mancs-dist's flags pass the text to `init(choice:)` rather than declaring
/// the enum as the option's type: a bad value is then the one settings error
/// rank 0 prints, exit 2, not a parser usage error from every rank.)
public protocol SettingChoice: RawRepresentable, CaseIterable, Codable, Sendable, ExpressibleByArgument
where RawValue == String {
    /// The flag (and config key) without its dashes.
    static var flag: String { get }
    /// "must be a, b or c": what the refusal of an unknown value says.
    static var mustBe: String { get }
}

extension SettingChoice {
    /// The allowed values, "a, b or c".
    public static var choiceList: String {
        let names = allCases.map(\.rawValue)
        return names.count < 2 ? names.joined() : names.dropLast().joined(separator: ", ") + " or " + names.last!
    }
    public static var mustBe: String { "must be \(choiceList)" }
    /// "a | b | c", for help texts.
    public static var alternatives: String { allCases.map(\.rawValue).joined(separator: " | ") }

    public init(choice text: String) throws {
        guard let value = Self(rawValue: text) else { throw SettingsError("--\(Self.flag) \(Self.mustBe), got '\(text)'") }
        self = value
    }
}

/// Where triplets are mined (`--triplet-mining`).
public enum TripletMining: String, SettingChoice {
    /// Over the whole (micro-)batch of every rank: the rank count does not change the loss.
    case global
    /// Over each rank's own shard.
    case local
    public static let flag = "triplet-mining"
}

/// Which statistics training BatchNorm uses (`--batch-norm`).
public enum BatchNormMode: String, SettingChoice {
    /// The whole (micro-)batch's, over every rank.
    case sync
    /// Each rank's shard's.
    case local
    public static let flag = "batch-norm"
}

/// How the triplet loss picks a negative (`--negatives`).
public enum NegativesChoice: String, SettingChoice {
    case curriculum, hardest, random
    public static let flag = "negatives"
}

extension DatasetName: SettingChoice {
    public static let flag = "dataset"
    public static var mustBe: String { "must be one of \(allCases.map(\.rawValue).joined(separator: ", "))" }
}

extension InitScheme: SettingChoice {
    public static let flag = "init"
}

extension LearningRateSchedule.Kind: SettingChoice {
    public static let flag = "lr-schedule"
}

extension DistanceMetric: SettingChoice {
    public static let flag = "eval-distance"
}

/// Where a run starts (`--resume`): fresh, the newest valid checkpoint of the
/// run directory, or a given checkpoint file. Written as `none`, `auto` or the path.
public enum ResumeChoice: Codable, Equatable, Sendable, ExpressibleByArgument, CustomStringConvertible {
    case none
    case auto
    case path(String)

    public init(parsing text: String) {
        switch text {
        case "none": self = .none
        case "auto": self = .auto
        default: self = .path(text)
        }
    }
    public init?(argument: String) { self.init(parsing: argument) }
    public init(from decoder: Decoder) throws { self.init(parsing: try decoder.singleValueContainer().decode(String.self)) }
    public func encode(to encoder: Encoder) throws {
        var c = encoder.singleValueContainer()
        try c.encode(description)
    }
    public var description: String {
        switch self {
        case .none: return "none"
        case .auto: return "auto"
        case .path(let p): return p
        }
    }
}

/// A setting that cannot be used, in one line naming the flag (or the config file).
public struct SettingsError: Error, CustomStringConvertible, Equatable {
    public var description: String
    public init(_ description: String) { self.description = description }
}
