"""The app's shared training queue: what one queued run may ask for, and who may stop it.

Limits: a run queued from the app gets the Train form's own limits whatever the JSON overrides say
(``QUEUE_LIMITS``: at most 20 repetitions x 10 folds, 5,000 epochs per phase, 10 million
simulated galaxies, a combination with a known template set only on >= 2 folds), on top of the typed configs' bounds (``TrainConfig``, ``ModelConfig``: no
width or ensemble too large to allocate); each browser has at most ``max_queued_per_owner()``
runs waiting, so one person cannot fill the queue.

Ownership: each browser tab carries a random token (kept in its address, ``?owner=``); a run
records the sha256 of the token that queued it in ``owner.json``. Only that token cancels or
resumes it without confirmation; any other tab (or a run from the command line, which has no
owner) sees it read-only and must confirm explicitly. This is a courtesy on a shared lab server,
not security: anyone who can reach the server and copies an address gets its token
(docs/app.md, "Who owns a run").
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

from deepz_core.errors import ConfigError
from deepz_core.files import atomic_write_json, read_json_object
from deepz_core.rundir import RunDir, list_runs
from deepz_core.sed.template_sets import TEMPLATE_SETS
from deepz_core.training.config import RunConfig


@dataclass(frozen=True)
class QueueLimits:
    """What one run queued from the app may ask for (the Train form's limits)."""

    repetitions: int = 20
    folds: int = 10
    epochs: int = 5_000  # per phase (fine-tuning, pretraining); E20's protocol has 700
    pretrain_n: int = 10_000_000  # simulated galaxies for 'auto' pretraining; E20: 1e6
    # template sets a run may be combined with after training (``RunConfig.templates``)
    templates: tuple[str, ...] = TEMPLATE_SETS


QUEUE_LIMITS = QueueLimits()


def check_queue_limits(config: RunConfig, limits: QueueLimits = QUEUE_LIMITS) -> RunConfig:
    """``config`` when it is within the queue's ``limits``; ConfigError naming the field, the
    value and the limit otherwise (the typed configs have already checked everything else)."""
    train = config.train
    asked = {
        "repetitions": (train.repetitions, limits.repetitions),
        "folds": (train.folds, limits.folds),
        "schedule (epochs)": (train.epochs, limits.epochs),
        "pretrain_schedule (epochs)": (train.pretrain_epochs, limits.epochs),
        "pretrain_n": (train.pretrain_n, limits.pretrain_n),
    }
    for name, (value, limit) in asked.items():
        if value > limit:
            raise ConfigError(
                f"training override {name} = {value:,} is above the shared queue's limit of "
                f"{limit:,}; train bigger ensembles from the command line (deepz train)"
            )
    check_combination(config, limits)
    return config


def check_combination(config: RunConfig, limits: QueueLimits = QUEUE_LIMITS) -> None:
    """ConfigError unless ``config.templates`` is None or a set of ``limits.templates`` (the
    RunConfig itself refuses a combination on one fold)."""
    if config.templates is not None and config.templates not in limits.templates:
        raise ConfigError(
            f"templates = {config.templates!r}: the shared queue combines with "
            f"{', '.join(limits.templates)} only"
        )


def max_queued_per_owner() -> int:
    """Runs one browser may have waiting at once (env ``DEEPZ_QUEUE_PER_OWNER``, default 5)."""
    text = os.environ.get("DEEPZ_QUEUE_PER_OWNER", "5")
    try:
        value = int(text)
    except ValueError:
        raise ConfigError(f"DEEPZ_QUEUE_PER_OWNER must be an integer >= 1, got {text!r}") from None
    if value < 1:
        raise ConfigError(f"DEEPZ_QUEUE_PER_OWNER must be an integer >= 1, got {text!r}")
    return value


# ---------------------------------------------------------------- ownership

OWNER_FILE = "owner.json"
_TOKEN = re.compile(r"^[A-Za-z0-9_-]{16,64}$")


def new_owner_token() -> str:
    """A random token for one browser (22 URL-safe characters)."""
    return secrets.token_urlsafe(16)


def valid_token(token: object) -> bool:
    return isinstance(token, str) and bool(_TOKEN.fullmatch(token))


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()[:32]


def claim(run: RunDir, token: str) -> None:
    """Record that the browser with ``token`` queued ``run`` (only a hash of the token is kept)."""
    if not valid_token(token):
        raise ConfigError("owner token: expected 16 to 64 letters, digits, '-' or '_'")
    atomic_write_json(run.file(OWNER_FILE), {"owner": _digest(token), "claimed": time.time()})


def owner_of(run: RunDir) -> str | None:
    """The hash of the token that queued ``run``, None for a run without one (the command line)."""
    if not run.file(OWNER_FILE).exists():
        return None
    try:
        owner = read_json_object(run.file(OWNER_FILE), "run owner").get("owner")
    except ConfigError:
        return None
    return owner if isinstance(owner, str) else None


def is_owner(run: RunDir, token: str | None) -> bool:
    """True when ``token`` queued ``run``."""
    owner = owner_of(run)
    return owner is not None and valid_token(token) and owner == _digest(str(token))


def require_owner(run: RunDir, token: str | None, confirmed: bool, action: str) -> None:
    """ConfigError unless ``token`` owns ``run`` or the user confirmed acting on another's run."""
    if confirmed or is_owner(run, token):
        return
    who = "another browser" if owner_of(run) else "the command line or another tool"
    raise ConfigError(
        f"run {run.run_id} was queued from {who}: confirm that you want to {action} "
        "someone else's run"
    )


def queued_by(runs: Path, token: str) -> list[RunDir]:
    """Runs in ``runs`` waiting in the queue that ``token`` owns."""
    return [
        r for r in list_runs(runs) if r.status().get("state") == "queued" and is_owner(r, token)
    ]


def check_fair_share(runs: Path, token: str | None) -> None:
    """ConfigError when the browser with ``token`` already has ``max_queued_per_owner()`` runs
    waiting (a run without an owner is not limited here)."""
    if token is None:
        return
    limit = max_queued_per_owner()
    waiting = queued_by(runs, token)
    if len(waiting) >= limit:
        raise ConfigError(
            f"you already have {len(waiting)} runs waiting in the queue (the limit is {limit} "
            "per browser): wait for one to start, or cancel one"
        )
