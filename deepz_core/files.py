"""Where deepz keeps caches and runs on disk, atomic file writes that honour the umask, outputs
that never overwrite inputs, run folders or (unless asked) existing files, and the exclusive lock
of a folder a command writes."""

from __future__ import annotations

import fcntl
import hashlib
import json
import math
import os
import re
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from deepz_core.errors import ConfigError, InUseError, OutputExistsError

PathLike = Path | str


def cache_dir() -> Path:
    """Cache folder for tabulated spectra and simulations (env ``DEEPZ_CACHE_DIR``, else ~/.cache/deepz)."""
    root = os.environ.get("DEEPZ_CACHE_DIR") or Path.home() / ".cache" / "deepz"
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path


# ---------------------------------------------------------------- atomic writes


def umask() -> int:
    """The process umask, read without changing it where Linux tells (/proc), else set and reset."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    old = os.umask(0o022)
    os.umask(old)
    return old


def atomic_write(path: PathLike, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp)`` on a temporary sibling of ``path``, then rename it into place.

    A reader never sees a half-written file: either the old one or the complete new one. The file
    gets the mode every tool gives a new file (0666 less the umask: 0644 by default), not the
    0600 of a temporary. A kill leaves the hidden temporary ``.<name>.XXXXXXXX<suffix>``
    (``is_temporary``), removed by the next command that locks the folder.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=path.suffix)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        write(tmp_path)
        os.chmod(tmp_path, 0o666 & ~umask())
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)
    return path


def atomic_write_json(path: PathLike, obj: object) -> Path:
    """Write ``obj`` as indented JSON, atomically."""
    return atomic_write(path, lambda tmp: tmp.write_text(json.dumps(obj, indent=2, sort_keys=True)))


def jsonable(obj: Any) -> Any:
    """``obj`` with tuples as lists, numpy scalars as Python numbers and NaN/inf as None (JSON has
    no NaN)."""
    if isinstance(obj, dict):
        return {k: jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


_TEMP_TAG = re.compile(r"\.[a-z0-9_]{8}")  # tempfile's random part


def is_temporary(name: str) -> bool:
    """True for the name of an ``atomic_write`` temporary: ``.<name>.<8 random chars><suffix of
    name>`` (e.g. ``.checkpoint-finetune-0005.safetensors.k2j3h4l5.safetensors``)."""
    if not name.startswith(".") or len(name) < 11:
        return False
    body = name[1:]
    for match in _TEMP_TAG.finditer(body):
        original, rest = body[: match.start()], body[match.end() :]
        if original and rest == Path(original).suffix:
            return True
    return False


def remove_temporaries(folder: PathLike) -> list[str]:
    """Delete the ``atomic_write`` temporaries a killed process left in ``folder`` (not below
    it); call it only while holding the folder's lock. The names removed."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = []
    for path in folder.iterdir():
        if is_temporary(path.name) and path.is_file() and not path.is_symlink():
            path.unlink(missing_ok=True)
            removed.append(path.name)
    return sorted(removed)


def read_description(path: Path, fmt: str, what: str) -> dict:
    """The JSON document at ``path`` written with ``"format": fmt`` (a saved model's description);
    ConfigError naming the file and ``what`` it should describe otherwise."""
    try:
        doc = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read {what} description ({exc})") from exc
    if not isinstance(doc, dict) or doc.get("format") != fmt:
        raise ConfigError(f"{path}: not a deepz {what} description (format != {fmt!r})")
    return doc


def read_json_object(path: Path, what: str) -> dict[str, Any]:
    """The JSON object in ``path`` (a run's config.json or status.json); ConfigError naming the
    file when it is missing, unreadable, not JSON or not an object."""
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file ({what})") from None
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: damaged {what}: not JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise ConfigError(f"{path}: damaged {what}: expected a JSON object, got {doc!r:.60}")
    return doc


# ---------------------------------------------------------------- outputs never overwrite inputs


