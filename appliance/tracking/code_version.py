"""The code version recorded with every run: the git commit when there is one, else the package version."""

from __future__ import annotations

import subprocess
from functools import cache
from importlib import metadata
from pathlib import Path


@cache
def code_version() -> str:
    """``git:<commit>[-dirty]`` for a source checkout, ``appliance:<version>`` for an installed package."""
    root = Path(__file__).resolve().parents[2]  # the checkout holding appliance/tracking/
    try:
        commit = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return f"appliance:{_package_version()}"
    return f"git:{commit}{'-dirty' if dirty else ''}"


def _package_version() -> str:
    try:
        return metadata.version("mlops-appliance")
    except metadata.PackageNotFoundError:  # a copied tree, neither a checkout nor installed
        return "unknown"
