"""The house rules of deepz_core's layout (docs/design.md): imports run one way, from the top
floor down; rooms on one floor do not import each other; the core never imports streamlit; no
module imports a private name of another."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "deepz_core"
# floors from the ground up; a room may import rooms on lower floors (and itself) only
FLOORS = [
    {"errors", "version"},
    {"files", "device", "progress", "memory", "configs"},
    {"rundir", "pz", "sed"},
    {"nets", "catalog"},
    {"training", "simulate"},
    {"inference"},
    {"templatefit", "evaluation"},
    {"hybrid"},
    {"jobs"},
    {"bench", "experiments"},
    {"cli"},
    {"__init__", "__main__"},
]
FLOOR = {room: i for i, rooms in enumerate(FLOORS) for room in rooms}


def _room(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _imports() -> list[tuple[str, str, str, list[str]]]:
    """(file, importer module, imported module, names) for every deepz_core import, lazy ones too."""
    out = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        module = ".".join(rel.parts).removesuffix(".__init__")
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("deepz_core"):
                out.append((str(rel), module, node.module, [a.name for a in node.names]))
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.startswith("deepz_core"):
                        out.append((str(rel), module, alias.name, []))
    return out


def test_every_room_is_on_a_floor() -> None:
    rooms = {p.stem if p.is_file() else p.name for p in PACKAGE.iterdir()} - {"__pycache__"}
    assert rooms - set(FLOOR) == set(), "a new room needs a floor in FLOORS and docs/design.md"


def test_imports_run_down_and_never_sideways() -> None:
    bad = []
    for file, importer, imported, names in _imports():
        if imported == "deepz_core":  # ``from deepz_core import submodule``
            targets = [f"deepz_core.{n}" for n in names]
        else:
            targets = [imported]
        src = _room(importer)
        for target in targets:
            dst = _room(target)
            if dst != src and FLOOR[dst] >= FLOOR[src]:
                bad.append(
                    f"{file}: {src} (floor {FLOOR[src]}) imports {target} (floor {FLOOR[dst]})"
                )
    assert not bad, "\n".join(bad)


def test_no_private_names_cross_modules() -> None:
    bad = [
        f"{file}: {name} from {imported}"
        for file, importer, imported, names in _imports()
        for name in names
        if name.startswith("_") and imported != importer
    ]
    assert not bad, "\n".join(bad)


def test_the_core_never_imports_streamlit() -> None:
    for path in PACKAGE.rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = (
                [a.name for a in getattr(node, "names", [])] if isinstance(node, ast.Import) else []
            )
            module = node.module if isinstance(node, ast.ImportFrom) else None
            assert "streamlit" not in {
                *(n.split(".")[0] for n in names),
                (module or "").split(".")[0],
            }, path


def test_the_formatter_decides_line_breaks() -> None:
    """No formatter-skip or formatter-off markers anywhere (issue 24): ruff format decides line breaks."""
    marker = "# fmt: " + "skip"  # split so that this file does not match itself
    found = [
        f"{path.relative_to(ROOT)}:{n}"
        for folder in ("deepz_core", "app", "pages", "tests", "scripts", "rail")
        for path in (ROOT / folder).rglob("*.py")
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if marker in line or ("# fmt: " + "off") in line
    ]
    assert not found, found


def _public_names() -> set[str]:
    """``deepz_core.__all__``, read from the source (no import)."""
    tree = ast.parse((PACKAGE / "__init__.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets
        ):
            return set(ast.literal_eval(node.value))
    raise AssertionError("deepz_core/__init__.py has no __all__")


def _internal_imports(source: str, public: set[str]) -> list[str]:
    """The imports in ``source`` that reach past deepz_core's public API: a subpackage or module
    of deepz_core, or a name of ``deepz_core`` that is not in ``public``."""
    bad = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            bad += [
                f"{node.lineno}: import {a.name}"
                for a in node.names
                if a.name.startswith("deepz_core.")
            ]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "deepz_core":
            names = [a.name for a in node.names]
            if node.module != "deepz_core" or not set(names) <= public:
                bad.append(f"{node.lineno}: from {node.module} import {', '.join(names)}")
    return sorted(bad, key=lambda text: int(text.split(":")[0]))


def test_the_layout_check_finds_internal_imports() -> None:
    public = {"DeepzError", "read_catalog"}
    source = (
        "import deepz_core\nimport deepz_core as dz\nfrom deepz_core import DeepzError\n"
        "def f():\n    from deepz_core.rundir import RunDir\n"
        "import deepz_core.jobs.status\nfrom deepz_core import uploads\n"
    )
    found = _internal_imports(source, public)
    assert [line.split(":")[0] for line in found] == ["5", "6", "7"], found


def test_pages_import_only_the_public_api() -> None:
    """Pages are thin layers (issue 24): they import app modules and deepz_core's public names
    (``deepz_core.__all__``); what they need from the subpackages goes through app/."""
    public = _public_names()
    assert {"DeepzError", "read_catalog", "train"} <= public
    pages = sorted((ROOT / "pages").glob("*.py"))
    assert pages, "no pages found"
    bad = [
        f"pages/{path.name}:{line}"
        for path in pages
        for line in _internal_imports(path.read_text(), public)
    ]
    assert not bad, "pages import deepz_core internals (wrap them in app/):\n" + "\n".join(bad)
