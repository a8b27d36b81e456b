"""Reading experiment reports back (for the app): where they are and their markdown cut into text
and figure blocks, so a page can show each figure as an image."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from deepz_core.errors import ConfigError

FIGURE = re.compile(r"!\[[^\]]*\]\((figures/[A-Za-z0-9_.-]+\.png)\)")


def is_report(folder: Path) -> bool:
    return (folder / "report.md").is_file() and (folder / "results.json").is_file()


def find_reports(root: Path) -> list[Path]:
    """Report folders directly under ``root`` (e.g. ``$DEEPZ_HOME/experiments``), newest first."""
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and is_report(p)]
    return sorted(found, key=lambda p: (p / "report.md").stat().st_mtime, reverse=True)


def report_blocks(folder: Path) -> list[tuple[str, Any]]:
    """[('markdown', text) | ('figure', Path)] in report order; figures must lie in the folder."""
    folder = Path(folder)
    if not is_report(folder):
        raise ConfigError(f"{folder}: not an experiments report (needs report.md and results.json)")
    text = (folder / "report.md").read_text()
    blocks: list[tuple[str, Any]] = []
    pos = 0
    for m in FIGURE.finditer(text):
        blocks.append(("markdown", text[pos : m.start()]))
        path = folder / m.group(1)
        blocks.append(
            ("figure", path) if path.is_file() else ("markdown", f"(missing {m.group(1)})")
        )
        pos = m.end()
    blocks.append(("markdown", text[pos:]))
    return [(kind, v) for kind, v in blocks if kind == "figure" or v.strip()]


def report_targets(folder: Path) -> list[dict[str, Any]]:
    """The targets table of ``results.json`` (target, measured, goal, met)."""
    return json.loads((Path(folder) / "results.json").read_text()).get("targets", [])


def target_counts(folder: Path) -> tuple[int, int, int]:
    """(met, not measured yet, total) of a report's targets; a partial report has some of the
    second kind, until the experiments finish."""
    from deepz_core.experiments.report_writer import NOT_YET

    targets = report_targets(folder)
    pending = sum(t.get("measured") == NOT_YET for t in targets)
    return sum(bool(t["met"]) for t in targets), pending, len(targets)
