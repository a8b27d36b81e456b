"""Ground-floor file helpers (issue 19): atomic writes that honour the umask, outputs that never
overwrite inputs, the exclusive folder lock (with two real processes), temporaries of killed
writers, file identity."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from deepz_core.errors import ConfigError, InUseError, OutputExistsError
from deepz_core.files import (
    LOCK_FILE,
    ExclusiveLock,
    atomic_write,
    atomic_write_json,
    check_outputs,
    enclosing_run,
    file_digest,
    file_fingerprint,
    file_identity,
    folder_holder,
    is_temporary,
    lock_folder,
    refuse_overwriting_inputs,
    remove_temporaries,
)

ROOT = Path(__file__).resolve().parents[1]


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize(("mask", "expected"), [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_atomic_writes_honour_the_umask(tmp_path: Path, mask: int, expected: int) -> None:
    old = os.umask(mask)
    try:
        atomic_write(tmp_path / "a.bin", lambda tmp: tmp.write_bytes(b"x"))
        atomic_write_json(tmp_path / "b.json", {"a": 1})
    finally:
        os.umask(old)
    assert mode(tmp_path / "a.bin") == expected
    assert mode(tmp_path / "b.json") == expected


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "t.json"
    atomic_write_json(target, {"v": 1})

    def broken(tmp: Path) -> None:
        tmp.write_text("half")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        atomic_write(target, broken)
    assert target.read_text() == '{\n  "v": 1\n}'
    assert [p.name for p in tmp_path.iterdir()] == ["t.json"]


@pytest.mark.parametrize(
    ("name", "temporary"),
    [
        (".checkpoint-finetune-0005.safetensors.k2j3h4l5.safetensors", True),
        (".part-00001.parquet.abc_1234.parquet", True),
        (".status.json.a1b2c3d4.json", True),
        (".splits.npz.zzzzzzzz.npz", True),
        (".log.qwertyui", True),  # a name without a suffix
        (".notes", False),
        (".status.json.a1b2c3d4.fits", False),  # suffix of another name
        ("status.json.a1b2c3d4.json", False),  # not hidden
        (".status.json.A1B2C3D4.json", False),  # tempfile uses lower case
        (".lock", False),
    ],
)
def test_temporaries_are_recognised_by_their_exact_shape(name: str, temporary: bool) -> None:
    assert is_temporary(name) == temporary


def test_remove_temporaries_keeps_everything_else(tmp_path: Path) -> None:
    names = [".model.safetensors.abcdefgh.safetensors", ".notes", "model.safetensors", ".lock"]
    for name in names:
        (tmp_path / name).write_text("x")
    assert remove_temporaries(tmp_path) == [".model.safetensors.abcdefgh.safetensors"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(names[1:])


# ---------------------------------------------------------------- outputs never overwrite inputs


@pytest.fixture
def inputs(tmp_path: Path) -> dict[str, Path]:
    cat = tmp_path / "cat.fits"
    cat.write_bytes(b"SIMPLE  = T")
    run = tmp_path / "run"
    run.mkdir()
    (run / "predictions.fits").write_bytes(b"p")
    (tmp_path / "link.fits").symlink_to(cat)
    os.link(cat, tmp_path / "hard.fits")
    return {"cat": cat, "run": run}


@pytest.mark.parametrize(
    ("out", "problem"),
    [
        ("cat.fits", "is the same file as the input --catalog"),
        ("link.fits", "is the same file as the input --catalog"),  # a symlink to it
        ("hard.fits", "is the same file as the input --catalog"),  # a hard link
        ("run/../cat.fits", "is the same file as the input --catalog"),
        ("run/predictions.fits", "is a file inside the input --run"),
        ("run", "is the input --run"),
        (".", "is a folder holding the input --catalog"),
    ],
)
def test_outputs_that_would_destroy_an_input_are_refused(
    tmp_path: Path, inputs: dict[str, Path], out: str, problem: str
) -> None:
    with pytest.raises(ConfigError, match=problem) as err:
        refuse_overwriting_inputs(
            {"--out": tmp_path / out}, {"--catalog": inputs["cat"], "--run": inputs["run"]}
        )
    assert str(inputs["cat"]) in str(err.value) or str(inputs["run"]) in str(err.value)


@pytest.mark.parametrize("out", ["new.fits", "run/new.parquet", "other/dataset"])
def test_new_outputs_are_fine(tmp_path: Path, inputs: dict[str, Path], out: str) -> None:
    refuse_overwriting_inputs(
        {"--out": tmp_path / out, "--other": None},
        {"--catalog": inputs["cat"], "--run": inputs["run"], "--exposures": None},
    )


@pytest.fixture
def run_folder(tmp_path: Path) -> Path:
    """A deepz run folder (config.json + status.json) with a subfolder and its predictions."""
    run = tmp_path / "runs" / "deep"
    (run / "checkpoints").mkdir(parents=True)
    for name in ("config.json", "status.json"):
        (run / name).write_text("{}")
    (run / "predictions.fits").write_bytes(b"p")
    (tmp_path / "alias").symlink_to(run)
    return run


@pytest.mark.parametrize(
    ("out", "where"),
    [
        ("runs/deep/predictions.fits", "is inside the deepz run folder"),
        ("runs/deep/config.json", "is inside the deepz run folder"),
        ("runs/deep/new.parquet", "is inside the deepz run folder"),
        ("runs/deep/checkpoints/x.fits", "is inside the deepz run folder"),
        ("runs/deep", "is the deepz run folder"),
        ("alias/predictions.fits", "is inside the deepz run folder"),  # through a symlink
    ],
)
@pytest.mark.parametrize("overwrite", [False, True])
def test_no_output_goes_into_a_run_folder(
    tmp_path: Path, run_folder: Path, out: str, where: str, overwrite: bool
) -> None:
    with pytest.raises(ConfigError, match=where) as err:
        check_outputs({"--out": tmp_path / out}, {}, overwrite)
    named = tmp_path / "alias" if out.startswith("alias") else run_folder  # the user's spelling
    assert f"run folder {str(named)!r}" in str(err.value) and "\n" not in str(err.value)
    assert (run_folder / "predictions.fits").read_bytes() == b"p"


def test_a_folder_is_a_run_only_with_config_and_status(tmp_path: Path, run_folder: Path) -> None:
    assert enclosing_run(run_folder / "checkpoints" / "new") == run_folder
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "config.json").write_text("{}")  # a user's config: no run
    assert enclosing_run(tmp_path / "half" / "x.json") is None
    assert enclosing_run(tmp_path / "runs" / "other.fits") is None
    check_outputs({"--out": tmp_path / "runs" / "other.fits"}, {})  # beside a run is fine


@pytest.mark.parametrize(("name", "ask"), [("--out", "--overwrite"), ("out", "overwrite=True")])
def test_an_existing_output_needs_overwrite(tmp_path: Path, name: str, ask: str) -> None:
    mine = tmp_path / "existing.parquet"
    mine.write_text("a user's notes")
    with pytest.raises(OutputExistsError, match=f"is an existing file: pass {ask} to replace it"):
        check_outputs({name: mine}, {})
    check_outputs({name: mine}, {}, overwrite=True)
    assert mine.read_text() == "a user's notes"  # checking writes nothing


def test_folders_an_output_may_fill(tmp_path: Path) -> None:
    """An empty folder holds nothing to lose; a full one needs overwrite, unless the command
    resumes it (a dataset folder, whose own plan decides)."""
    (tmp_path / "empty").mkdir()
    check_outputs({"--out": tmp_path / "empty"}, {})
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "part-00000.parquet").write_bytes(b"x")
    with pytest.raises(OutputExistsError, match="is a folder that is not empty"):
        check_outputs({"--out": tmp_path / "full"}, {})
    check_outputs({"--out": tmp_path / "full"}, {}, resumable=True)


def test_overwrite_never_replaces_an_input(tmp_path: Path, inputs: dict[str, Path]) -> None:
    with pytest.raises(ConfigError, match="is the same file as the input --catalog"):
        check_outputs({"--out": inputs["cat"]}, {"--catalog": inputs["cat"]}, overwrite=True)
    assert inputs["cat"].read_bytes() == b"SIMPLE  = T"


# ---------------------------------------------------------------- locks

HOLD = textwrap.dedent(
    """
    import sys, time
    from deepz_core.files import lock_folder
    with lock_folder(sys.argv[1]):
        print("locked", flush=True)
        time.sleep(float(sys.argv[2]))
    """
)


def hold_in_another_process(folder: Path, seconds: float = 60.0) -> subprocess.Popen:
    """A second process holding ``folder``'s lock (returns once it holds it)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(folder), str(seconds)],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
    return proc


