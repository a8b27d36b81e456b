"""The app's shared queue (issue 19): the Train form's limits for every queued run, ownership
tokens, and a fair share of the queue per browser."""

from __future__ import annotations

import pytest

from deepz_core.errors import ConfigError
from deepz_core.jobs import queue
from deepz_core.jobs.training_run import create_run, run_config
from deepz_core.rundir import RunDir
from tests.synthetic import synthetic_catalog


@pytest.fixture(scope="module")
def catalog(tmp_path_factory) -> str:
    from deepz_core.catalog.io import write_catalog

    path = tmp_path_factory.mktemp("queue") / "cat.fits"
    return str(write_catalog(synthetic_catalog(40, 0, exposures=False), path))


@pytest.mark.parametrize(
    ("train", "says"),
    [
        ({"repetitions": 50}, "repetitions = 50 is above the shared queue's limit of 20"),
        ({"folds": 11}, "folds = 11 is above the shared queue's limit of 10"),
        ({"schedule": [[6000, 1e-3]]}, "schedule \\(epochs\\) = 6,000"),
        ({"pretrain_n": 50_000_000}, "pretrain_n = 50,000,000"),
    ],
)
def test_runs_beyond_the_forms_limits_are_refused(catalog, train, says) -> None:
    config = run_config(catalog, pretrain="none", preset_name="smoke", train=train)
    with pytest.raises(ConfigError, match=says):
        queue.check_queue_limits(config)


def test_the_typed_configs_refuse_what_no_machine_can_allocate(catalog) -> None:
    with pytest.raises(ConfigError, match="repetitions: expected an integer in \\[1, 100\\]"):
        run_config(catalog, pretrain="none", train={"repetitions": 500})
    with pytest.raises(ConfigError, match="width"):
        run_config(catalog, pretrain="none", model={"width": 200_000})


def test_a_run_within_the_limits_passes(catalog) -> None:
    config = run_config(catalog, pretrain="none", preset_name="paper", train={"repetitions": 20})
    assert queue.check_queue_limits(config) is config


def test_a_combination_needs_a_known_set_and_two_folds(catalog) -> None:
    """The Train form's 'Combine with the template fit' (RunConfig.templates): a set of the
    queue's limits, on a run with out-of-fold galaxies to fit it on."""
    combined = run_config(catalog, pretrain="none", train={"folds": 2}, templates="kcorrect")
    assert queue.check_queue_limits(combined).templates == "kcorrect"
    with pytest.raises(ConfigError, match="templates: .* needs folds >= 2, got 1"):
        run_config(catalog, pretrain="none", train={"folds": 1}, templates="bcnz2")
    only_bcnz2 = queue.QueueLimits(templates=("bcnz2",))
    with pytest.raises(ConfigError, match="combines with bcnz2 only"):
        queue.check_queue_limits(combined, only_bcnz2)
    with pytest.raises(ConfigError, match="templates must be one of"):
        run_config(catalog, pretrain="none", templates="eazy")


def test_only_the_token_that_queued_a_run_owns_it(tmp_path, catalog) -> None:
    run = create_run(tmp_path / "r", run_config(catalog, pretrain="none"))
    mine, other = queue.new_owner_token(), queue.new_owner_token()
    assert queue.owner_of(run) is None and not queue.is_owner(run, mine)
    queue.claim(run, mine)
    assert queue.is_owner(run, mine) and not queue.is_owner(run, other)
    assert mine not in run.file(queue.OWNER_FILE).read_text()  # only a hash is stored
    queue.require_owner(run, mine, False, "cancel")
    with pytest.raises(ConfigError, match="queued from another browser: confirm"):
        queue.require_owner(run, other, False, "cancel")
    queue.require_owner(run, other, True, "cancel")  # confirmed
    with pytest.raises(ConfigError, match="16 to 64"):
        queue.claim(run, "short")


def test_a_run_without_an_owner_needs_a_confirmation(tmp_path, catalog) -> None:
    run = create_run(tmp_path / "cli-run", run_config(catalog, pretrain="none"))
    with pytest.raises(ConfigError, match="from the command line or another tool"):
        queue.require_owner(run, queue.new_owner_token(), False, "resume")


def test_each_browser_gets_a_fair_share_of_the_queue(tmp_path, catalog, monkeypatch) -> None:
    monkeypatch.setenv("DEEPZ_QUEUE_PER_OWNER", "2")
    runs, mine, other = tmp_path / "runs", queue.new_owner_token(), queue.new_owner_token()
    for name in ("a", "b"):
        queue.claim(create_run(runs / name, run_config(catalog, pretrain="none")), mine)
    with pytest.raises(ConfigError, match="already have 2 runs waiting"):
        queue.check_fair_share(runs, mine)
    queue.check_fair_share(runs, other)
    RunDir(runs / "a").set_status("running")
    queue.check_fair_share(runs, mine)  # one of them started
    monkeypatch.setenv("DEEPZ_QUEUE_PER_OWNER", "zero")
    with pytest.raises(ConfigError, match="DEEPZ_QUEUE_PER_OWNER"):
        queue.max_queued_per_owner()
