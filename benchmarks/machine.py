"""What a benchmark ran on, in one line: the processor (vendor, family/model/stepping, nominal
clock), its caches, whether it is a virtual machine, and the Python build.

The figures in docs/BENCHMARKS.md were taken on guests whose processor changed from day to day (an
AMD EPYC, then two Intel Xeon models, ~1.5x apart on the RMSC04-like day) while the kernel's
"model name" read the same "Intel(R) Xeon(R) Processor" on both Xeons: a figure is comparable with
another only when this line is the same. The interpreter is named by its build (version, date,
compiler, path): two builds of one version, compiled with different options, differ in speed.

    python benchmarks/machine.py    # prints the line
"""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path


def _cpuinfo() -> dict[str, str]:
    """The first processor's fields of /proc/cpuinfo (empty where there is none)."""
    fields: dict[str, str] = {}
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return fields
    for line in text.splitlines():
        if not line.strip():
            break  # the first processor's block ends at its blank line
        key, _, value = line.partition(":")
        fields[key.strip()] = value.strip()
    return fields


def _caches() -> str:
    """L2 and L3 size as the kernel reports them for the first CPU ("L2 4096K, L3 307200K")."""
    found = []
    for index in sorted(Path("/sys/devices/system/cpu/cpu0/cache").glob("index*")):
        try:
            level = (index / "level").read_text().strip()
            size = (index / "size").read_text().strip()
        except OSError:
            continue
        if level in ("2", "3"):
            found.append(f"L{level} {size}")
    return ", ".join(found)


def python_build() -> str:
    """The interpreter: implementation, version, build date, compiler and where it lives."""
    _, built = platform.python_build()
    return (f"{platform.python_implementation()} {platform.python_version()} (built {built}, "
            f"{platform.python_compiler()}) at {sys.base_prefix}")


def describe() -> str:
    """One line naming the processor, its caches, the hypervisor flag, the core count and Python."""
    info = _cpuinfo()
    cpu = info.get("model name") or platform.processor() or platform.machine()
    ident = ", ".join(f"{name} {info[key]}" for key, name in
                      (("cpu family", "family"), ("model", "model"), ("stepping", "stepping")) if key in info)
    # bogomips is twice the nominal clock on x86 (the kernel's calibration); not "cpu MHz", which a
    # guest reads once from its host at boot
    clock = f"{float(info['bogomips']) / 2:.0f} MHz nominal" if "bogomips" in info else ""
    parts = [f"{cpu} ({ident})" if ident else cpu, clock, _caches(),
             "virtual machine" if "hypervisor" in info.get("flags", "").split() else "",
             f"{os.cpu_count()} logical CPUs", python_build()]
    return "; ".join(p for p in parts if p)


if __name__ == "__main__":
    print(describe())
