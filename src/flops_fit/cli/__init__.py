"""The ff-plan / ff-train / ff-analyze / ff-visualize / ff-run commands (see docs/cli.md)."""
