"""Test-suite options: the long fuzzing profile runs only when asked for (``pytest -m fuzz``)."""

from __future__ import annotations

import sim  # noqa: F401 -- first, before numpy: the suite runs clearsim's arithmetic (sim.core.arithmetic)
import pytest


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if "fuzz" in (config.getoption("-m") or ""):
        return
    skip = pytest.mark.skip(reason="the long fuzzing profile: run it with pytest -m fuzz")
    for item in items:
        if "fuzz" in item.keywords:
            item.add_marker(skip)
