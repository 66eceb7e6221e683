"""One floating-point arithmetic on every x86-64 machine with AVX2: numpy's AVX2 loops, OpenBLAS's
Haswell kernels.

Same config + seed must give the same results on any worker, and a sweep on a cluster puts runs on
whichever machine is free. numpy and OpenBLAS pick their code for the CPU when numpy is imported:
on an AVX-512 machine numpy runs its AVX-512 loops (whose float64 ``exp``, ``log``, ... round
differently in the last bit) and OpenBLAS its SkylakeX kernels (whose products sum in another
order). Measured on the five reference episodes (``benchmarks/digest_episodes.py``): their tables
differ in the last bits -- the oracle's path first, then marks, margins and equities -- between any
two of OpenBLAS's SkylakeX, Haswell, Sandybridge and Prescott kernels, and between numpy with and
without its AVX-512 loops. A last bit is enough to flip a margin comparison and change the episode.

So, unless told not to, importing clearsim (``sim``, ``clearing`` or ``agents``) before numpy sets
two variables numpy and OpenBLAS read when they load: ``NPY_DISABLE_CPU_FEATURES`` (numpy's
AVX-512 dispatch targets off: it runs its AVX2 loops, as on an AVX2-only CPU) and
``OPENBLAS_CORETYPE=Haswell`` (the kernels OpenBLAS picks itself on AVX2 CPUs, AMD's Zen
included). They are in ``os.environ``, so every process clearsim starts (a pool's workers, a Ray
worker's run process) inherits them; Ray and Dask workers on other machines get them from the
driver (``worker_environment``). The profile needs AVX2 and FMA (Intel since 2013, AMD since
2017); elsewhere (older x86, ARM) nothing is set and the CPU's own arithmetic runs.

Not set: when numpy was imported first (too late for this process; the processes it starts then
keep the native arithmetic too, so a script's own runs and its workers' agree -- import clearsim
first, or set the two variables in the shell), when the variable is already set (the user's
choice), or with ``CLEARSIM_NATIVE_ARITHMETIC=1``. ``profile()`` says which
arithmetic a process runs; results record it. Speed (docs/BENCHMARKS.md): the default episode under
portfolio margin 0.97x and under ``var_apc`` 0.94x the CPU of the AVX-512 arithmetic on this
machine -- the AVX-512 paths were not faster here.
"""

from __future__ import annotations

import os
import platform
import sys
from collections.abc import Mapping, MutableMapping
from functools import cache
from importlib import metadata

OPT_OUT = "CLEARSIM_NATIVE_ARITHMETIC"
NUMPY_FEATURES = "NPY_DISABLE_CPU_FEATURES"
BLAS_CORE = "OPENBLAS_CORETYPE"
PINNED_BLAS_CORE = "Haswell"
# numpy's AVX-512 dispatch targets: grouped as X86_V4 from numpy 2.4, one per feature set before.
# A name this numpy does not dispatch only costs an ImportWarning (ignored by default).
_AVX512_TARGETS_SINCE_2_4 = "X86_V4 AVX512_ICL AVX512_SPR"
_AVX512_TARGETS_BEFORE_2_4 = "AVX512F AVX512CD AVX512_KNL AVX512_KNM AVX512_SKX AVX512_CLX AVX512_CNL AVX512_ICL AVX512_SPR"
_REQUIRED_FLAGS = frozenset({"avx2", "fma"})


def cpu_flags(cpuinfo: str = "/proc/cpuinfo") -> frozenset[str]:
    """The CPU's feature flags as the kernel lists them (empty where there is no such file)."""
    try:
        with open(cpuinfo, encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith("flags"):
                    return frozenset(line.partition(":")[2].split())
    except OSError:
        pass
    return frozenset()


def _numpy_targets(numpy_version: str) -> str:
    major, minor = (int(part) for part in numpy_version.split(".")[:2])
    return _AVX512_TARGETS_SINCE_2_4 if (major, minor) >= (2, 4) else _AVX512_TARGETS_BEFORE_2_4


def _opted_out(environ: Mapping[str, str]) -> bool:
    return environ.get(OPT_OUT, "") not in ("", "0")


def pinned_variables(environ: Mapping[str, str], machine: str, flags: frozenset[str],
                     numpy_version: str) -> dict[str, str]:
    """The variables to set for the pinned arithmetic on this machine, given the environment:
    none with the opt-out, off x86-64 or without AVX2 and FMA; never one the environment sets."""
    if _opted_out(environ):
        return {}
    if machine.lower() not in ("x86_64", "amd64") or not _REQUIRED_FLAGS <= flags:
        return {}
    wanted = {NUMPY_FEATURES: _numpy_targets(numpy_version), BLAS_CORE: PINNED_BLAS_CORE}
    return {name: value for name, value in wanted.items() if name not in environ}


def pin(environ: MutableMapping[str, str] | None = None) -> dict[str, str]:
    """Set the pinned arithmetic's variables (see the module doc); returns what was set. Called
    when ``sim`` is imported. With numpy loaded already it is too late for this process, which
    keeps the CPU's own arithmetic: the opt-out is set instead, so that the processes it starts
    (which load clearsim before numpy) keep it too and its runs agree with theirs."""
    environ = os.environ if environ is None else environ
    if _opted_out(environ):
        return {}
    if "numpy" in sys.modules:
        environ[OPT_OUT] = "1"
        return {OPT_OUT: "1"}
    try:
        numpy_version = metadata.version("numpy")
    except metadata.PackageNotFoundError:
        return {}
    chosen = pinned_variables(environ, platform.machine(), cpu_flags(), numpy_version)
    environ.update(chosen)
    return chosen


ARITHMETIC_VARIABLES = (OPT_OUT, NUMPY_FEATURES, BLAS_CORE)


def worker_environment(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The arithmetic's variables as this process has them (the pins, or the opt-out): a worker
    process started with exactly these runs this process's arithmetic -- on a machine with AVX2
    and FMA when they are the pins. For workers that load numpy before clearsim (a Dask nanny's)
    or are spawned by a process of another environment (a Ray worker's run process)."""
    environ = os.environ if environ is None else environ
    return {name: environ[name] for name in ARITHMETIC_VARIABLES if name in environ}


@cache  # fixed once numpy is loaded
def profile() -> dict[str, object]:
    """The arithmetic this process runs (imports numpy): numpy's version, its best SIMD target in
    use and whether its AVX-512 loops are among them, OpenBLAS's kernels, the machine, and
    ``portable`` -- True when it is the pinned arithmetic (set here, or an AVX2 CPU's own), which
    every x86-64 machine with AVX2 and FMA runs the same."""
    import numpy as np
    from threadpoolctl import threadpool_info

    try:
        from numpy._core._multiarray_umath import __cpu_dispatch__, __cpu_features__
    except ImportError:  # numpy < 2
        from numpy.core._multiarray_umath import __cpu_dispatch__, __cpu_features__  # type: ignore[no-redef]
    in_use = [target for target in __cpu_dispatch__ if __cpu_features__.get(target)]
    blas = [info.get("architecture") for info in threadpool_info() if info.get("internal_api") == "openblas"]
    avx512 = any(target.startswith(("X86_V4", "AVX512")) for target in in_use)
    blas_core = blas[0] if blas else None
    return {"numpy": np.__version__, "numpy_simd": in_use[-1] if in_use else "baseline",
            "numpy_avx512": avx512, "blas_core": blas_core, "machine": platform.machine(),
            "portable": not avx512 and blas_core == PINNED_BLAS_CORE}
