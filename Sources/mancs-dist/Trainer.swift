/// The training loop: set-up, steps, checkpoints, stopping. Returns the exit code.
enum Trainer {
    static func run(settings: TrainSettings) -> Int32 {
        print("mancs-dist: training is not wired yet")
        return 1
    }
}
