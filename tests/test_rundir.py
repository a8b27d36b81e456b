"""Run folders: atomic status, metrics lines, truncation on resume, run ids, checkpoint pairs."""

from __future__ import annotations

import json
import os
import time

import numpy as np
import pytest
import torch

from deepz_core import rundir as runs
from deepz_core.errors import ConfigError
from deepz_core.rundir import (
    RunDir,
    check_run_id,
    list_runs,
    load_checkpoint,
    load_checkpoint_meta,
    new_run_id,
    rng_from_json,
    rng_state_to_json,
    save_checkpoint,
)


@pytest.fixture
def run(tmp_path) -> RunDir:
    return RunDir(tmp_path / "run-1").create({"catalog": "x.fits", "train": {"seed": 1}})


def _leftovers(path) -> list[str]:
    return [p.name for p in path.iterdir() if p.name.startswith(".")]


def test_create_writes_config_and_a_queued_status(run) -> None:
    assert run.config() == {"catalog": "x.fits", "train": {"seed": 1}}
    status = run.status()
    assert status["state"] == "queued" and status["phase"] == "setup" and status["epoch"] == 0
    assert status["pid"] == os.getpid() and status["updated"] <= time.time()
    assert run.run_id == "run-1"


def test_status_of_a_missing_folder(tmp_path) -> None:
    assert RunDir(tmp_path / "nothing").status() == {"state": "missing"}


def test_set_status_merges_fields(run) -> None:
    run.set_status("running", phase="finetune", epoch=3, loss=1.5)
    run.set_status("running", epoch=4)
    s = run.status()
    assert (s["state"], s["phase"], s["epoch"], s["loss"]) == ("running", "finetune", 4, 1.5)
    with pytest.raises(AssertionError):
        run.set_status("exploded")


def test_status_writes_are_atomic(run) -> None:
    """A failing write leaves the previous status.json intact and no temporary files."""
    run.set_status("running", epoch=2)
    before = run.file("status.json").read_text()
    with pytest.raises(TypeError):
        run.set_status("running", epoch=3, bad=object())  # not JSON-serialisable mid-write
    assert run.file("status.json").read_text() == before
    assert json.loads(before)["epoch"] == 2
    assert _leftovers(run.path) == []


def test_metrics_round_trip_and_skip_a_partial_line(run) -> None:
    assert run.metrics() == []
    rows = [{"phase": "finetune", "epoch": e, "loss": 1.0 / e} for e in (1, 2, 3)]
    for row in rows:
        run.append_metrics(row)
    with open(run.file("metrics.jsonl"), "a") as fh:
        fh.write('{"phase": "finetune", "epo')  # a line being written while a page reads
    assert run.metrics() == rows


def test_truncate_metrics_drops_lines_after_the_checkpoint(run) -> None:
    for e in (1, 2, 3):
        run.append_metrics({"phase": "pretrain", "epoch": e})
    for e in (1, 2, 3, 4, 5):
        run.append_metrics({"phase": "finetune", "epoch": e})
    run.truncate_metrics("finetune", 2)
    assert [(r["phase"], r["epoch"]) for r in run.metrics()] == [
        ("pretrain", 1),
        ("pretrain", 2),
        ("pretrain", 3),
        ("finetune", 1),
        ("finetune", 2),
    ]
    run.truncate_metrics("pretrain", 2)
    assert [(r["phase"], r["epoch"]) for r in run.metrics()] == [("pretrain", 1), ("pretrain", 2)]
    assert _leftovers(run.path) == []


def test_truncate_metrics_also_drops_a_partial_last_line(run) -> None:
    run.append_metrics({"phase": "finetune", "epoch": 1})
    with open(run.file("metrics.jsonl"), "a") as fh:
        fh.write('{"phase": "fine')
    run.truncate_metrics("finetune", 1)
    assert run.file("metrics.jsonl").read_text() == '{"phase": "finetune", "epoch": 1}\n'


def test_log_appends_lines(run) -> None:
    run.log("first")
    run.log("second")
    lines = run.file("log.txt").read_text().splitlines()
    assert len(lines) == 2 and lines[0].endswith(" first") and lines[1].endswith(" second")


