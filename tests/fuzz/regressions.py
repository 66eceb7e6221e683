"""Episodes the long fuzz profile once failed on, shrunk by hypothesis and kept in ``found/``
(one JSON file each: when it was found, what failed, the commit that fixed it, the episode), so the
normal suite replays them (``tests/test_fuzz_episodes.py``). Add each new one there."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

FOUND_DIR = Path(__file__).parent / "found"


def found() -> dict[str, dict[str, Any]]:
    """File stem -> episode dict, in name order."""
    return {p.stem: json.loads(p.read_text(encoding="utf-8"))["episode"] for p in sorted(FOUND_DIR.glob("*.json"))}