def same_file(a: PathLike, b: PathLike) -> bool:
    """True when ``a`` and ``b`` are one existing file or folder (symlinks, hard links and '..'
    resolved)."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _inside(path: Path, folder: Path) -> bool:
    return Path(os.path.realpath(path)).is_relative_to(os.path.realpath(folder))


def _overwrites(out: Path, inp: Path) -> str | None:
    """How writing ``out`` would damage the input ``inp`` (``"is a file inside"``, followed by
    the input's name in the message), or None."""
    if same_file(out, inp):
        return "is the same file as" if inp.is_file() else "is"
    if inp.is_dir() and out.exists() and _inside(out, inp):
        return "is a file inside"
    if out.is_dir() and inp.exists() and _inside(inp, out):
        return "is a folder holding"
    return None


def refuse_overwriting_inputs(
    outputs: Mapping[str, PathLike | None], inputs: Mapping[str, PathLike | None]
) -> None:
    """Raise ConfigError when writing any of ``outputs`` would replace or mix into one of
    ``inputs``: an output that is the same file as an input (also through a symlink, a hard link
    or '..'), an existing file inside an input folder (a run's ``predictions.fits``), or a folder
    that holds an input. Keys are the names the caller's user knows (``--out`` on the command
    line, ``out`` in Python); None values are skipped."""
    for out_name, out in outputs.items():
        for in_name, inp in inputs.items():
            if out is None or inp is None:
                continue
            problem = _overwrites(Path(out), Path(inp))
            if problem:
                raise ConfigError(
                    f"{out_name} {str(out)!r} {problem} the input {in_name} {str(inp)!r}: writing it "
                    "would destroy the input; choose another output"
                )


def check_writable(out: PathLike, name: str = "output") -> None:
    """ConfigError when ``out`` could not be created: an ancestor folder is a file, or the first
    existing one cannot be written (checked before the work, not after hours of it)."""
    path = Path(os.path.abspath(out))
    for ancestor in path.parents:
        if not ancestor.exists():
            continue
        if not ancestor.is_dir():
            raise ConfigError(f"{name} {str(out)!r}: {ancestor} is a file, not a folder")
        if not os.access(ancestor, os.W_OK | os.X_OK):
            raise ConfigError(f"{name} {str(out)!r}: no permission to write in {ancestor}")
        return


RUN_MARKERS = ("config.json", "status.json")  # what makes a folder a deepz run folder
DATASET_PLAN = "_plan.json"  # what makes a folder a partitioned predictions dataset (resumable)


def is_run_folder(folder: PathLike) -> bool:
    """True for a deepz run folder: a folder holding a run's config.json and status.json."""
    return all((Path(folder) / name).is_file() for name in RUN_MARKERS)


def enclosing_run(path: PathLike) -> Path | None:
    """The deepz run folder that ``path`` is or lies below (its own path, and the path with
    symlinks resolved), else None."""
    for start in (Path(os.path.abspath(path)), Path(os.path.realpath(path))):
        for folder in (start, *start.parents):
            if is_run_folder(folder):
                return folder
    return None


def refuse_run_folder(out: PathLike, name: str = "output", below_only: bool = False) -> None:
    """ConfigError when ``out`` is a deepz run folder or lies in one: a run's files are written
    only by its own commands (train, resume, combine, calibrate), never through an output
    option, whatever ``--overwrite`` says. ``below_only``: only a folder below a run counts
    (``train --out`` names its own run folder)."""
    run = enclosing_run(Path(os.path.abspath(out)).parent if below_only else out)
    if run is None:
        return
    where = "is the deepz run folder" if same_file(out, run) else "is inside the deepz run folder"
    raise ConfigError(
        f"{name} {str(out)!r} {where} {str(run)!r}: a run's files are written only by its own "
        "commands (train, combine, calibrate); choose an output outside it"
    )


def refuse_inside_dataset(out: PathLike, name: str = "output") -> None:
    """ConfigError when ``out`` lies inside a partitioned predictions dataset (a folder holding
    DATASET_PLAN): a foreign file there stops the dataset from resuming (review, ninth session:
    ``evaluate --out DATASET/report.json``). The dataset folder itself may be written (resumed)."""
    for folder in Path(os.path.abspath(out)).parents:
        if (folder / DATASET_PLAN).is_file():
            raise ConfigError(
                f"{name} {str(out)!r} is inside the predictions dataset {str(folder)!r}: a file "
                "there would stop it from resuming; choose an output outside it"
            )


def output_exists(out: PathLike) -> bool:
    """True when writing ``out`` would replace something: a file, a link, or a folder that is
    not empty (an empty folder holds nothing to lose)."""
    path = Path(out)
    if path.is_dir() and not path.is_symlink():
        return any(path.iterdir())
    return path.exists() or path.is_symlink()


def refuse_existing(out: PathLike, name: str = "output") -> None:
    """OutputExistsError when ``out`` exists (``output_exists``): an output replaces nothing
    unless the user asked, with ``--overwrite`` on the command line (options named ``--...``),
    ``overwrite=True`` in Python."""
    if not output_exists(out):
        return
    what = "a folder that is not empty" if Path(out).is_dir() else "an existing file"
    ask = "--overwrite" if name.startswith("--") else "overwrite=True"
    raise OutputExistsError(f"{name} {str(out)!r} is {what}: pass {ask} to replace it")


def check_outputs(
    outputs: Mapping[str, PathLike | None],
    inputs: Mapping[str, PathLike | None],
    overwrite: bool = False,
    resumable: bool = False,
) -> None:
    """Before a command works, for every output: it can be written (``check_writable``), it
    would destroy no input (``refuse_overwriting_inputs``, also with ``overwrite``), it is no
    deepz run folder nor inside one (``refuse_run_folder``, also with ``overwrite``), and it does
    not exist unless ``overwrite`` (``refuse_existing``). ``resumable``: the outputs are folders
    the command resumes or adds to (a dataset folder, an experiments folder), whose own checks
    decide what an existing one may hold."""
    for name, out in outputs.items():
        if out is not None:
            check_writable(out, name)
    refuse_overwriting_inputs(outputs, inputs)
    for name, out in outputs.items():
        if out is None:
            continue
        refuse_run_folder(out, name)
        refuse_inside_dataset(out, name)
        if not (overwrite or resumable):
            refuse_existing(out, name)


# ---------------------------------------------------------------- exclusive locks

LOCK_FILE = ".lock"  # hidden: readers of a dataset folder (pyarrow) skip it


class ExclusiveLock:
    """An exclusive ``flock`` on the file ``path`` with the holder's pid, command and start time
    written inside. The kernel drops it when the process dies, so a stale file never blocks
    anyone. One object holds it at most once (``lock_folder`` adds re-entrancy)."""

    def __init__(self, path: PathLike) -> None:
        self.path = Path(path)
        self.fd: int | None = None

    def acquire(self, retries: int = 0, wait: float = 0.1) -> bool:
        """Take the lock (``retries`` more tries, ``wait`` s apart); False if it is held."""
        if self.fd is not None:
            return False
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666 & ~umask())
        for attempt in range(retries + 1):
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if attempt == retries:
                    os.close(fd)
                    return False
                time.sleep(wait)
        os.ftruncate(fd, 0)
        note = {"pid": os.getpid(), "started": time.time(), "command": _command()}
        os.write(fd, json.dumps(note).encode())
        self.fd = fd
        return True

    def release(self) -> None:
        """Unlock (the note is erased first); nothing when not held."""
        if self.fd is not None:
            os.ftruncate(self.fd, 0)
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None

    def holder(self) -> dict[str, Any] | None:
        """``{"pid", "started", "command"}`` of the live process holding the lock, else None (a
        stale file does not count); pid -1 when the holder has not written its note yet."""
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except OSError:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            try:
                note = json.loads(self.path.read_text() or "{}")
            except (OSError, ValueError):
                note = {}
            return {**note, "pid": int(note.get("pid", -1))} if isinstance(note, dict) else None
        else:
            fcntl.flock(fd, fcntl.LOCK_UN)
            return None
        finally:
            os.close(fd)


