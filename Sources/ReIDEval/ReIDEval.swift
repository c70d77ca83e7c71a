// ReIDEval: see docs/architecture.md
