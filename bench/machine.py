"""What a benchmark ran on, written into every bench JSON: speed defaults and figures depend on the CPU
(AVX2-only hosts and AVX-512/AMX hosts both occur), so a figure without its CPU cannot be compared."""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path

#: The /proc/cpuinfo flags that change which kernels torch, bitsandbytes and ONNX Runtime take.
KEY_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8")


def machine() -> dict:
    """CPU model, core count and ``/proc/cpuinfo`` flags of this host (empty where the file does not exist)."""
    info: dict[str, str] = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            info.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    flags = sorted(info.get("flags", "").split())
    return {
        "arch": platform.machine(),
        "cores": os.cpu_count(),
        "cpu_model": info.get("model name", platform.processor()),
        "key_flags": [flag for flag in KEY_FLAGS if flag in flags],
        "cpu_flags": flags,
    }


def write_result(path: Path, result: dict) -> None:
    """Write ``result`` as JSON to ``path`` with the host's :func:`machine` description under ``"machine"``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({**result, "machine": machine()}, indent=1) + "\n")
