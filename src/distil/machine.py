"""What a result was measured on: CPU, the instruction set torch uses, library versions.

    from distil.machine import describe_machine
    describe_machine()   # {"cpu_model": "AMD EPYC ...", "torch_cpu_capability": "AVX2", ...}

Results move with the machine, not only timings: torch picks its CPU kernels by instruction
set (AVX2, AVX-512, ...), and forcing another (ATEN_CPU_CAPABILITY=default) changes trained
weights and per-task accuracy by a few points. eval.json records this next to its figures.
"""

import importlib.metadata
import os
import platform
from pathlib import Path
from typing import Any

CPUINFO = Path("/proc/cpuinfo")
FLAGS = {
    "avx2": "avx2",
    "avx512": "avx512f",
    "avx512_vnni": "avx512_vnni",
    "avx_vnni": "avx_vnni",
    "amx": "amx_tile",
}
"""Our name for an instruction-set extension -> its flag in /proc/cpuinfo."""
LIBRARIES = ("torch", "transformers", "onnxruntime", "numpy")


def _cpuinfo_field(text: str, name: str) -> str | None:
    """The first `name : value` line's value in /proc/cpuinfo text."""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == name:
            return value.strip()
    return None


def cpu_flags(cpuinfo: str) -> dict[str, bool]:
    """Which instruction-set extensions the CPU reports, by our names (FLAGS)."""
    flags = set((_cpuinfo_field(cpuinfo, "flags") or "").split())
    return {name: flag in flags for name, flag in FLAGS.items()}


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def _torch_capability() -> str | None:
    """The kernel family torch dispatches to on this CPU (None without torch)."""
    try:
        import torch
    except ImportError:
        return None
    return torch.backends.cpu.get_cpu_capability()


def describe_machine(cpuinfo: str | None = None) -> dict[str, Any]:
    """CPU model, core count, torch's instruction-set level, CPU flags, library versions."""
    if cpuinfo is None:
        cpuinfo = CPUINFO.read_text() if CPUINFO.is_file() else ""
    return {
        "cpu_model": _cpuinfo_field(cpuinfo, "model name") or platform.processor() or platform.machine(),
        "architecture": platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_cpu_capability": _torch_capability(),
        "cpu_flags": cpu_flags(cpuinfo) if cpuinfo else {},
        "platform": platform.platform(),
        "versions": {"python": platform.python_version(), **{name: _version(name) for name in LIBRARIES}},
    }


def machine_line(machine: dict[str, Any]) -> str:
    """One readable line: 'AMD EPYC, 2 cores, torch kernels AVX2 (CPU has AVX2); torch 2.x ...'."""
    has = [
        name.upper().replace("_", "-")
        for name, present in (machine.get("cpu_flags") or {}).items()
        if present
    ]
    versions = ", ".join(
        f"{name} {version}" for name, version in (machine.get("versions") or {}).items() if version
    )
    return (
        f"{machine.get('cpu_model', '?')}, {machine.get('cpu_count', '?')} cores, torch "
        f"kernels {machine.get('torch_cpu_capability') or '?'} (CPU has "
        f"{', '.join(has) or 'none of AVX2/AVX-512/VNNI/AMX'}); {versions}"
    )


def is_busy(load_average: float | None, cores: int | None) -> bool:
    """Whether other work was running: a 1-minute load average over half the cores."""
    return load_average is not None and bool(cores) and load_average > cores / 2
