"""The ff-plan / ff-train / ff-analyze / ff-visualize / ff-run commands (see docs/cli.md)."""


class ConfigError(ValueError):
    """A configuration that cannot be used as given (the commands exit with status 2)."""
