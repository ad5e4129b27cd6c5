"""Where a benchmark ran: CPU, ISA extensions, OS and library versions (no heavy imports)."""

from __future__ import annotations

import os
import platform
from importlib import metadata
from pathlib import Path

# /proc/cpuinfo flag -> the name reports use. x86 first, then aarch64 ("Features").
ISA_FLAGS = {
    "avx2": "AVX2",
    "fma": "FMA",
    "avx512f": "AVX-512",
    "avx512_vnni": "AVX512-VNNI",
    "avx_vnni": "AVX-VNNI",
    "avx512_bf16": "AVX512-BF16",
    "amx_tile": "AMX",
    "amx_bf16": "AMX-BF16",
    "amx_int8": "AMX-INT8",
    "asimd": "NEON",
    "asimddp": "NEON-DOTPROD",
    "i8mm": "I8MM",
    "sve": "SVE",
    "bf16": "BF16",
}
# Arm's MIDR part numbers (implementer 0x41) for the cores users ship on, so reports name the core.
ARM_PARTS = {
    "0xd03": "Cortex-A53",
    "0xd05": "Cortex-A55",
    "0xd08": "Cortex-A72",
    "0xd0b": "Cortex-A76",
    "0xd0c": "Neoverse-N1",
    "0xd40": "Neoverse-V1",
    "0xd41": "Cortex-A78",
    "0xd49": "Neoverse-N2",
    "0xd4f": "Neoverse-V2",
}
LIBRARIES = ("vlm-export", "numpy", "onnxruntime", "tokenizers", "Pillow", "openvino", "torch", "transformers")


def cpu_info(cpuinfo: Path = Path("/proc/cpuinfo")) -> dict:
    model, flags = platform.processor() or platform.machine(), set()
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            key, value = key.strip().lower(), value.strip()
            if key in ("model name", "cpu model", "hardware") and value:
                model = value
            elif key == "cpu part" and value in ARM_PARTS:
                model = f"Arm {ARM_PARTS[value]}"
            elif key in ("flags", "features"):
                flags |= set(value.split())
    return {
        "model": model,
        "architecture": platform.machine(),
        "logical_cores": os.cpu_count(),
        "isa": [name for flag, name in ISA_FLAGS.items() if flag in flags],
    }


def library_versions(names: tuple[str, ...] = LIBRARIES) -> dict[str, str]:
    out = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out


def onnxruntime_info() -> dict | None:
    """onnxruntime picks its kernels (AVX2/AVX-512/VNNI on x86, NEON/dot-product on ARM) from the CPU
    features above at run time; it exposes its version, providers and build, not the kernel chosen."""
    try:
        import onnxruntime
    except ImportError:
        return None
    build = getattr(onnxruntime, "get_build_info", lambda: "")()
    return {
        "version": onnxruntime.__version__,
        "device": onnxruntime.get_device(),
        "providers": onnxruntime.get_available_providers(),
        "build": build,
    }


def environment() -> dict:
    return {
        "cpu": cpu_info(),
        "onnxruntime": onnxruntime_info(),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "libraries": library_versions(),
    }
