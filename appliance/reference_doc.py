"""The command line every generated reference shares: print it, or write it into docs/ with ``--write``
(each reference's test fails when the committed file differs from what its generator writes now)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path


def reference_main(argv: list[str] | None, prog: str, description: str, path: Path, render: Callable[[], str]) -> int:
    """Print ``render()``, or write it to ``path`` with ``--write``."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--write", action="store_true", help=f"write {path.name} instead of printing it")
    args = parser.parse_args(argv)
    text = render()
    if args.write:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        print(f"wrote {path}")
    else:
        sys.stdout.write(text)
    return 0
