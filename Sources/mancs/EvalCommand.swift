import ArgumentParser

struct EvalCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "eval", abstract: "Evaluate features (CMC, mAP, mINP).")

    func run() throws {
        throw ValidationError("eval: not implemented yet")
    }
}
