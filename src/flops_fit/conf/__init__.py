"""Hydra configs of the ff-* commands (YAML only; see docs/cli.md)."""
