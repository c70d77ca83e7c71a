// ReIDData: see docs/architecture.md
