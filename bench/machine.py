"""The machine a benchmark ran on, so that its numbers can be compared with care.

    python bench/machine.py

`describe()` returns CPU model, logical cores, total RAM, GPUs (as TensorFlow sees them) and the
TensorFlow, Keras and DVC versions; import it from another benchmark (run as a script, bench/
is on sys.path): `from machine import describe`.
"""

import json
import os
import platform
from importlib import metadata
from pathlib import Path


def _cpu_model() -> str:
    """The first "model name" in /proc/cpuinfo, else what platform knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


MATRIX_FLAGS = ("amx_tile", "amx_bf16", "avx512_bf16", "avx512f")


def _cpu_flags() -> dict[str, bool]:
    """Whether the CPU has the matrix and vector units bfloat16 training uses (from the first
    "flags" line of /proc/cpuinfo: AMX tiles and their bfloat16 ops, AVX512-BF16, AVX-512)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                have = set(line.split(":", 1)[1].split())
                return {flag: flag in have for flag in MATRIX_FLAGS}
    except OSError:
        pass
    return {flag: False for flag in MATRIX_FLAGS}


def _ram_gib() -> float | None:
    """Total RAM in GiB from /proc/meminfo (None where there is none)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 2**20, 1)  # KiB
    except (OSError, ValueError, IndexError):
        pass
    return None


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def _gpus() -> list[str]:
    """GPU names as TensorFlow sees them (imports TensorFlow); empty if none."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from blastcell.tf import tf

    names = []
    for device in tf.config.list_physical_devices("GPU"):
        details = tf.config.experimental.get_device_details(device)
        names.append(details.get("device_name", device.name))
    return names


def describe(gpu: bool = True) -> dict:
    """CPU, cores, RAM, GPUs ("none"; not checked without `gpu`: it imports TF), versions."""
    return {
        "cpu": _cpu_model(),
        "cpu_flags": _cpu_flags(),
        "logical_cores": os.cpu_count(),
        "ram_gib": _ram_gib(),
        "gpu": (", ".join(_gpus()) or "none") if gpu else "not checked",
        "python": platform.python_version(),
        "tensorflow": _version("tensorflow"),
        "keras": _version("keras"),
        "dvc": _version("dvc"),
    }


def summary(info: dict) -> str:
    """One line for the head of a benchmark's output."""
    flags = [flag for flag, have in info.get("cpu_flags", {}).items() if have]
    return (
        f"{info['cpu']} ({' '.join(flags) or 'no AVX-512 or AMX'}), "
        f"{info['logical_cores']} logical cores, {info['ram_gib']} GiB RAM, "
        f"GPU: {info['gpu']}; Python {info['python']}, TensorFlow {info['tensorflow']}, "
        f"Keras {info['keras']}, DVC {info['dvc']}"
    )


if __name__ == "__main__":
    print(json.dumps(describe(), indent=2))
