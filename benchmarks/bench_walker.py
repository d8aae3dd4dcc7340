"""Benchmark: the walker's maximum over sub-networks on a 10,000-node ResNet-style DAG.

Goal (issue 5): under 1 s for 10,000 nodes.  The baseline, measured in the same run on a smaller
graph, is the straightforward all-pairs method (propagate from every node over its whole
dominance region, ``method="all_pairs"``), which is quadratic in the depth.

Run:  python benchmarks/bench_walker.py
"""

from __future__ import annotations

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import graphs  # noqa: E402


def best_time(fn, repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def deep_resnet(n_blocks: int):
    """V2 basic-block ResNet with 4 equal stages: 5 nodes per block plus stem/head/projections."""
    per_stage = n_blocks // 4
    return graphs.resnet(blocks=(per_stage,) * 4, variant="v2", block="basic", shortcut_weight=0.6)


def main() -> None:
    slope_rule = lambda node, y: 1.001 * y  # noqa: E731  (per-layer C'(1) = 1.001)
    curvature_rule = lambda node, y: 0.01 + y  # noqa: E731

    big = deep_resnet(2000)
    n_big = big.number_of_nodes()
    t_big = best_time(lambda: graphs.max_subnetwork_value(big, slope_rule, 1.0))
    t_big_curv = best_time(lambda: graphs.max_subnetwork_value(big, curvature_rule, 0.0))
    t_validate = best_time(lambda: graphs.validate(big))
    print(f"graph: {n_big} nodes, {big.number_of_edges()} edges (ResNet V2 basic, 2000 blocks)")
    print(f"max over sub-networks (dominator DP), slope rule:     {t_big:.3f} s  "
          f"[{'OK' if t_big < 1 else 'OVER'} vs 1 s goal]")
    print(f"max over sub-networks (dominator DP), curvature rule: {t_big_curv:.3f} s")
    print(f"  of which validation alone:                          {t_validate:.3f} s")

    small = deep_resnet(200)
    n_small = small.number_of_nodes()
    t_fast = best_time(lambda: graphs.max_subnetwork_value(small, slope_rule, 1.0))
    t_naive = best_time(lambda: graphs.max_subnetwork_value(small, slope_rule, 1.0, method="all_pairs"), repeat=1)
    fast_value = graphs.max_subnetwork_value(small, slope_rule, 1.0)
    naive_value = graphs.max_subnetwork_value(small, slope_rule, 1.0, method="all_pairs")
    assert abs(fast_value - naive_value) <= 1e-12 * abs(naive_value), (fast_value, naive_value)
    print(f"smaller graph: {n_small} nodes: dominator DP {t_fast:.4f} s, all-pairs baseline {t_naive:.3f} s, "
          f"ratio {t_naive / t_fast:.0f}x (same maximum {fast_value:.12g})")


if __name__ == "__main__":
    main()
