"""Regenerate the dev-check tables in docs/labs.md (between the dev-check markers).

    python scripts/lab_tables.py [--jobs N]     # runs `z2v lab dev-check --markdown`: minutes

It rewrites the section whether or not dev-check passed (a deviation shows in its row, bold),
and exits with dev-check's status.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "labs.md"
START, END = "<!-- dev-check:start -->", "<!-- dev-check:end -->"


def main(argv: list[str]) -> int:
    jobs = argv[argv.index("--jobs") + 1] if "--jobs" in argv else "2"
    proc = subprocess.run([sys.executable, "-m", "zero2vllm", "lab", "dev-check", "--markdown",
                           "--jobs", jobs], capture_output=True, text=True)
    if proc.returncode not in (0, 1) or not proc.stdout.strip():
        sys.stderr.write(proc.stderr or proc.stdout)
        return 2
    text = DOC.read_text(encoding="utf-8")
    new = f"{START}\n{proc.stdout.strip()}\n{END}"
    DOC.write_text(re.sub(re.escape(START) + ".*?" + re.escape(END), lambda _: new, text, flags=re.S),
                   encoding="utf-8")
    print(f"rewrote the dev-check tables in {DOC.relative_to(ROOT)}"
          + ("" if proc.returncode == 0 else " (dev-check found deviations: see the bold rows)"))
    return proc.returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
