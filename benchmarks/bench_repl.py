"""REPL speed of the symbolic core (issue: foundation).

Goals: ``import symact`` < 1 s; ``symact.activation(name)`` < 50 ms per catalogue entry;
``.derivative()`` plus ``.properties()`` < 2 s per entry.  Prints every entry's times,
the slowest five, and the ratio of each goal to the measured worst case.

Run: ``python benchmarks/bench_repl.py``
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

# Run from a checkout without installing: the repository root first on the path.
ROOT = str(Path(__file__).resolve().parents[1])
sys.path.insert(0, ROOT)


def main() -> None:
    code = "import time; t = time.perf_counter(); import symact; print(time.perf_counter() - t)"
    import_times = [float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                                         env={**os.environ, "PYTHONPATH": ROOT}).stdout)
                    for _ in range(3)]
    import_time = min(import_times)
    print(f"import symact: {import_time * 1000:.0f} ms (best of 3; goal < 1000 ms, ratio {import_time / 1.0:.2f})")

    import symact

    rows = []
    for name in symact.catalogue_names():
        t0 = time.perf_counter()
        act = symact.activation(name)
        t1 = time.perf_counter()
        act.derivative()
        if len(act.inputs) == 1:
            act.properties()
        t2 = time.perf_counter()
        # Construction again: parsing is cached per entry, so this is the steady-state cost.
        t3 = time.perf_counter()
        symact.activation(name)
        t4 = time.perf_counter()
        rows.append((name, t1 - t0, t4 - t3, t2 - t1))

    print(f"\n{'activation':18s} {'first build':>12s} {'rebuild':>10s} {'deriv+props':>12s}")
    for name, first, again, derived in rows:
        print(f"{name:18s} {first * 1000:10.1f}ms {again * 1000:8.2f}ms {derived:11.2f}s")
    worst_build = max(r[1] for r in rows)
    worst_derived = max(r[3] for r in rows)
    print(f"\nworst first construction: {worst_build * 1000:.1f} ms (goal < 50 ms, ratio {worst_build / 0.05:.2f})")
    print(f"worst derivative+properties: {worst_derived:.2f} s (goal < 2 s, ratio {worst_derived / 2:.2f})")
    print("slowest five (derivative + properties):")
    for name, _, _, derived in sorted(rows, key=lambda r: r[3])[-5:][::-1]:
        print(f"  {name:18s} {derived:.2f} s")


if __name__ == "__main__":
    main()
