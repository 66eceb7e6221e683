"""The annotations hold: mypy, configured in pyproject.toml ([tool.mypy]), finds no error in the
three packages, checks every one of their modules, and does report an error when there is one."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("sim", "clearing", "agents")


def _mypy(*args: str) -> subprocess.CompletedProcess[str]:
    # a fresh process from the project root, so it reads the project's configuration and its cache
    return subprocess.run([sys.executable, "-m", "mypy", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=600)


def test_the_packages_type_check() -> None:
    out = _mypy()
    assert out.returncode == 0, out.stdout + out.stderr
    # every module of the packages was read: the configuration's ``files`` has not lost one
    modules = sum(1 for package in PACKAGES for _ in (ROOT / package).rglob("*.py"))
    checked = re.search(r"no issues found in (\d+) source files", out.stdout)
    assert checked is not None, out.stdout
    assert int(checked.group(1)) == modules


def test_a_wrong_annotation_fails(tmp_path: Path) -> None:
    # the control: under the same configuration (and its pydantic plugin), code that disagrees
    # with its annotations, a config model given a wrong or unknown field, and a function without
    # annotations are errors (a file named on the command line replaces the configuration's files)
    planted = tmp_path / "planted.py"
    planted.write_text("from sim.core.strict_model import StrictModel\n"
               "class Limits(StrictModel):\n"
               "    cap: float\n"
               "def lots(n: int) -> int:\n"
               "    return str(n)\n"
               "def unannotated(n):\n"
               "    return n\n"
               "Limits(cap='high', floor=1)\n")
    out = _mypy(str(planted))
    assert out.returncode == 1, out.stdout + out.stderr
    assert 'Incompatible return value type (got "str", expected "int")' in out.stdout
    assert 'Argument "cap" to "Limits" has incompatible type "str"; expected "float"' in out.stdout
    assert 'Unexpected keyword argument "floor" for "Limits"' in out.stdout
    assert "Function is missing a type annotation" in out.stdout
