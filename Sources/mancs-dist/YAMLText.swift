import Yams

/// YAML text of an encodable value (Yams).
enum YAMLText {
    static func encode<T: Encodable>(_ value: T) throws -> String { try YAMLEncoder().encode(value) }
}
