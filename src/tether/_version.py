"""The package version, in a module of its own so any layer can read it (OTel scopes, the CLI)."""

__version__ = "0.1.0"
