"""Run every benchmark in bench/ and print one table of their figures (`make bench`).

Each bench/<name>.py runs in turn with this interpreter; its output streams to the terminal.
A script reports a figure by printing a line `FIGURE {"name": ..., "value": ..., "unit": ...,
"target": ..., "note": ...}`; those lines make the table at the end. A script that prints no
FIGURE lines is shown with its last lines of output instead. BENCH_ONLY=edge,web runs a subset.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def run(script: Path) -> tuple[int, float, list[dict], list[str]]:
    start = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, str(script)],
        cwd=HERE.parent,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        bufsize=1,
    )
    figures, lines = [], []
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("FIGURE "):
            try:
                figures.append(json.loads(line[len("FIGURE ") :]))
                continue
            except json.JSONDecodeError:
                pass
        sys.stdout.write(line)
        lines.append(line.rstrip("\n"))
    return proc.wait(), time.monotonic() - start, figures, lines


def fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:,.3f}" if abs(value) < 100 else f"{value:,.0f}"
    return str(value)


def main() -> int:
    only = {x.strip() for x in os.environ.get("BENCH_ONLY", "").split(",") if x.strip()}
    scripts = [
        p
        for p in sorted(HERE.glob("*.py"))
        if p.name != "run.py" and not p.name.startswith("_") and (not only or p.stem in only)
    ]
    results = []
    for script in scripts:
        print(f"==> bench/{script.name}", flush=True)
        results.append((script.stem, *run(script)))
    rows = [("bench", "figure", "value", "unit", "target", "note")]
    tails = []
    for name, code, seconds, figures, lines in results:
        for f in figures:
            rows.append(
                (
                    name,
                    str(f.get("name", "")),
                    fmt(f.get("value", "")),
                    str(f.get("unit", "")),
                    str(f.get("target", "")),
                    str(f.get("note", "")),
                )
            )
        rows.append((name, "exit status, run time", str(code), f"{seconds:.0f} s", "0", ""))
        if not figures:
            tails.append((name, lines[-12:]))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    print("\n==> figures")
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row[:5], widths, strict=False)) + "  " + row[5])
    for name, tail in tails:
        print(f"\n==> {name} (no FIGURE lines; its last output)")
        for line in tail:
            print("  " + line)
    return max((r[1] for r in results), default=0)


if __name__ == "__main__":
    sys.exit(main())
