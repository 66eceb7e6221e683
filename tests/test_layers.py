"""The layering is enforced: the import-linter contracts in pyproject.toml (layers core -> market ->
clearing -> agents -> experiment, no cycles between a package's modules, nothing imports the scripting
facade) hold for the code, and fail on a planted upward import."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _lint(root: Path) -> subprocess.CompletedProcess[str]:
    # a fresh process with ``root`` first on the path: grimp builds its graph from the files under it
    return subprocess.run([sys.executable, "-c", "import sys; sys.path.insert(0, '.'); "
                           "from importlinter.cli import lint_imports_command; lint_imports_command()",
                           "--no-cache"],
                          cwd=root, capture_output=True, text=True, timeout=300)


def test_the_contracts_hold() -> None:
    out = _lint(ROOT)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "4 kept, 0 broken" in out.stdout


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the packages and the contracts, to plant bad imports in."""
    root = tmp_path_factory.mktemp("planted")
    for package in ("sim", "clearing", "agents"):
        shutil.copytree(ROOT / package, root / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", root / "pyproject.toml")
    return root


def _plant(root: Path, module: str, line: str) -> str:
    path = root / module
    original = path.read_text()
    path.write_text(original + "\n" + line + "\n")
    try:
        out = _lint(root)
    finally:
        path.write_text(original)
    assert out.returncode != 0, f"planting {line!r} in {module} was not caught:\n{out.stdout}"
    return out.stdout


def test_an_upward_import_fails(planted: Path) -> None:
    report = _plant(planted, "clearing/ledger.py", "import agents.base  # planted: clearing -> agents")
    assert "core -> market -> clearing -> agents -> experiment BROKEN" in report
    assert "clearing.ledger -> agents.base" in report


def test_a_market_module_reaching_into_clearing_fails(planted: Path) -> None:
    report = _plant(planted, "sim/market/book.py", "import clearing.house  # planted: market -> clearing")
    assert "sim.market.book -> clearing.house" in report


def test_a_cycle_between_siblings_fails(planted: Path) -> None:
    report = _plant(planted, "sim/core/streams.py", "import sim.core.kernel  # planted: kernel imports streams")
    assert "no import cycles between the modules of a package BROKEN" in report


def test_an_agent_reaching_into_the_house_fails(planted: Path) -> None:
    report = _plant(planted, "agents/noise.py", "import clearing.house  # planted: the whole house")
    assert "agents reach the clearing house only through agents.interfaces BROKEN" in report


def test_a_layer_importing_the_facade_fails(planted: Path) -> None:
    report = _plant(planted, "clearing/ledger.py", "import sim.api  # planted")
    assert "only users import the scripting facade BROKEN" in report