@pytest.mark.parametrize("run_id", ["run-20240101-120000-abc123", "a", "A.b_c-9", "x" * 81])
def test_safe_run_ids_are_accepted(run_id) -> None:
    assert check_run_id(run_id) == run_id


@pytest.mark.parametrize(
    "run_id",
    [
        "",
        "../etc",
        "..",
        "a/../b",
        "a/b",
        "a\\b",
        ".hidden",
        "-flag",
        "a..b",
        "x" * 82,
        "a b",
        "run\n",
        "café",
        "/abs",
    ],
)
def test_unsafe_run_ids_are_rejected(run_id) -> None:
    with pytest.raises(ConfigError, match="run id") as err:
        check_run_id(run_id)
    assert repr(run_id) in str(err.value)


def test_new_run_ids_are_safe_unique_and_sanitised() -> None:
    ids = {new_run_id("my run/../x") for _ in range(20)}
    assert len(ids) == 20
    for run_id in ids:
        assert check_run_id(run_id) == run_id and run_id.startswith("my-run----x-")
    assert check_run_id(new_run_id("")).startswith("run-")
    assert check_run_id(new_run_id("../..")).startswith("run-")
    assert check_run_id(new_run_id("-x")).startswith("x-")


def _tensors(value: float) -> dict[str, torch.Tensor]:
    return {"model.w": torch.full((3, 2), value), "rng.torch": torch.get_rng_state()}


def test_checkpoint_pair_round_trip_and_old_tensors_removed(run) -> None:
    assert load_checkpoint(run) is None and load_checkpoint_meta(run) is None
    save_checkpoint(run, _tensors(1.0), {"phase": "finetune", "epoch": 2, "extra": [1, 2]})
    first = load_checkpoint_meta(run)["tensors"]
    save_checkpoint(run, _tensors(2.0), {"phase": "finetune", "epoch": 4})
    tensors, meta = load_checkpoint(run)
    assert meta["epoch"] == 4 and meta["phase"] == "finetune"
    assert torch.equal(tensors["model.w"], torch.full((3, 2), 2.0))
    assert not run.file(first).exists()  # the superseded tensor file is gone
    assert sorted(p.name for p in run.path.glob("checkpoint*")) == [
        "checkpoint-finetune-0004.safetensors",
        "checkpoint.json",
    ]
    assert _leftovers(run.path) == []


def test_checkpoint_pair_stays_consistent_when_a_save_dies_midway(run, monkeypatch) -> None:
    """Killed after the new tensors but before the JSON: the old pair is still complete."""
    save_checkpoint(run, _tensors(1.0), {"phase": "pretrain", "epoch": 5})

    def die(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(runs, "atomic_write_json", die)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(run, _tensors(2.0), {"phase": "finetune", "epoch": 1})
    monkeypatch.undo()
    tensors, meta = load_checkpoint(run)
    assert (meta["phase"], meta["epoch"]) == ("pretrain", 5)
    assert torch.equal(tensors["model.w"], torch.full((3, 2), 1.0))


def test_checkpoint_saved_twice_at_the_same_epoch_keeps_its_file(run) -> None:
    save_checkpoint(run, _tensors(1.0), {"phase": "finetune", "epoch": 3})
    save_checkpoint(run, _tensors(3.0), {"phase": "finetune", "epoch": 3})
    tensors, _ = load_checkpoint(run)
    assert torch.equal(tensors["model.w"], torch.full((3, 2), 3.0))


def test_numpy_rng_state_round_trips_through_json() -> None:
    rng = np.random.default_rng([4, 11, 0])
    rng.random(17)
    state = json.loads(json.dumps(rng_state_to_json(rng)))
    again = rng_from_json(state)
    np.testing.assert_array_equal(rng.random(50), again.random(50))
    np.testing.assert_array_equal(rng.permutation(30), again.permutation(30))


def test_list_runs_newest_first(tmp_path) -> None:
    assert list_runs(tmp_path / "absent") == []
    old = RunDir(tmp_path / "old").create({})
    new = RunDir(tmp_path / "new").create({})
    (tmp_path / "not-a-run").mkdir()
    os.utime(old.file("config.json"), (1e9, 1e9))
    assert [r.run_id for r in list_runs(tmp_path)] == ["new", "old"]
    assert new.path.exists()


def test_run_card_is_editable_and_checked(tmp_path) -> None:
    run = RunDir(tmp_path / "r").create({"catalog": "c"})
    assert run.card() == {}
    assert run.update_card(name="first", note="n") == {"name": "first", "note": "n"}
    assert run.update_card(note=None, catalog_name="W3") == {"name": "first", "catalog_name": "W3"}
    with pytest.raises(ConfigError, match="unknown fields"):
        run.update_card(colour="red")
    run.file("card.json").write_text("not json")
    assert run.card() == {}


# ---------------------------------------------------------------- issue 19: damaged files, locks


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("status.json", '{"state": "runn'),  # cut short
        ("status.json", "[1, 2]"),  # not an object
        ("status.json", '{"state": "exploded"}'),  # not a state
        ("config.json", "\x00\x01"),
        ("config.json", '"just a string"'),
    ],
)
def test_damaged_run_files_raise_a_config_error_naming_them(run, name, text) -> None:
    run.file(name).write_text(text)
    read = run.status if name == "status.json" else run.config
    with pytest.raises(ConfigError, match=f"{name}: damaged"):
        read()
    assert not run.readable()


