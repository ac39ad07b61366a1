"""The version of cnnlab: one place, read by the package, pyproject.toml and every result."""

__version__ = "0.1.0"
