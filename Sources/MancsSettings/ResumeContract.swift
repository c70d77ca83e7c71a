import Foundation

/// What a checkpoint's run and the resuming run must agree on. The checkpoint
/// stores its settings as JSON (`{"model": MancsConfig, "train": TrainSettings}`,
/// keys as in config.yaml); resuming compares them key by key and refuses,
/// listing every difference, before any tensor is read. Tensor shapes alone
/// miss a changed input size, split, P or K.
public enum ResumeContract {
    /// Settings whose change makes the checkpoint another run's: always refused.
    /// (A flag that changes what a step computes belongs here.)
    static let fixed: [String] = [
        "train.height", "train.width", "train.base-width", "train.blocks", "train.last-stride",
        "train.attention-stages", "train.dataset", "train.ids-per-batch", "train.images-per-id",
        "model.numClasses",  // the training split's identities
    ]
    /// Settings a user may change on purpose, with --resume-force.
    static let forceable: [String] = ["train.lr", "train.epochs"]
    /// The training algorithm's choices, also changeable with --resume-force. A
    /// checkpoint from before these settings existed was trained with local ones.
    static let algorithm: [(key: String, absent: String)] = [("train.triplet-mining", "local"), ("train.batch-norm", "local")]

    /// The keys (of `keys`) whose values differ, each as `key: stored -> current`.
    /// A key missing from either side (an older checkpoint) is not compared.
    static func differences(stored: String, current: String, keys: [String]) -> [String] {
        func object(_ text: String) -> [String: Any] {
            (try? JSONSerialization.jsonObject(with: Data(text.utf8))) as? [String: Any] ?? [:]
        }
        func value(_ o: [String: Any], _ key: String) -> Any? {
            let parts = key.split(separator: ".", maxSplits: 1).map(String.init)
            return (o[parts[0]] as? [String: Any])?[parts[1]]
        }
        func text(_ v: Any) -> String {  // canonical JSON of one value
            let data = (try? JSONSerialization.data(withJSONObject: [v], options: [.sortedKeys])) ?? Data()
            return String(decoding: data.dropFirst().dropLast(), as: UTF8.self)
        }
        let a = object(stored), b = object(current)
        return keys.compactMap { key -> String? in
            guard let x = value(a, key), let y = value(b, key) else { return nil }
            let (tx, ty) = (text(x), text(y))
            return tx == ty ? nil : "\(key.split(separator: ".")[1]): \(tx) -> \(ty)"
        }
    }

    /// The algorithm choices (`algorithm`) that differ, each as `--key stored (this run: current)`;
    /// a key the checkpoint lacks has its `absent` value.
    static func algorithmDifferences(stored: String, current: String) -> [String] {
        func train(_ text: String) -> [String: Any] {
            let o = (try? JSONSerialization.jsonObject(with: Data(text.utf8))) as? [String: Any]
            return o?["train"] as? [String: Any] ?? [:]
        }
        let (theirs, mine) = (train(stored), train(current))
        return algorithm.compactMap { key, absent in
            let name = String(key.split(separator: ".")[1])
            let (a, b) = (theirs[name] as? String ?? absent, mine[name] as? String ?? absent)
            return a == b ? nil : "--\(name) \(a) (this run: \(b))"
        }
    }

    /// Throws, listing the differing keys, when `current` may not continue
    /// `stored`; returns the warnings of what --resume-force let through.
    @discardableResult
    public static func check(stored: String, current: String, force: Bool, checkpoint: String) throws -> [String] {
        let hard = differences(stored: stored, current: current, keys: fixed)
        let soft = differences(stored: stored, current: current, keys: forceable)
        if !hard.isEmpty {
            throw SettingsError("\(checkpoint) was written with other settings (\(hard.joined(separator: "; "))): "
                                + "another architecture, input, split or batch; resuming it would silently train "
                                + "another model. Use the checkpoint's settings, another --run-dir, or --resume none.")
        }
        if !soft.isEmpty && !force {
            throw SettingsError("\(checkpoint) was written with \(soft.joined(separator: "; ")); "
                                + "add --resume-force to continue with the new value(s)")
        }
        let changed = algorithmDifferences(stored: stored, current: current)
        guard !changed.isEmpty else { return [] }
        let what = "checkpoint \(checkpoint) was trained with \(changed.joined(separator: " and "))"
        guard force else {
            throw SettingsError("\(what). Resume with the checkpoint's settings, or pass --resume-force to change them from here.")
        }
        return ["\(what); continuing with this run's settings (--resume-force)"]
    }
}
