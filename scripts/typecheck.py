"""mypy over the whole tree against a baseline that only shrinks.

The scope in pyproject.toml ([tool.mypy] files) is held clean: `mypy` with no arguments must report nothing
there. The rest of the tree (appliance, tui) is checked too, and each error it reports must be in
mypy-baseline.txt, the errors that were there when the guard rail came in. An error not in the baseline fails
the check (fix it). A baseline entry that no longer occurs fails it as well, so the baseline shrinks with each
fix: run `scripts/typecheck.py --update` to write the smaller one. --update adds no entry once the baseline
exists.

Entries are `path: message  [code]` without line numbers, counted, so moving code does not disturb them.
"""

from __future__ import annotations

import argparse
import collections
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BASELINE = ROOT / "mypy-baseline.txt"
TREE = ["appliance", "tui", "storage"]
ERROR = re.compile(r"^(?P<path>[^:\n]+\.py):\d+: error: (?P<message>.*)$")


def errors(args: list[str]) -> collections.Counter[str]:
    """mypy's errors for a run, as `path: message  [code]` entries with their counts."""
    done = subprocess.run([sys.executable, "-m", "mypy", *args], cwd=ROOT, capture_output=True, text=True)
    if done.returncode not in (0, 1) or ("error: " not in done.stdout and done.returncode):
        sys.exit(f"typecheck: mypy failed to run:\n{done.stdout}{done.stderr}")
    found: collections.Counter[str] = collections.Counter()
    for line in done.stdout.splitlines():
        if m := ERROR.match(line):
            found[f"{m['path']}: {m['message']}"] += 1
    return found


def read_baseline() -> collections.Counter[str]:
    if not BASELINE.exists():
        return collections.Counter()
    lines = [line for line in BASELINE.read_text().splitlines() if line and not line.startswith("#")]
    return collections.Counter(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--update", action="store_true", help="write the baseline without the fixed errors")
    update = parser.parse_args().update

    clean_scope = errors([])
    if clean_scope:
        print("\n".join(sorted(clean_scope)), file=sys.stderr)
        print("typecheck: the clean scope ([tool.mypy] files) has errors (above); fix them", file=sys.stderr)
        return 1
    found = errors(TREE)
    baseline = read_baseline()
    new = found - baseline
    fixed = baseline - found
    if new and (BASELINE.exists() or not update):
        print("\n".join(f"{entry}  (×{count})" for entry, count in sorted(new.items())), file=sys.stderr)
        print(
            f"typecheck: {sum(new.values())} mypy error(s) not in {BASELINE.name} (above); fix them: the "
            "baseline only shrinks",
            file=sys.stderr,
        )
        return 1
    if fixed and not update:
        print("\n".join(sorted(fixed)), file=sys.stderr)
        print(
            f"typecheck: {sum(fixed.values())} baseline error(s) are fixed (above); run scripts/typecheck.py "
            "--update to shrink the baseline",
            file=sys.stderr,
        )
        return 1
    if update:
        header = (
            "# mypy errors outside the clean scope, allowed until fixed; written by scripts/typecheck.py "
            "--update, which only removes lines.\n"
        )
        BASELINE.write_text(header + "".join(f"{entry}\n" for entry in sorted(found.elements())))
        print(
            f"typecheck: baseline holds {sum(found.values())} error(s) in "
            f"{len({e.split(':')[0] for e in found})} file(s)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
