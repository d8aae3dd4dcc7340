"""DKS shaping of tanh for a depth-100 MLP: symact vs the public ``dks`` package, in one run.

    python benchmarks/bench_shaping.py [--dks-python /tmp/dksvenv/bin/python] [--repeat 3]

``dks`` (PyPI 0.1.2, NumPy/autograd backend) is not a symact dependency: it is run in the Python
given by ``--dks-python`` (a throwaway virtual environment; see tests/fixtures/make_dks_reference.py),
and its time is measured inside that process (interpreter start-up and imports excluded).
symact is timed in float64 and with the mpmath polish at 30 digits; both include the graph walk
(graphs.mlp(100), maximal slope function s**100) and a fresh solve (caches cleared).  The ratio
printed is dks time / symact time (> 1: symact is faster), with the achieved condition residuals
of each, judged by symact's mpmath engine at 40 digits.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

DKS_SNIPPET = r"""
import json, logging as pylogging, time
from absl import logging
from dks.base import activation_transform
logging.set_verbosity(logging.INFO)
found = {}
class H(pylogging.Handler):
    def emit(self, record):
        msg = record.getMessage()
        if msg.startswith("Found parameters for 'tanh': "):
            found.update(eval(msg.split(": ", 1)[1].replace("np.float64", "float")))
pylogging.getLogger("absl").addHandler(H())
times = []
for _ in range(REPEAT):
    t = time.perf_counter()
    activation_transform.get_transformed_activations(["tanh"], method="DKS", dks_params={"c_slope_1_target": 1.5},
                                                     max_slope_func=lambda s: s ** 100)
    times.append(time.perf_counter() - t)
print(json.dumps({"seconds": min(times), "params": found}))
"""


def time_symact(dps, repeat):
    import graphs
    import symact

    from analysis import shaping, transform_conditions

    times, net = [], None
    for _ in range(repeat):
        transform_conditions._build.cache_clear()
        t = time.perf_counter()
        net = shaping.shape(symact.activation("tanh"), graphs.mlp(100), method="dks", zeta=1.5, dps=dps)
        times.append(time.perf_counter() - t)
    return min(times), net.layers[0]


def residuals(alpha, beta, gamma, delta):
    import mpmath
    import sympy

    from analysis.transform_conditions import transform_conditions

    x = sympy.Symbol("x", real=True)
    with mpmath.workdps(45):
        c = transform_conditions(sympy.tanh(x), *(mpmath.mpf(v) for v in (alpha, beta, gamma, delta)), dps=40).values
        slope = mpmath.mpf("1.5") ** (mpmath.mpf(1) / 100)
        return max(abs(c.q_value - 1), abs(c.q_slope - 1), abs(c.c_at_0), abs(c.c_slope - slope))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dks-python", default="/tmp/dksvenv/bin/python")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    t64, layer64 = time_symact(None, args.repeat)
    t30, layer30 = time_symact(30, 1)
    print(f"symact float64      : {t64 * 1e3:9.1f} ms   max residual {float(residuals(layer64.alpha, layer64.beta, layer64.gamma, layer64.delta)):.1e}")
    print(f"symact mpmath dps=30: {t30 * 1e3:9.1f} ms   max residual {float(residuals(layer30.alpha, layer30.beta, layer30.gamma, layer30.delta)):.1e}")
    if not os.path.exists(args.dks_python):
        print(f"dks package: not run ({args.dks_python} does not exist; create the venv described in the docstring)")
        return
    out = subprocess.run([args.dks_python, "-c", DKS_SNIPPET.replace("REPEAT", str(args.repeat))],
                         capture_output=True, text=True, check=True)
    dks = json.loads(out.stdout.strip().splitlines()[-1])
    p = dks["params"]
    r = residuals(abs(p["input_scale"]), p["input_shift"] if p["input_scale"] > 0 else p["input_shift"],
                  p["output_scale"], p["output_shift"])
    print(f"dks package (0.1.2) : {dks['seconds'] * 1e3:9.1f} ms   max residual {float(r):.1e}")
    print(f"ratio dks / symact float64      : {dks['seconds'] / t64:6.2f}x")
    print(f"ratio dks / symact mpmath dps=30: {dks['seconds'] / t30:6.2f}x")


if __name__ == "__main__":
    main()
