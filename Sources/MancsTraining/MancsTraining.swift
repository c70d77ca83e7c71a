// MancsTraining: see docs/architecture.md