def test_a_missing_config_names_the_file(tmp_path) -> None:
    with pytest.raises(ConfigError, match="config.json: no such file"):
        RunDir(tmp_path / "nothing").config()


def test_lists_leave_damaged_runs_out(tmp_path) -> None:
    good = RunDir(tmp_path / "good").create({})
    bad = RunDir(tmp_path / "bad").create({})
    bad.file("status.json").write_text("{")
    assert [r.run_id for r in list_runs(tmp_path)] == [good.run_id]


@pytest.mark.parametrize(
    "meta",
    [
        "{}",
        '{"phase": "finetune", "epoch": 1, "tensors": "../../etc/passwd"}',
        '{"phase": "warmup", "epoch": 1, "tensors": "checkpoint-warmup-0001.safetensors"}',
        '{"phase": "finetune", "epoch": -1, "tensors": "checkpoint-finetune-0001.safetensors"}',
    ],
)
def test_damaged_checkpoint_descriptions_are_refused(run, meta) -> None:
    run.file("checkpoint.json").write_text(meta)
    with pytest.raises(ConfigError, match="checkpoint.json: damaged"):
        load_checkpoint_meta(run)


def test_damaged_checkpoint_tensors_are_a_config_error(run) -> None:
    save_checkpoint(run, {"w": torch.ones(3)}, {"phase": "finetune", "epoch": 2})
    run.file("checkpoint-finetune-0002.safetensors").write_bytes(b"\x00" * 20)
    with pytest.raises(ConfigError, match="cannot read the checkpoint"):
        load_checkpoint(run)


def test_taking_the_lock_removes_orphans_but_not_the_checkpoint(run) -> None:
    save_checkpoint(run, {"w": torch.ones(3)}, {"phase": "finetune", "epoch": 2})
    orphans = [
        ".checkpoint-finetune-0004.safetensors.abcdefgh.safetensors",  # killed mid-write
        "checkpoint-finetune-0004.safetensors",  # written, but checkpoint.json never was
        ".metrics.jsonl.12345678.jsonl",
    ]
    for name in orphans:
        run.file(name).write_bytes(b"x")
    with run.locked():
        names = {p.name for p in run.path.iterdir()}
    assert not names & set(orphans)
    assert {"checkpoint.json", "checkpoint-finetune-0002.safetensors"} <= names


def test_foreign_entries_are_what_a_run_would_overwrite(tmp_path) -> None:
    folder = RunDir(tmp_path / "mine")
    assert folder.foreign_entries() == []  # does not exist
    folder.path.mkdir()
    (folder.path / ".lock").write_text("")
    (folder.path / ".x.json.abcdefgh.json").write_text("")
    assert folder.foreign_entries() == []  # only a lock and a temporary
    (folder.path / "predictions.fits").write_text("mine")
    (folder.path / "cat.fits").write_text("the run's own catalogue")
    assert folder.foreign_entries() == ["cat.fits", "predictions.fits"]
    assert folder.foreign_entries((folder.path / "cat.fits",)) == ["predictions.fits"]
    folder.create({})
    assert folder.foreign_entries() == []  # a run
