"""The environment a run executed in: interpreter, platform, package versions, code version."""

from __future__ import annotations

import os
import platform
import sys
from importlib import metadata

from appliance.tracking.code_version import code_version

# What decides a model's bytes and numbers; read from package metadata so nothing heavy is imported.
PACKAGES = ("numpy", "polars", "duckdb", "lightgbm", "torch", "onnx", "onnxruntime", "onnxmltools", "msgspec")


def environment() -> dict:
    """Python, OS, CPU count, the versions of the packages that shape a model, and the code version."""
    packages = {}
    for name in PACKAGES:
        try:
            packages[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            packages[name] = None
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "packages": packages,
        "code_version": code_version(),
    }