def _command() -> str:
    """This process's command line, shortened (for the note in a lock file)."""
    args = [Path(sys.argv[0]).name, *sys.argv[1:]] if sys.argv and sys.argv[0] else []
    return " ".join(args)[:200]


def in_use_error(what: str, note: Mapping[str, Any] | None) -> InUseError:
    """The InUseError a second writer of ``what`` gets, naming the process in ``note``."""
    note = note or {}
    pid = note.get("pid", -1)
    who = f"PID {pid}" if isinstance(pid, int) and pid > 0 else "another process"
    command = f" ({note['command']})" if note.get("command") else ""
    since = note.get("started")
    when = ""
    if isinstance(since, int | float):
        when = f" since {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(since))}"
    return InUseError(
        f"{what} is in use by {who}{command}{when}: wait for it to finish or stop that "
        "process (two writers would mix their files)"
    )


_HELD: dict[str, tuple[ExclusiveLock, int, int]] = {}  # folder -> (lock, depth, thread) held here
_GUARD = threading.Lock()


@contextmanager
def lock_folder(
    folder: PathLike,
    what: str | None = None,
    cleanup: Callable[[Path], Any] | None = remove_temporaries,
) -> Iterator[Path]:
    """Hold the exclusive lock of ``folder`` (created if needed; lock file ``folder/.lock``) for
    the block; InUseError naming the process that holds it otherwise. Re-entrant in the thread
    holding it (a command that locks a run folder calls code that locks it again).
    ``cleanup(folder)`` runs when the lock is taken (default: delete the temporaries killed
    writers left)."""
    folder = Path(folder)
    key, thread = os.path.realpath(folder), threading.get_ident()
    with _GUARD:
        held = _HELD.get(key)
        if held is not None and held[2] == thread:
            _HELD[key] = (held[0], held[1] + 1, thread)
    if held is not None and held[2] != thread:
        raise in_use_error(what or str(folder), {"pid": os.getpid(), "command": "another thread"})
    if held is None:
        lock = ExclusiveLock(folder / LOCK_FILE)
        if not lock.acquire(retries=3, wait=0.05):  # a holder() probe shares it for a moment
            raise in_use_error(what or str(folder), lock.holder())
        with _GUARD:
            _HELD[key] = (lock, 1, thread)
        if cleanup is not None:
            try:
                cleanup(folder)
            except BaseException:
                _unhold(key)
                raise
    try:
        yield folder
    finally:
        _unhold(key)


