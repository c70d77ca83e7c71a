// Distributed: see docs/architecture.md
