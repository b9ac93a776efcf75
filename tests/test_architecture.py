"""The package map of docs/architecture.md, enforced: which package may import which, how large a
module may grow, and what the package root holds. Lazy imports inside functions count too."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import slimkit

PACKAGE = Path(slimkit.__file__).parent

# Low to high. A package imports only packages on a lower level; packages that share a level are
# peers and do not import each other. Keep in step with docs/architecture.md.
LAYERS: list[tuple[str, ...]] = [
    ("utils",),
    ("data",),
    ("models",),
    ("metrics",),
    ("sparse",),
    ("importance",),
    ("compressed",),
    ("structured", "lm"),
    ("train",),
    ("methods",),
    ("export",),
    ("quant", "distill", "efficiency"),
    ("report",),
    ("runs",),
    ("cli",),
    ("__main__",),
]
LEVEL = {package: level for level, packages in enumerate(LAYERS) for package in packages}
ROOT_MODULES = {"__init__.py", "__main__.py", "cli.py"}
MAX_MODULE_LINES = 450


def _package_of(path: Path) -> str:
    parts = path.relative_to(PACKAGE).parts
    return parts[0].removesuffix(".py")


def _imported_packages(path: Path) -> set[str]:
    """The slimkit packages a module imports, at module level or inside functions."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module == "slimkit":
                found |= {alias.name for alias in node.names if alias.name != "__version__"}
            elif node.module.startswith("slimkit."):
                found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            found |= {alias.name.split(".")[1] for alias in node.names if alias.name.startswith("slimkit.")}
        elif isinstance(node, ast.ImportFrom) and node.level > 0:
            raise AssertionError(f"{path}: use absolute slimkit imports")
    return found


def _modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "csrc" not in p.parts)


def test_every_package_has_a_layer():
    packages = {_package_of(path) for path in _modules()} - {"__init__"}
    assert packages <= set(LEVEL), f"packages missing from LAYERS: {sorted(packages - set(LEVEL))}"


def test_imports_follow_the_layers():
    wrong = []
    for path in _modules():
        package = _package_of(path)
        if package == "__init__":
            continue
        for imported in _imported_packages(path) - {package}:
            if imported not in LEVEL:
                wrong.append(f"{path.relative_to(PACKAGE)} imports unknown package slimkit.{imported}")
            elif LEVEL[imported] >= LEVEL[package]:
                wrong.append(f"{path.relative_to(PACKAGE)} ({package}) imports slimkit.{imported}, which is not below it")
    assert not wrong, "\n".join(wrong)


def test_the_layer_check_sees_a_violation(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from slimkit.train.loop import Trainer\n    import slimkit.runs.config\n")
    assert _imported_packages(bad) == {"train", "runs"}


def test_low_layers_load_no_application_code():
    code = (
        "import sys, slimkit.sparse, slimkit.structured, slimkit.compressed, slimkit.importance\n"
        "bad = [m for m in sys.modules if m.startswith(('slimkit.train', 'slimkit.runs', 'slimkit.data.sources'))]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_package_root_holds_only_the_entry_points():
    assert {p.name for p in PACKAGE.glob("*.py")} == ROOT_MODULES


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_modules_stay_small(path):
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_MODULE_LINES, f"{path.relative_to(PACKAGE)} has {lines} lines: split it by job"