def test_a_second_process_is_refused_naming_the_holder(tmp_path: Path) -> None:
    proc = hold_in_another_process(tmp_path)
    try:
        assert folder_holder(tmp_path)["pid"] == proc.pid
        with pytest.raises(InUseError, match=f"in use by PID {proc.pid}"), lock_folder(tmp_path):
            pass
    finally:
        proc.kill()
        proc.wait()
    assert folder_holder(tmp_path) is None  # the kernel dropped the dead holder's lock
    with lock_folder(tmp_path):
        assert folder_holder(tmp_path)["pid"] == os.getpid()


def test_the_lock_is_reentrant_in_its_thread_and_released_at_the_end(tmp_path: Path) -> None:
    with lock_folder(tmp_path), lock_folder(tmp_path):
        assert not ExclusiveLock(tmp_path / LOCK_FILE).acquire()
    assert ExclusiveLock(tmp_path / LOCK_FILE).acquire()


def test_taking_the_lock_removes_temporaries_of_killed_writers(tmp_path: Path) -> None:
    (tmp_path / ".part-00003.parquet.abcdefgh.parquet").write_bytes(b"half")
    (tmp_path / "part-00001.parquet").write_bytes(b"done")
    with lock_folder(tmp_path):
        assert sorted(p.name for p in tmp_path.iterdir()) == [LOCK_FILE, "part-00001.parquet"]


