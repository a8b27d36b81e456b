"""What the experiments have finished so far, kept on disk so that a rerun resumes: trained runs
(``DIR/runs/<name>``), the template fits and the slow sections (``DIR/sections/<name>.json``: Fig. B1,
Fig. 5, Appendix E, each computed once). The report is rebuilt from it after every step, so a
three-hour ``quick`` run shows its first results within the first hour."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from deepz_core.experiments.baseline import template_fit
from deepz_core.experiments.context import Context
from deepz_core.experiments.figures import jsonable
from deepz_core.experiments.scoring import Scored, read_scored
from deepz_core.experiments.trained import single_predictions, train_run
from deepz_core.files import atomic_write
from deepz_core.rundir import RunDir


class Progress:
    """Finished runs, their single-network and ensemble scores, template fits and slow sections."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.runs: dict[str, RunDir] = {}
        self.sections: dict[str, Any] = {}
        self.template_fits: dict[str, Scored] = {}
        self.combined: dict[str, Scored] = {}
        self._scored: dict[tuple[str, str], Scored] = {}
        self._drawn: dict[str, tuple[tuple[str, ...], Any]] = {}

    def train(
        self,
        name: str,
        pretrain: str | Callable[[], str] = "auto",
        train: dict[str, Any] | None = None,
        model: dict[str, Any] | None = None,
        catalog: Path | None = None,
    ) -> RunDir:
        """Train (or reuse, or resume) run ``name`` on ``catalog`` (default: the demo mock);
        ``pretrain`` may be a callable that builds the pretraining set only when the run is first
        created."""
        ctx = self.ctx
        source = pretrain() if callable(pretrain) else pretrain
        self.runs[name] = train_run(
            ctx.root,
            name,
            catalog or ctx.catalog_path,
            ctx.plan,
            source,
            {"device": ctx.device, **(train or {})},
            model,
            log=ctx.log,
        )
        return self.runs[name]

    def fit_templates(self, label: str, template_set: str) -> None:
        """Fit (or read back) the template fit with ``template_set`` and score it under
        ``label``."""
        self.template_fits[label] = read_scored(
            template_fit(self.ctx, template_set), self.ctx.mag_of()
        )

    def combine(self, label: str, run_name: str, template_set: str) -> None:
        """Run ``run_name`` combined with the template fit of ``template_set`` (beyond E20;
        ``deepz_core.hybrid``), fitted once in a copy of the run (``runs/<name>+<set>``)."""
        from deepz_core.experiments.baseline import cpu_workers
        from deepz_core.hybrid.runs import HYBRID_PREDICTIONS, fit_hybrid

        folder = self.ctx.root / "runs" / f"{run_name}+{template_set}"
        if not (folder / HYBRID_PREDICTIONS).exists():
            self.ctx.log(f"[experiments] combining {run_name} with the {template_set} template fit")
            shutil.rmtree(folder, ignore_errors=True)
            skip = shutil.ignore_patterns("checkpoint*", "hybrid*")
            shutil.copytree(self.runs[run_name].path, folder, ignore=skip)
            fit_hybrid(folder, template_set, workers=cpu_workers(self.ctx.device), log=self.ctx.log)
        self.combined[label] = read_scored(folder / HYBRID_PREDICTIONS)

    def section(
        self, name: str, compute: Callable[[], dict[str, Any]], inputs: Sequence[str] | None = None
    ) -> None:
        """A slow section, computed once and kept as JSON (in its own key order), and computed again
        when the names of the runs it reads (``inputs``) differ from those it was computed from. A
        run retrained under the same name needs its sections' files deleted."""
        path = self.ctx.root / "sections" / f"{name}.json"
        wanted = list(inputs) if inputs else None
        kept = json.loads(path.read_text()) if path.exists() else None
        if kept is None or kept.pop("_inputs", None) != wanted:
            kept = jsonable(compute())
            stamped = kept | ({"_inputs": wanted} if wanted else {})
            atomic_write(path, lambda tmp: tmp.write_text(json.dumps(stamped, indent=1)))
        self.sections[name] = kept

    def drawn(self, name: str, inputs: Sequence[str], draw: Callable[[], Any]) -> Any:
        """``draw()`` (figures the report redraws, with their numbers), called again only when
        the names of what it reads (``inputs``: runs, template fits) changed since the last call
        in this process: the report is rebuilt after every step, and redrawing every figure
        after each of a smoke run's 17 steps took ~40 s of its ~150 s."""
        key = tuple(inputs)
        if name not in self._drawn or self._drawn[name][0] != key:
            self._drawn[name] = (key, draw())
        return self._drawn[name][1]

    def has(self, *names: str) -> bool:
        return all(n in self.runs for n in names)

    def single(self, name: str) -> Scored:
        """Out-of-fold p(z) of repetition 0 only: one network per galaxy."""
        if (name, "single") not in self._scored:
            self._scored[name, "single"] = read_scored(single_predictions(self.runs[name]))
        return self._scored[name, "single"]

    def ensemble(self, name: str) -> Scored:
        """Out-of-fold p(z) of every repetition (E20 Sec. 5.2)."""
        if (name, "ensemble") not in self._scored:
            self._scored[name, "ensemble"] = read_scored(self.runs[name].file("predictions.fits"))
        return self._scored[name, "ensemble"]
