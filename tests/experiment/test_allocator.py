"""glibc's allocator in clearsim's own processes (sim.experiment.allocator): freed whole-account
arrays stay in the process instead of being faulted in again at the next re-valuation.

Measured by minor page faults: the same array work repeated after a first round faults ~2,000
pages a round with glibc's defaults (the control) and none once freed memory is kept."""

from __future__ import annotations

import os
import platform
import resource
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from sim.experiment import executors
from sim.experiment.allocator import environment, user_sets_allocator
from sim.experiment.executors import Job

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
                                reason="glibc's allocator")

ROUNDS = 20


def faults_of_repeated_array_work() -> int:
    """Minor page faults of ``ROUNDS`` rounds of a re-valuation-like pattern (three 8 MB
    temporaries made and freed), after one round that may fault legitimately."""
    def round_() -> float:
        a = np.ones(1_000_000)
        b = a * 2.0
        return float((a + b).sum())

    round_()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(ROUNDS):
        round_()
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before


SCRIPT = """
import sys
from sim.experiment.allocator import keep_freed_memory
sys.path.insert(0, {here!r})
from test_allocator import faults_of_repeated_array_work
applied = keep_freed_memory() if sys.argv[1] == "keep" else None
print(applied, faults_of_repeated_array_work())
"""


def _fresh_process(mode: str, **env: str) -> tuple[str, int]:
    clean = {k: v for k, v in os.environ.items() if not user_sets_allocator({k: v})}
    clean["PYTHONPATH"] = str(ROOT)
    out = subprocess.run([sys.executable, "-c", SCRIPT.format(here=str(Path(__file__).parent)), mode],
                         env=clean | env, capture_output=True, text=True, check=True).stdout.split()
    return out[0], int(out[1])


def test_kept_freed_memory_is_not_faulted_in_again_and_glibc_defaults_are_the_control():
    applied, kept = _fresh_process("keep")
    _, default = _fresh_process("leave")
    assert applied == "True"
    assert kept < ROUNDS  # none expected; a stray page or two is not the pattern
    assert default > 500 * ROUNDS  # 8 MB = 1,953 pages: the control faults most of them every round


def test_an_allocator_set_in_the_environment_is_left_as_it_is():
    applied, faults = _fresh_process("keep", MALLOC_TRIM_THRESHOLD_="65536")  # Dask's nanny's setting
    assert applied == "False"
    assert faults > 500 * ROUNDS  # trimmed back to the kernel every round, as that setting asks


@pytest.mark.parametrize("environ, expected", [
    ({}, False),
    ({"PYTHONMALLOC": "malloc"}, False),  # Python's allocator, not glibc's settings
    ({"MALLOC_ARENA_MAX": "2"}, True),
    ({"MALLOC_TOP_PAD_": "0"}, True),
    ({"GLIBC_TUNABLES": "glibc.malloc.trim_threshold=65536"}, True),
    ({"GLIBC_TUNABLES": "glibc.pthread.rseq=0"}, False),
])
def test_which_environments_set_the_allocator(environ, expected):
    assert user_sets_allocator(environ) is expected


def test_a_process_started_with_the_environment_form_keeps_freed_memory():
    """What a Dask worker of a cluster clearsim starts gets (``environment()`` in the nanny's
    pre-spawn environment): glibc reads it at the start, and the process then counts as set by
    its environment, so ``keep_freed_memory`` leaves it."""
    applied, faults = _fresh_process("keep", **environment())
    assert applied == "False"  # set by the environment: nothing changed by mallopt
    assert faults < ROUNDS  # and yet kept, by the variables alone


def _faults_row(task: dict) -> dict:
    return {"id": task["id"], "faults": faults_of_repeated_array_work()}


def _error_row(task: dict, text: str) -> dict:
    return {"id": task["id"], "error": text}


def _key(task: dict) -> str:
    return task["id"]


def test_a_local_pool_worker_keeps_freed_memory(tmp_path, monkeypatch):
    for name in [k for k in os.environ if user_sets_allocator({k: os.environ[k]})]:
        monkeypatch.delenv(name)  # the workers inherit this environment
    rows: list[dict] = []
    job = Job(fn=_faults_row, error_row=_error_row, key=_key)
    executors.execute([{"id": "a"}], "local", 1, job, rows.append, running=tmp_path)
    assert rows and "error" not in rows[0], rows
    assert rows[0]["faults"] < ROUNDS
