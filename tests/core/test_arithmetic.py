"""One floating-point arithmetic on every AVX2 machine (sim.core.arithmetic).

The claim is about other machines, so they are played here by the two variables that decide what
numpy and OpenBLAS run: an AVX2-only CPU (AMD's Zen, an older Intel) is numpy without its AVX-512
loops and OpenBLAS's Zen kernels, which is what such a CPU picks itself. Each case runs in a fresh
process: numpy reads the variables once, when it loads.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest

from sim.core import arithmetic
from sim.core.arithmetic import BLAS_CORE, NUMPY_FEATURES, OPT_OUT, pinned_variables

ROOT = Path(__file__).resolve().parents[2]
FLAGS = arithmetic.cpu_flags()
needs_avx2 = pytest.mark.skipif(not {"avx2", "fma"} <= FLAGS or os.uname().machine != "x86_64",
                                reason="the pinned arithmetic needs an x86-64 CPU with AVX2 and FMA")
needs_avx512 = pytest.mark.skipif("avx512f" not in FLAGS, reason="the control needs a CPU with AVX-512")

# numpy's float64 loops without AVX-512 and OpenBLAS's kernels for AMD's Zen: an AVX2-only machine
AVX2_ONLY_MACHINE = {OPT_OUT: "1", NUMPY_FEATURES: "X86_V4 AVX512_ICL AVX512_SPR AVX512F AVX512_SKX",
                     BLAS_CORE: "Zen"}

# rmsc04_like's first 600 s show numpy's loops (its float64 exp and log); the default episode
# (correlated paths, portfolio scenarios) shows OpenBLAS's kernels too
EPISODES = (("configs/bench/rmsc04_like.yaml", {"duration": 600.0}), ("configs/default.yaml", {}))

_TABLES_DIGEST = """
import sim, hashlib
import numpy as np
from sim.experiment.config import load_episode
from sim.experiment.episode import run
result = run(load_episode({path!r}, {overrides!r} | {{"outputs": {{"counterfactual": False}}}}))
digest = hashlib.sha256()
for name in sorted(result.tables):
    for column in sorted(result.tables[name]):
        values = np.asarray(result.tables[name][column])
        digest.update(values.tobytes() if values.dtype != object else repr(values.tolist()).encode())
print(digest.hexdigest())
"""


_PROFILE = """
import json, os{first}
from sim.core.arithmetic import profile
print(json.dumps([profile(), os.environ.get("{opt_out}")]))
"""


def _python(code: str, **variables: str) -> str:
    environ = {k: v for k, v in os.environ.items() if k not in arithmetic.ARITHMETIC_VARIABLES}
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=environ | variables, check=True,
                          capture_output=True, text=True).stdout.strip()


def _profile(numpy_first: bool = False, **variables: str) -> tuple[dict, str | None]:
    first = "\nimport numpy\nimport sim" if numpy_first else "\nimport sim\nimport numpy"
    return tuple(json.loads(_python(_PROFILE.format(first=first, opt_out=OPT_OUT), **variables)))


@cache
def _tables(episode: int, **variables: str) -> str:
    path, overrides = EPISODES[episode]
    return _python(_TABLES_DIGEST.format(path=path, overrides=overrides), **variables)


@needs_avx2
@pytest.mark.parametrize("episode", [0, 1], ids=["rmsc04_like", "default"])
def test_results_have_the_same_bits_on_an_avx2_only_machine(episode):
    assert _tables(episode, **AVX2_ONLY_MACHINE) == _tables(episode)


@needs_avx2
@needs_avx512
def test_control_this_machines_numpy_loops_give_other_bits():
    """What the pin removes: this AVX-512 machine's own numpy loops change the tables' bits."""
    assert _tables(0, **{OPT_OUT: "1"}) != _tables(0)


@needs_avx2
@needs_avx512
def test_control_this_machines_blas_kernels_give_other_bits():
    """...and so do its own OpenBLAS kernels (SkylakeX), with numpy's loops as pinned."""
    assert _tables(1, **AVX2_ONLY_MACHINE | {BLAS_CORE: "SkylakeX"}) != _tables(1)


@needs_avx2
def test_loading_clearsim_before_numpy_runs_the_portable_arithmetic():
    profile, opt_out = _profile()
    assert (profile["numpy_avx512"], profile["blas_core"], profile["portable"], opt_out) == (False, "Haswell", True, None)
    assert _profile(**AVX2_ONLY_MACHINE)[0] | {"numpy_simd": None} == profile | {"numpy_simd": None}


@needs_avx512
def test_the_opt_out_and_numpy_loaded_first_keep_the_cpus_own_arithmetic():
    assert _profile(**{OPT_OUT: "1"})[0]["numpy_avx512"] is True
    profile, opt_out = _profile(numpy_first=True)
    # too late for this process: it says so in the environment its children inherit
    assert (profile["numpy_avx512"], profile["portable"], opt_out) == (True, False, "1")


@needs_avx2
def test_the_suite_itself_runs_the_arithmetic_its_workers_do():
    """conftest loads clearsim first: the in-process runs the tests compare with pool, Ray and Dask
    runs have the arithmetic those workers get."""
    profile = arithmetic.profile()
    assert (profile["numpy_avx512"], profile["blas_core"], profile["portable"]) == (False, "Haswell", True)


@pytest.mark.parametrize("environ, machine, flags, numpy_version, expected", [
    ({}, "x86_64", {"avx2", "fma", "avx512f"}, "2.4.6",
     {NUMPY_FEATURES: "X86_V4 AVX512_ICL AVX512_SPR", BLAS_CORE: "Haswell"}),
    ({}, "x86_64", {"avx2", "fma"}, "1.26.4",
     {NUMPY_FEATURES: "AVX512F AVX512CD AVX512_KNL AVX512_KNM AVX512_SKX AVX512_CLX AVX512_CNL AVX512_ICL AVX512_SPR",
      BLAS_CORE: "Haswell"}),
    ({BLAS_CORE: "SkylakeX"}, "x86_64", {"avx2", "fma"}, "2.4.6", {NUMPY_FEATURES: "X86_V4 AVX512_ICL AVX512_SPR"}),
    ({OPT_OUT: "1"}, "x86_64", {"avx2", "fma"}, "2.4.6", {}),
    ({OPT_OUT: "0"}, "x86_64", {"avx2", "fma"}, "2.4.6",
     {NUMPY_FEATURES: "X86_V4 AVX512_ICL AVX512_SPR", BLAS_CORE: "Haswell"}),
    ({}, "x86_64", {"avx", "sse4_2"}, "2.4.6", {}),  # no AVX2: OpenBLAS's Haswell kernels would not run
    ({}, "aarch64", {"asimd"}, "2.4.6", {}),
])
def test_pinned_variables(environ, machine, flags, numpy_version, expected):
    assert pinned_variables(environ, machine, frozenset(flags), numpy_version) == expected


def test_workers_get_exactly_the_drivers_arithmetic_variables(monkeypatch):
    from sim.experiment.executors import arithmetic_of

    monkeypatch.setenv(OPT_OUT, "1")  # a Ray worker that loaded numpy first
    monkeypatch.delenv(NUMPY_FEATURES, raising=False)
    monkeypatch.delenv(BLAS_CORE, raising=False)
    driver = {NUMPY_FEATURES: "X86_V4", BLAS_CORE: "Haswell"}
    with arithmetic_of(driver):
        assert arithmetic.worker_environment() == driver
    assert arithmetic.worker_environment() == {OPT_OUT: "1"}
