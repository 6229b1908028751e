"""The code version recorded with every run: the git commit when there is one, else the package version."""

from __future__ import annotations

import subprocess
from functools import cache
from pathlib import Path

import appliance


@cache
def code_version() -> str:
    """``git:<commit>[-dirty]`` for a source checkout, ``appliance:<version>`` for an installed package."""
    root = Path(appliance.__file__).resolve().parent.parent
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True,
                                text=True, timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return f"appliance:{appliance.__version__}"
    return f"git:{commit}{'-dirty' if dirty else ''}"
