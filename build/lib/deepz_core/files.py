"""Where deepz keeps caches and runs on disk, and atomic file writes."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from deepz_core.errors import ConfigError


def cache_dir() -> Path:
    """Cache folder for tabulated spectra and simulations (env ``DEEPZ_CACHE_DIR``, else ~/.cache/deepz)."""
    root = os.environ.get("DEEPZ_CACHE_DIR") or Path.home() / ".cache" / "deepz"
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path


def atomic_write(path: Path | str, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp)`` on a temporary sibling of ``path``, then rename it into place.

    A reader never sees a half-written file: either the old one or the complete new one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=path.suffix)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        write(tmp_path)
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)
    return path


def atomic_write_json(path: Path | str, obj: object) -> Path:
    """Write ``obj`` as indented JSON, atomically."""
    return atomic_write(path, lambda tmp: tmp.write_text(json.dumps(obj, indent=2, sort_keys=True)))


def read_description(path: Path, fmt: str, what: str) -> dict:
    """The JSON document at ``path`` written with ``"format": fmt`` (a saved model's description);
    ConfigError naming the file and ``what`` it should describe otherwise."""
    try:
        doc = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read {what} description ({exc})") from exc
    if not isinstance(doc, dict) or doc.get("format") != fmt:
        raise ConfigError(f"{path}: not a deepz {what} description (format != {fmt!r})")
    return doc