def test_a_lock_file_left_by_a_dead_process_does_not_block(tmp_path: Path) -> None:
    (tmp_path / LOCK_FILE).write_text('{"pid": 999999, "started": 0}')
    assert folder_holder(tmp_path) is None
    with lock_folder(tmp_path):
        pass


# ---------------------------------------------------------------- identity


def test_file_digest_identifies_content_not_name(tmp_path: Path) -> None:
    (tmp_path / "a").write_bytes(b"x" * 10)
    (tmp_path / "b").write_bytes(b"x" * 10)
    (tmp_path / "c").write_bytes(b"x" * 11)
    d = file_digest
    assert d(tmp_path / "a") == d(tmp_path / "b") != d(tmp_path / "c")


def test_fingerprint_sees_a_replaced_file_with_the_same_size(tmp_path: Path) -> None:
    path = tmp_path / "cat.bin"
    path.write_bytes(b"a" * 3_000_000)
    before = file_identity(path)
    time.sleep(0.01)
    path.write_bytes(b"a" * 2_999_999 + b"b")  # same size, last byte differs
    after = file_identity(path)
    assert before["size"] == after["size"]
    assert before["fingerprint"] != after["fingerprint"]
    assert file_fingerprint(path) == after["fingerprint"]


def test_a_folders_identity_follows_its_files(tmp_path: Path) -> None:
    """Fourteenth session: a HATS catalogue (a folder) predicted into a dataset failed with
    'Is a directory': its identity read it as a file. A folder's identity is that of its files:
    a file added or rewritten changes it."""
    folder = tmp_path / "hats"
    (folder / "dataset").mkdir(parents=True)
    (folder / "hats.properties").write_text("obs_collection=g\n")
    (folder / "dataset" / "Npix=1.parquet").write_bytes(b"a" * 100)
    before = file_identity(folder)
    assert before == file_identity(folder) and before["size"] == 117
    os.utime(folder / "dataset" / "Npix=1.parquet", ns=(1, 1))
    touched = file_identity(folder)
    (folder / "dataset" / "Npix=2.parquet").write_bytes(b"b")
    added = file_identity(folder)
    assert len({before["fingerprint"], touched["fingerprint"], added["fingerprint"]}) == 3
    assert added["size"] == 118