def _unhold(key: str) -> None:
    with _GUARD:
        lock, depth, thread = _HELD[key]
        if depth > 1:
            _HELD[key] = (lock, depth - 1, thread)
            return
        del _HELD[key]
    lock.release()


def folder_holder(folder: PathLike) -> dict[str, Any] | None:
    """The note of the process holding ``folder``'s lock (``ExclusiveLock.holder``; this
    process's own pid when it holds it), or None."""
    if os.path.realpath(folder) in _HELD:
        return {"pid": os.getpid(), "command": _command()}
    return ExclusiveLock(Path(folder) / LOCK_FILE).holder()


# ---------------------------------------------------------------- file identity

FINGERPRINT_BYTES = 1 << 20  # hashed from each end of a file
_PARQUET_FOOTER_MAX = 64 << 20


def file_fingerprint(path: PathLike) -> str:
    """A cheap content fingerprint: sha256 (first 16 hex digits) of the size, the first and last
    MiB and, for a Parquet file, its whole footer (row groups and statistics of every column).
    Two files that differ in a header, a footer, a row count or their ends differ here."""
    path = Path(path)
    size = path.stat().st_size
    digest = hashlib.sha256(str(size).encode())
    with open(path, "rb") as fh:
        digest.update(fh.read(FINGERPRINT_BYTES))
        fh.seek(max(size - FINGERPRINT_BYTES, 0))
        digest.update(fh.read())
        if size >= 12:
            fh.seek(size - 8)
            tail = fh.read(8)
            footer = int.from_bytes(tail[:4], "little")
            if tail[4:] == b"PAR1" and FINGERPRINT_BYTES < footer + 8 <= min(
                size, _PARQUET_FOOTER_MAX
            ):
                fh.seek(size - 8 - footer)
                digest.update(fh.read(footer))
    return digest.hexdigest()[:16]


def file_identity(path: PathLike) -> dict[str, Any]:
    """What identifies a file's version without reading it all: size, modification time (ns) and
    ``file_fingerprint``; for a folder (a HATS catalogue), those of its files together: their
    total size, the newest time, and a fingerprint of their names, sizes and times (a catalogue
    of thousands of pixel files is not read)."""
    path = Path(path)
    if not path.is_dir():
        stat = path.stat()
        return {
            "size": stat.st_size,
            "mtime_ns": stat.st_mtime_ns,
            "fingerprint": file_fingerprint(path),
        }
    files = sorted(p for p in path.rglob("*") if p.is_file())
    stats = [(str(p.relative_to(path)), p.stat()) for p in files]
    listing = "\n".join(f"{name} {st.st_size} {st.st_mtime_ns}" for name, st in stats)
    return {
        "size": sum(st.st_size for _, st in stats),
        "mtime_ns": max((st.st_mtime_ns for _, st in stats), default=path.stat().st_mtime_ns),
        "fingerprint": hashlib.sha256(listing.encode()).hexdigest()[:16],
    }


def file_digest(path: PathLike, block: int = 1 << 22) -> str:
    """sha256 of the whole file (hex), read in ``block``-byte pieces."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(block):
            digest.update(chunk)
    return digest.hexdigest()
