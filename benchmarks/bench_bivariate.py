"""Benchmark: the mpmath engine's 2-D Gaussian rule (C maps where Mehler's series is not used).

Run:  python benchmarks/bench_bivariate.py [--quick]
For each case, C(c) of an activation by ``kernel_maps(..., engine="mpmath")`` with Mehler's series
turned off (``mehler_max_abs_c = 0``: |c| > 0.8 and unequal variances take this path anyway), timed
with the current rule (Gauss-Legendre panels of width ``numeric.gauss._PANEL_WIDTH``, tanh-sinh only
where those do not converge) and with the previous one (tanh-sinh on the split points alone),
measured in this run.  It prints both times, their ratio, and the two values' relative difference
(they must agree to the requested digits).  The claim checked: the current rule is faster on every case.
"""

from __future__ import annotations

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import mpmath  # noqa: E402
import sympy  # noqa: E402

import symact  # noqa: E402
from analysis.kernel import kernel_maps  # noqa: E402
from numeric import gauss  # noqa: E402

CASES = [("tanh", 10, "7/10"), ("tanh", 15, "-9/10"), ("relu", 20, "99/100"), ("softplus", 12, "9/10"),
         ("abs", 15, "-9/10"), ("gelu", 15, "7/10"), ("erf", 10, "7/10"), ("erf", 20, "99/100")]
QUICK = CASES[:4]


def c_value(name: str, dps: int, c: str):
    maps = kernel_maps(symact.activation(name), dps=dps, engine="mpmath")
    maps.mehler_max_abs_c = 0
    start = time.perf_counter()
    value = maps.c_map(sympy.Rational(c))
    return value, time.perf_counter() - start


def previous_rule():
    """Patch numeric.gauss back to tanh-sinh on the unsplit points; returns the undo."""
    panels, checked = gauss._panels, gauss._quad_checked

    def tanh_sinh_only(integrand, points, dps, what, relative=True, gauss_legendre=None):
        return checked(integrand, points, dps, what, relative)

    gauss._panels, gauss._quad_checked = (lambda points, width=None: points), tanh_sinh_only

    def undo():
        gauss._panels, gauss._quad_checked = panels, checked
    return undo


def main() -> int:
    cases = QUICK if "--quick" in sys.argv else CASES
    print(f"{'case':28s} {'current s':>10s} {'previous s':>11s} {'speed-up':>9s} {'rel. diff':>10s}")
    slower = 0
    for name, dps, c in cases:
        value, current = c_value(name, dps, c)
        undo = previous_rule()
        try:
            old_value, previous = c_value(name, dps, c)
        finally:
            undo()
        difference = abs(mpmath.mpf(value) - mpmath.mpf(old_value)) / abs(mpmath.mpf(old_value))
        slower += current >= previous
        print(f"{name + ' dps=' + str(dps) + ' c=' + c:28s} {current:10.2f} {previous:11.2f} "
              f"{previous / current:8.1f}x {mpmath.nstr(difference, 2):>10s}", flush=True)
    print("claim (current rule faster on every case):", "holds" if not slower else f"FAILS on {slower} case(s)")
    return 1 if slower else 0


if __name__ == "__main__":
    sys.exit(main())
