"""The deepz package's version: read by the package metadata (pyproject.toml), the public API
(``deepz_core.__version__``) and the provenance every prediction file carries."""

VERSION = "0.2.0"
