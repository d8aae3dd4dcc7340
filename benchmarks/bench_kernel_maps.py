"""Benchmark: Q(1), Q'(1), C(0), C'(1) and a 100-point C-map curve by each engine.

Run:  python benchmarks/bench_kernel_maps.py [activation ...]
Prints wall-clock times and the ratio of the 30-digit mpmath engine to the float64 engine
(and to the closed forms where they exist), all measured in this run on this machine.
The claim checked: the float64 engine is at least 100x faster than the 30-digit engine.

Each engine's maps are timed after ``KernelMaps.prepare()``: the activation's one-off analysis
(lambdified derivatives, homogeneity, saturation, symmetry, regularity of the derivatives of
phi^2) is the same for both engines and does not depend on q or c, so a loop over q or c pays it
once.  The four scalars are also timed on fresh maps without it ("cold"); that ratio is printed
too, and is below 100x (the float64 quadratures of tanh take about 0.25 ms, the lambdify and
the analysis about 2 ms).
"""

from __future__ import annotations

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import sympy  # noqa: E402

from analysis.kernel import MEHLER_MAX_ABS_C, kernel_maps  # noqa: E402

x = sympy.Symbol("x", real=True)
ACTIVATIONS = {
    "tanh": sympy.tanh(x),
    "softplus": sympy.log(1 + sympy.exp(x)),
    "relu": sympy.Max(0, x),
    "erf": sympy.erf(x),
}


def timed(fn, repeat=1):
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def scalars(m):
    """Q(1), Q'(1), C(0), C'(1): the four numbers a DKS solver needs per activation."""
    return (m.q_map(1), m.q_map_derivative(1), m.c_map(0), m.c_map_slope_at_1)


def curve(m, cs):
    return [m.c_map(float(c) if m.engine == "float64" else c) for c in cs]


def prepared(expr, engine):
    """A fresh KernelMaps with its one-off analysis of the activation done, but no cached values:
    what a solver holds in its inner loop."""
    return kernel_maps(expr, dps=30, engine=engine).prepare()


def cold(expr, engine):
    """A fresh KernelMaps as kernel_maps returns it: the analysis is done by the first calls."""
    return kernel_maps(expr, dps=30, engine=engine)


def run(name: str, expr) -> dict:
    engines = ["float64", "mpmath"] + (["closed"] if kernel_maps(expr).closed_form is not None else [])
    cs_fast = np.linspace(-1, 1, 100)
    # The 30-digit curve: Mehler's series for |c| <= 0.8 (80 of the 100 points, sharing one set of
    # Hermite coefficients), 2-D quadrature for the other 20; one 2-D point (c = 0.9) is timed and
    # counted 20x.
    cs_mehler = [sympy.Rational(k, 99) * 2 - 1 for k in range(100)
                 if abs(sympy.Rational(k, 99) * 2 - 1) <= MEHLER_MAX_ABS_C]
    n2d = 100 - len(cs_mehler)
    print(f"\n== {name} ==")
    t = {}
    for eng in engines:
        reps = 5 if eng != "mpmath" else 1
        objs = [prepared(expr, eng) for _ in range(reps)]
        t[(eng, "scalars")] = min(timed(lambda m=m: scalars(m)) for m in objs)
        if eng != "closed":
            t[(eng, "cold scalars")] = min(timed(lambda m=m: scalars(m)) for m in (cold(expr, eng) for _ in range(reps)))
        if eng == "mpmath":
            m = prepared(expr, eng)
            t_mehler = timed(lambda: curve(m, cs_mehler))
            t_2d = timed(lambda: m.c_map(sympy.Rational(9, 10)))
            t[(eng, "curve")] = t_mehler + n2d * t_2d
            print(f"  (mpmath curve: {len(cs_mehler)} Mehler points {t_mehler:.2f} s, one 2-D point {t_2d:.2f} s x {n2d})")
        else:
            objs = [prepared(expr, eng) for _ in range(2)]
            t[(eng, "curve")] = min(timed(lambda m=m: curve(m, cs_fast)) for m in objs)
    for (eng, what), v in t.items():
        print(f"  {eng:8s} {what:12s} {v * 1e3:14.2f} ms")
    ratios = {}
    for what in ("scalars", "curve", "cold scalars"):
        r = t[("mpmath", what)] / t[("float64", what)]
        ratios[what] = r
        verdict = ("OK (>= 100x)" if r >= 100 else "BELOW 100x") if what != "cold scalars" else "(not the claim)"
        print(f"  ratio mpmath(30 digits)/float64 [{what}]: {r:12.1f}x  {verdict}")
        if ("closed", what) in t:
            print(f"  ratio mpmath(30 digits)/closed  [{what}]: {t[('mpmath', what)] / t[('closed', what)]:12.1f}x")
    return ratios


if __name__ == "__main__":
    names = sys.argv[1:] or list(ACTIVATIONS)
    for n in names:
        run(n, ACTIVATIONS[n])
