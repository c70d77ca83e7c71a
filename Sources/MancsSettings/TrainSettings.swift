import Foundation
import Yams

/// Every setting of a training run, in one value: the defaults, overridden by
/// `--config FILE.yaml`, overridden by command-line flags. Written to
/// `RUN_DIR/config.yaml` and (as JSON) into every checkpoint. Encoded flat, one
/// key per flag (`ids-per-batch: 16`), so a config file reads like the command line.
public struct TrainSettings: Codable, Equatable, Sendable {
    public var data = DataSettings()
    public var model = ModelSettings()
    public var objective = ObjectiveSettings()
    public var curriculum = CurriculumSettings()
    public var optimiser = OptimiserSettings()
    public var run = RunSettings()
    public var evaluation = EvaluationSettings()

    public init() {}

    /// Every key a settings object may hold: the flag names.
    public static let keys: [String] = DataSettings.CodingKeys.allCases.map(\.stringValue)
        + ModelSettings.CodingKeys.allCases.map(\.stringValue) + ObjectiveSettings.CodingKeys.allCases.map(\.stringValue)
        + CurriculumSettings.CodingKeys.allCases.map(\.stringValue) + OptimiserSettings.CodingKeys.allCases.map(\.stringValue)
        + RunSettings.CodingKeys.allCases.map(\.stringValue) + EvaluationSettings.CodingKeys.allCases.map(\.stringValue)

    /// Decodes a partial settings object: absent keys keep their defaults,
    /// unknown keys are an error (a typo in a config file must not pass silently).
    public init(from decoder: Decoder) throws {
        let container = try decoder.container(keyedBy: SettingKey.self)
        let known = Set(Self.keys)
        if let unknown = container.allKeys.first(where: { !known.contains($0.stringValue) }) {
            throw SettingsError("unknown setting '\(unknown.stringValue)' (settings are the flag names, e.g. ids-per-batch)")
        }
        data = try DataSettings(from: decoder); model = try ModelSettings(from: decoder)
        objective = try ObjectiveSettings(from: decoder); curriculum = try CurriculumSettings(from: decoder)
        optimiser = try OptimiserSettings(from: decoder); run = try RunSettings(from: decoder)
        evaluation = try EvaluationSettings(from: decoder)
    }

    /// One flat object: every group writes its keys into the same keyed
    /// container (JSONEncoder and Yams both hand out the one container again).
    public func encode(to encoder: Encoder) throws {
        try data.encode(to: encoder); try model.encode(to: encoder); try objective.encode(to: encoder)
        try curriculum.encode(to: encoder); try optimiser.encode(to: encoder); try run.encode(to: encoder)
        try evaluation.encode(to: encoder)
    }

    // MARK: YAML

    /// Settings from a config file's text (`--config`); `path` names the file in errors.
    public init(yaml text: String, path: String) throws {
        do {
            self = try YAMLDecoder().decode(TrainSettings.self, from: text)
        } catch let e as SettingsError {
            throw SettingsError("--config \(path): \(e.description)")
        } catch DecodingError.dataCorrupted(let context) where context.underlyingError is SettingsError {
            // Yams wraps what a settings group refused (an unknown key, a bad choice).
            throw SettingsError("--config \(path): \(context.underlyingError!)")
        } catch {
            throw SettingsError("--config \(path): not valid settings YAML (\(error))")
        }
    }

    /// Settings from a config file (`--config`).
    public init(contentsOfConfig path: String) throws {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
            throw SettingsError("--config \(path): cannot read the file")
        }
        try self.init(yaml: text, path: path)
    }

    /// YAML text, one line per key (`--print-config`; config.yaml).
    public func yaml() throws -> String { try YAMLEncoder().encode(self) }

    /// config.yaml: the YAML with a header line.
    public func configFileText() throws -> String {
        "# Effective settings of this run (defaults < --config < flags).\n" + (try yaml())
    }

    // MARK: Derived

    /// Micro-batches of one step over every rank: each trains on whole identities.
    public func shards(ranks: Int) -> Int { ranks * optimiser.accumulate }
}

/// A key of the flat settings object.
struct SettingKey: CodingKey {
    var stringValue: String
    var intValue: Int? { nil }
    init(stringValue: String) { self.stringValue = stringValue }
    init?(intValue: Int) { nil }
}

