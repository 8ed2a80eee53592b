"""Run every benchmark in bench/ and summarise its goal lines.

Each ``bench/bench_*.py`` is run in its own process with this interpreter and
prints lines ``goal <name> value=<x> target=<op><y> pass|fail`` (and ``info <name> ...``
lines, figures shown beside the goals with no target); this runner echoes everything
and ends with the goal and info lines together. It exits 0 even when a
goal fails: benchmarks report, they do not gate.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(argv: list[str]) -> int:
    selected = argv[1:]
    goals: list[str] = []
    for script in sorted(HERE.glob("bench_*.py")):
        if selected and not any(s in script.stem for s in selected):
            continue
        print(f"== {script.name}", flush=True)
        proc = subprocess.run(
            [sys.executable, str(script)],
            cwd=HERE.parent,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            check=False,
        )
        print(proc.stdout, end="", flush=True)
        goals += [line for line in proc.stdout.splitlines() if line.startswith(("goal ", "info "))]
        if proc.returncode != 0:
            goals.append(f"error {script.name} exited {proc.returncode}")
    print("== summary")
    print("\n".join(goals))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
