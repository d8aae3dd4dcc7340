"""The walker: closed forms for MLPs and ResNet-101, and a 200-DAG property test against
finite differences of an independently composed network C map."""

from __future__ import annotations

import random

import mpmath
import networkx as nx
import pytest
import sympy

import graphs
from _reference import ChannelValues, composed_value, subnetworks as brute_force_subnetworks
from symact.errors import DomainError, InvalidGraphError

s, k = sympy.symbols("s k", positive=True)


# --------------------------------------------------------------------------- MLP

@pytest.mark.parametrize("depth", [1, 2, 5, 10, 100])
def test_mlp_max_slope_and_curvature_are_s_to_the_T_and_T_k(depth):
    g = graphs.mlp(depth)
    slope = graphs.max_subnetwork_value(g, lambda node, y: s * y, 1)
    curvature = graphs.max_subnetwork_value(g, lambda node, y: k + y, 0)
    assert slope == s**depth
    assert curvature == depth * k
    # DKS/TAT per-layer targets follow exactly: zeta = s**T  =>  s = zeta**(1/T) (the unique
    # positive root: s**T is increasing); tau = T*k  =>  k = tau/T.
    zeta, tau = sympy.Rational(3, 2), sympy.Rational(3, 10)
    assert slope.subs(s, zeta ** sympy.Rational(1, depth)) == zeta
    (k_sol,) = sympy.solve(sympy.Eq(curvature, tau), k)
    assert k_sol == tau / depth


def test_mlp_whole_network_attains_the_maximum():
    best = graphs.max_subnetwork(graphs.mlp(6), lambda node, y: s * y, 1)
    assert (best.source, best.target) == ("input", "output")
    assert best.parameters == (s,)
    assert best(s=2) == 64  # the callable agrees with the expression


# --------------------------------------------------------------------------- ResNet-101

W = sympy.Rational(3, 5)  # shortcut weight 0.6, residual weight sqrt(1 - 0.36) = 4/5


def test_resnet101_v2_max_curvature_is_65_8_k():
    """Hand derivation, r(y) = k + y from 0 (all per-layer slopes 1), DKS/TAT conventions:

    * a V2 bottleneck block adds w**2 * shortcut + (1 - w**2) * residual; the residual branch has
      3 activations (+3k); an identity shortcut adds nothing, a projection shortcut takes the
      pre-activated input (+k).  So a plain block adds 0.64 * 3k = 1.92k and a projection block
      (first block of each of the 4 stages) 0.36k + 1.92k = 2.28k;
    * blocks (3, 4, 23, 3) = 33 blocks, 4 with projections: 33 * 1.92k + 4 * 0.36k = 64.8k;
    * the final pre-pool activation adds k: 65.8k in all.

    The maximum over single-entry single-exit sub-networks is the whole network; a residual
    branch alone gives at most 3k.
    """
    g = graphs.resnet(blocks=(3, 4, 23, 3), variant="v2", block="bottleneck", shortcut_weight=W)
    assert sum(1 for n in g if g.nodes[n]["kind"] == "activation") == 33 * 3 + 1
    best = graphs.max_subnetwork(g, lambda node, y: k + y, 0)
    assert best.value == sympy.Rational(658, 10) * k
    assert (best.source, best.target) == ("input", "output")
    # float weights give the same number to rounding
    g_float = graphs.resnet(shortcut_weight=0.6)
    assert graphs.max_subnetwork_value(g_float, lambda node, y: 0.1 + y, 0.0) == pytest.approx(6.58, rel=1e-12)


def test_resnet101_v2_max_slope_polynomial():
    """Hand derivation, r(y) = s * y from 1: a plain block maps x to
    (w**2 + (1-w**2) s**3) x = (9/25 + 16/25 s**3) x; a projection block to
    (w**2 s + (1-w**2) s**3) x = (9/25 s + 16/25 s**3) x; the head activation multiplies by s:

        F(s) = s * (9/25 s + 16/25 s**3)**4 * (9/25 + 16/25 s**3)**29,  F(1) = 1,
        F'(1) = 1 + 4 * (9/25 + 48/25) + 29 * 48/25 = 65.8  (= the curvature coefficient).
    """
    g = graphs.resnet(shortcut_weight=W)
    slope = graphs.max_subnetwork_value(g, lambda node, y: s * y, 1)
    by_hand = (s * (sympy.Rational(9, 25) * s + sympy.Rational(16, 25) * s**3) ** 4
               * (sympy.Rational(9, 25) + sympy.Rational(16, 25) * s**3) ** 29)
    assert sympy.expand(slope - by_hand) == 0
    assert sympy.diff(by_hand, s).subs(s, 1) == sympy.Rational(329, 5)


def test_dominated_subnetworks_include_the_truncated_last_branch():
    """With every dominated pair (u, v) counted, the network cut just before the last shortcut
    sum (input -> end of the last residual branch) is a sub-network: 32 blocks give
    32 * 1.92k + 4 * 0.36k = 62.88k, its branch adds 3k: 65.88k > 65.8k.  DKS's sub-networks
    have a well-defined single output, which that cut lacks (the shortcut leaves it), so the
    default ``subnetworks="single_exit"`` excludes it."""
    g = graphs.resnet(shortcut_weight=W)
    best = graphs.max_subnetwork(g, lambda node, y: k + y, 0, subnetworks="dominated")
    assert best.value == sympy.Rational(6588, 100) * k
    assert best.target == "s4b2/linear_c"


# --------------------------------------------------------------------------- residual branches

W95 = sympy.Rational(19, 20)  # shortcut weight 0.95: w**2 = 361/400, residual 1 - w**2 = 39/400


@pytest.mark.parametrize("method", ["dominators", "all_pairs"])
def test_residual_branch_alone_is_a_subnetwork(method):
    """One V2 bottleneck block with an identity shortcut (projection=False), by hand:

    * whole network: s * (w**2 + (1 - w**2) s**3) (the head activation multiplies by s);
    * the residual branch alone, from the block input: s**3 -- its shortcut leaves the block
      input, which is the sub-network's input, not an interior node, so it is a sub-network
      (the DKS/TAT reference takes max(network(x), res_fn(x)) for ResNets);
    * everything else is smaller for s > 1 (s**2, s, w**2 + (1 - w**2) s**3, ...).

    with a = 1 - w**2, s**3 - s (1 - a + a s**3) = s (s - 1) ((s + 1) - a (s**2 + s + 1)) > 0 for
    1 < s < 10.17: at every default sample point the branch wins, so the maximum is exactly s**3;
    for curvatures (from 0, r = k + y) the branch gives 3k against k + 3 a k.
    """
    g = graphs.resnet(blocks=(1,), projection=False, shortcut_weight=W95)
    best = graphs.max_subnetwork(g, lambda node, y: s * y, 1, method=method)
    assert best.value == s**3
    assert (best.source, best.target) == ("stem/pool", "s1b0/linear_c")
    whole = s * (W95**2 + (1 - W95**2) * s**3)
    for value in (sympy.Rational(6, 5), 2, 5):
        assert best(value) == max(value**3, whole.subs(s, value)) == value**3
    assert graphs.max_subnetwork_value(g, lambda node, y: k + y, 0, method=method) == 3 * k
    # float rule: the reported example, slope 1.2 -> 1.728, not the whole network's 1.285
    assert graphs.max_subnetwork_value(g, lambda node, y: 1.2 * y, 1.0, method=method) == pytest.approx(1.2**3)
    # the old reading (v must post-dominate u) missed it; "dominated" counts it as well
    assert graphs.max_subnetwork_value(g, lambda node, y: k + y, 0, subnetworks="dominated") == 3 * k


def test_shared_pre_activation_branch_is_not_a_subnetwork():
    """With a projection shortcut a V2 block feeds its pre-activation act_a to both the
    projection and the branch, so from the block input the branch's interior has a second exit
    (act_a -> proj): not a sub-network.  The branch from act_a is (s**2), and the whole network
    s * (w**2 s + (1 - w**2) s**3) >= s**2 for s >= 1 wins."""
    g = graphs.resnet(blocks=(1,), shortcut_weight=W95)
    best = graphs.max_subnetwork(g, lambda node, y: s * y, 1)
    assert sympy.expand(best.value - s * (W95**2 * s + (1 - W95**2) * s**3)) == 0
    assert (best.source, best.target) == ("input", "output")
    pairs = {(u, v) for u, v, _ in brute_force_subnetworks(g, lambda n, y: 2 * y, 1)}
    assert ("stem/pool", "s1b0/linear_c") not in pairs
    assert ("s1b0/act_a", "s1b0/linear_c") in pairs and ("input", "output") in pairs


def test_truncated_network_at_a_branch_end_is_not_a_subnetwork():
    """Two identity-shortcut blocks: input -> end of the 2nd branch has the 1st block's sum in its
    interior, whose shortcut bypasses the branch end, so it is excluded; the 2nd branch from its
    block input (s**3) is included.  'dominated' counts the truncated network too:
    (w**2 + (1 - w**2) s**3) * s**3 > s**3 for s > 1."""
    g = graphs.resnet(blocks=(2,), projection=False, shortcut_weight=W95)
    pairs = {(u, v) for u, v, _ in brute_force_subnetworks(g, lambda n, y: 2 * y, 1)}
    assert ("input", "s1b1/linear_c") not in pairs
    assert ("s1b0/sum", "s1b1/linear_c") in pairs
    rule = lambda node, y: sympy.Rational(6, 5) * y  # noqa: E731
    block = W95**2 + (1 - W95**2) * sympy.Rational(6, 5) ** 3
    assert graphs.max_subnetwork_value(g, rule, 1) == max(sympy.Rational(6, 5) ** 3,
                                                          sympy.Rational(6, 5) * block**2)
    dominated = graphs.max_subnetwork(g, rule, 1, subnetworks="dominated")
    assert dominated.value == block * sympy.Rational(6, 5) ** 3
    assert (dominated.source, dominated.target) == ("input", "s1b1/linear_c")


def test_maximiser_is_admissible_and_per_exit_maxima_match_brute_force():
    """On random DAGs the reported (source, target) is one of the enumerated sub-networks and
    its value is the enumerated maximum."""
    rng = random.Random(5)
    for trial in range(40):
        g = random_network(rng, max_nodes=rng.choice([12, 20]))
        acts = [n for n in g if g.nodes[n]["kind"] == "activation"]
        slopes = {n: rng.uniform(0.5, 1.6) for n in acts}
        rule = lambda n, y: slopes[n] * y  # noqa: E731
        subnets = {(u, v): val for u, v, val in brute_force_subnetworks(g, rule, 1.0)}
        for method in ("dominators", "all_pairs"):
            best = graphs.max_subnetwork(g, rule, 1.0, method=method)
            assert (best.source, best.target) in subnets, (trial, method)
            assert best.value == pytest.approx(subnets[best.source, best.target], rel=1e-13)
            assert best.value == pytest.approx(max(subnets.values()), rel=1e-13)


def test_resnet_v1_curvature_matches_hand_count():
    """V1 bottleneck, basic stem: stem activation k; each block 0.64 * 2k + post-sum k = 2.28k;
    projection shortcuts are linear on x (no activation): 33 * 2.28k + k = 76.24k."""
    g = graphs.resnet(variant="v1", shortcut_weight=W)
    assert graphs.max_subnetwork_value(g, lambda node, y: k + y, 0) == sympy.Rational(7624, 100) * k


# --------------------------------------------------------------------------- propagation details

def test_propagate_kinds_rules_on_a_small_graph():
    g = graphs.new_graph()
    graphs.add_node(g, "x", "input")
    graphs.add_node(g, "l1", "linear", "x")
    graphs.add_node(g, "a1", "activation", "l1", activation="tanh")
    graphs.add_node(g, "l2", "linear", "a1")
    graphs.add_node(g, "l3", "linear", "x")
    graphs.add_concat(g, "cat", {"l2": 1, "l3": 3})
    graphs.add_node(g, "norm", "normalise", "cat")
    graphs.add_node(g, "y", "output", "norm")
    c_values = graphs.propagate(g, lambda node, y: y / 2, sympy.Rational(1, 3))
    assert c_values["cat"] == sympy.Rational(1, 4) * sympy.Rational(1, 6) + sympy.Rational(3, 4) * sympy.Rational(1, 3)
    assert c_values["y"] == c_values["cat"]  # normalise passes C values
    q_values = graphs.propagate(g, lambda node, y: y / 2, 5.0, quantity="q")
    assert q_values["cat"] == pytest.approx(0.25 * 2.5 + 0.75 * 5.0)
    assert q_values["y"] == 1.0  # normalise resets q


def test_network_c_map_of_identity_activations_is_identity():
    g = graphs.resnet(blocks=(2, 2), block="basic", shortcut_weight=0.6)
    for c in (0.0, 0.3, 1.0):
        assert graphs.network_c_map(g, lambda node, x: x, c) == pytest.approx(c, abs=1e-15)


def test_subnetwork_value_requires_dominance():
    g = graphs.resnet(blocks=(1,), block="basic", projection=False, shortcut_weight=0.6)
    with pytest.raises(InvalidGraphError, match="does not dominate"):
        graphs.subnetwork_value(g, lambda n, y: 2 * y, 1, "s1b0/linear_a", "s1b0/sum")


def test_symbolic_max_falls_back_to_a_callable_when_the_maximiser_changes():
    """MLP with slope s: for s > 1 the whole network (s**2) wins, for s < 1 a sub-network
    without activations (value 1).  Sample points on both sides give a callable."""
    g = graphs.mlp(2)
    points = [{s: sympy.Rational(1, 2)}, {s: 2}]
    f = graphs.max_subnetwork_value(g, lambda node, y: s * y, 1, sample_points=points)
    assert callable(f) and not isinstance(f, sympy.Basic)
    assert f(s=3) == 9 and f(sympy.Rational(1, 2)) == 1


# --------------------------------------------------------------------------- random DAG property

def random_network(rng: random.Random, max_nodes: int = 50) -> nx.DiGraph:
    """A random valid network of mixed kinds with at most ``max_nodes`` nodes; weighted-sum
    weights are mpmath numbers normalised at the working precision."""
    g = graphs.new_graph(assume_uncorrelated_sums=True)  # a formal composition: any sum's inputs
    graphs.add_node(g, "in", "input")
    graphs.add_node(g, "n0", "linear", "in")
    gaussian = {"in": False, "n0": True}
    names = ["in", "n0"]
    target = rng.randint(4, max_nodes - 3)
    i = 0
    while len(g) < target:
        i += 1
        name = f"n{i}"
        kind = rng.choice(["linear", "linear", "activation", "activation", "activation", "pool",
                           "normalise", "weighted_sum", "concat"])
        recent = names[-8:]
        if kind == "activation":
            options = [n for n in recent if gaussian[n]] or [n for n in names if gaussian[n]]
            graphs.add_node(g, name, kind, rng.choice(options), activation="toy")
            gaussian[name] = False
        elif kind in ("linear", "pool", "normalise"):
            pred = rng.choice(recent)
            graphs.add_node(g, name, kind, pred)
            gaussian[name] = True if kind == "linear" else gaussian[pred]
        else:
            preds = rng.sample(recent, min(len(recent), rng.randint(2, 3)))
            if len(preds) < 2:
                continue
            if kind == "weighted_sum":
                raw = [mpmath.mpf(rng.uniform(0.2, 1.0)) for _ in preds]
                norm = mpmath.sqrt(mpmath.fsum(w * w for w in raw))
                graphs.add_weighted_sum(g, name, {p: w / norm for p, w in zip(preds, raw)})
            else:
                graphs.add_concat(g, name, {p: rng.randint(1, 64) for p in preds})
            gaussian[name] = all(gaussian[p] for p in preds)
        names.append(name)
    sinks = [n for n in g if g.out_degree(n) == 0]
    last = sinks[0]
    if len(sinks) > 1:
        raw = [mpmath.mpf(rng.uniform(0.2, 1.0)) for _ in sinks]
        norm = mpmath.sqrt(mpmath.fsum(w * w for w in raw))
        last = graphs.add_weighted_sum(g, "join", {p: w / norm for p, w in zip(sinks, raw)})
    graphs.add_node(g, "head", "linear", last)
    graphs.add_node(g, "out", "output", "head")
    graphs.validate(g)
    assert len(g) <= max_nodes
    return g


def composed_c_map(g: nx.DiGraph, maps: dict, c):
    """The network C map composed channel by channel (tests/_reference.py), independently of
    graphs.walker: an activation after a concat maps each part's C value."""
    return composed_value(g, lambda node, y: maps[node](y), c)


def sinh_c_map(lam):
    """Normalised C map of sin(sqrt(lam) x): E[sin u sin v] = e^-lam sinh(lam c), so
    C(c) = sinh(lam c) / sinh(lam); C(1) = 1, C'(1) = lam coth(lam)."""
    return lambda c: mpmath.sinh(lam * c) / mpmath.sinh(lam)


def unit_slope_c_map(lam):
    """alpha + (1 - alpha) sinh(lam c)/sinh(lam) with alpha = 1 - tanh(lam)/lam (sin plus an
    offset): C(1) = 1, C'(1) = 1, C''(1) = lam tanh(lam)."""
    alpha = 1 - mpmath.tanh(lam) / lam
    return lambda c: alpha + (1 - alpha) * mpmath.sinh(lam * c) / mpmath.sinh(lam)


@pytest.mark.parametrize("trials", [50, pytest.param(200, marks=pytest.mark.slow)])
def test_random_dags_walker_derivatives_match_finite_differences(trials):
    # (40-digit finite differences take 40 ms a network: 50 networks in the default run, 200 in the slow one)
    rng = random.Random(20211202)
    with mpmath.workdps(40):
        for trial in range(trials):
            g = random_network(rng)
            acts = [n for n in g if g.nodes[n]["kind"] == "activation"]
            lams = {n: mpmath.mpf(rng.uniform(0.1, 1.5)) for n in acts}

            maps = {n: sinh_c_map(lams[n]) for n in acts}
            slope_walker = graphs.propagate(g, lambda n, y: lams[n] / mpmath.tanh(lams[n]) * y, mpmath.mpf(1))["out"]
            slope_fd = mpmath.diff(lambda c: composed_c_map(g, maps, c), 1)
            assert abs(slope_walker - slope_fd) < mpmath.mpf(10) ** -25 * max(1, abs(slope_fd)), trial

            maps1 = {n: unit_slope_c_map(lams[n]) for n in acts}
            curv_walker = graphs.propagate(g, lambda n, y: lams[n] * mpmath.tanh(lams[n]) + y, mpmath.mpf(0))["out"]
            curv_fd = mpmath.diff(lambda c: composed_c_map(g, maps1, c), 1, 2)
            assert abs(curv_walker - curv_fd) < mpmath.mpf(10) ** -25 * max(1, abs(curv_fd)), trial

            c = mpmath.mpf(rng.uniform(0, 1))
            walked = graphs.network_c_map(g, lambda n, x: maps[n](x), c)
            assert abs(walked - composed_c_map(g, maps, c)) < mpmath.mpf(10) ** -35


def brute_force_max(g, rule, start, single_exit):
    """Maximum over every pair (u, v), u != v, with u dominating v (and, when single_exit, every
    interior node of S(u, v) -- on a u-to-v path, neither u nor v -- having all its successors
    on u-to-v paths), each sub-network evaluated separately from the definitions."""
    return max(value for _, _, value in brute_force_subnetworks(g, rule, start, single_exit))


@pytest.mark.parametrize("single_exit", [True, False])
def test_dominator_dp_equals_all_pairs_and_brute_force(single_exit):
    rng = random.Random(7)
    mode = "single_exit" if single_exit else "dominated"
    for trial in range(60):
        g = random_network(rng, max_nodes=rng.choice([12, 25, 50]))
        acts = [n for n in g if g.nodes[n]["kind"] == "activation"]
        slopes = {n: rng.uniform(0.5, 1.6) for n in acts}  # some below 1: the maximiser varies
        rule = lambda n, y: slopes[n] * y  # noqa: E731
        fast = graphs.max_subnetwork_value(g, rule, 1.0, subnetworks=mode)
        slow = graphs.max_subnetwork_value(g, rule, 1.0, subnetworks=mode, method="all_pairs")
        assert fast == pytest.approx(slow, rel=1e-13), trial
        if len(g) <= 25:
            assert fast == pytest.approx(brute_force_max(g, rule, 1.0, single_exit), rel=1e-13), trial
        c_rule = lambda n, c: float(mpmath.sinh(slopes[n] * c) / mpmath.sinh(slopes[n]))  # noqa: E731
        assert graphs.max_subnetwork_value(g, c_rule, 0.3, subnetworks=mode) == pytest.approx(
            graphs.max_subnetwork_value(g, c_rule, 0.3, subnetworks=mode, method="all_pairs"), rel=1e-13)


def test_dag_dominator_pass_agrees_with_networkx():
    from graphs.walker import _dag_idoms

    rng = random.Random(3)
    for _ in range(40):
        g = random_network(rng)
        order = list(nx.topological_sort(g))
        index = {n: i for i, n in enumerate(order)}
        ours = _dag_idoms(order, index, g.pred)
        theirs = nx.immediate_dominators(g, order[0])
        assert {n: d for n, d in ours.items() if n != order[0]} == {n: d for n, d in theirs.items() if n != order[0]}
        rev = order[::-1]
        ours = _dag_idoms(rev, {n: i for i, n in enumerate(rev)}, g.succ)
        theirs = nx.immediate_dominators(g.reverse(), rev[0])
        assert {n: d for n, d in ours.items() if n != rev[0]} == {n: d for n, d in theirs.items() if n != rev[0]}


# --------------------------------------------------------------------------- symbolic maxima at sample points

t = sympy.Symbol("t", positive=True)


def exact_symbolic_reference(g, rule, start, points, **kwargs):
    """(source, target, expression or None) of the symbolic maximum, with exact arithmetic: at
    each sample point the rule with the point substituted has no free symbols, so the walker
    compares exact numbers; the expression of the maximiser at the first point is composed by
    subnetwork_value and must equal the exact maximum at every point."""
    per_point = [graphs.max_subnetwork(g, lambda n, y, pt=pt: sympy.sympify(rule(n, y)).xreplace(pt),
                                       sympy.sympify(start).xreplace(pt), **kwargs) for pt in points]
    u, v = per_point[0].source, per_point[0].target
    expr = graphs.subnetwork_value(g, rule, start, u, v)
    attained = all(sympy.simplify(sympy.sympify(expr).xreplace(pt) - best.value) == 0
                   for pt, best in zip(points, per_point))
    return u, v, (expr if attained else None)


def exact_weights(g, rng):
    """The same network with exact weights sqrt(a_i / sum a_j) (a_i random integers)."""
    g = g.copy()
    for node in g:
        if g.nodes[node]["kind"] == "weighted_sum":
            preds = list(g.predecessors(node))
            raw = [rng.randint(1, 9) for _ in preds]
            for p, a in zip(preds, raw):
                g.edges[p, node]["weight"] = sympy.sqrt(sympy.Rational(a, sum(raw)))
    graphs.validate(g)
    return g


def default_points(parameters):
    return [{p: base + sympy.Rational(i, 997) for i, p in enumerate(parameters)}
            for base in graphs.DEFAULT_SAMPLE_VALUES]


def test_symbolic_maximum_matches_exact_arithmetic_at_the_sample_points():
    """The sample points are evaluated in floating point (exact rationals grow with the depth);
    the maximiser and expression must be those of exact arithmetic."""
    rng = random.Random(17)
    cases = [(graphs.mlp(7), {}), (graphs.resnet(blocks=(2, 1), shortcut_weight=W), {}),
             (graphs.resnet(blocks=(1, 2), projection=False, shortcut_weight=W95), {}),
             (graphs.multi_branch((0, 1, 2), blocks=3), {}),
             (graphs.resnet(blocks=(2, 1), shortcut_weight=W), {"subnetworks": "dominated"}),
             (graphs.resnet(blocks=(1, 1), shortcut_weight=W95, projection=False), {"method": "all_pairs"})]
    cases += [(exact_weights(random_network(rng, max_nodes=rng.choice([12, 25])), rng), {}) for _ in range(24)]
    symbolic_cases = 0
    for trial, (g, kwargs) in enumerate(cases):
        acts = [n for n in g if g.nodes[n]["kind"] == "activation"]
        coeff = {n: sympy.Rational(rng.randint(5, 15), 10) for n in acts}
        half = {n: i % 2 for i, n in enumerate(acts)}
        rules = [
            (lambda n, y: coeff[n] * s * y, sympy.Integer(1), (s,)),
            (lambda n, y: (s if half[n] else t) * y, sympy.Integer(1), (s, t)),
            (lambda n, y: coeff[n] * k + y, sympy.Integer(0), (k,)),
            (lambda n, y: coeff[n] * sympy.sinh(s * y) / sympy.sinh(s), sympy.Rational(1, 3), (s,)),
        ]
        if trial >= 10 or kwargs:
            rules.pop()  # composed sinh maps: the exact reference compares them slowly
        for rule, start, params in rules:
            best = graphs.max_subnetwork(g, rule, start, **kwargs)
            if not best.parameters:  # no activation node: a plain number
                continue
            symbolic_cases += 1
            u, v, expr = exact_symbolic_reference(g, rule, start, default_points(best.parameters), **kwargs)
            assert (best.source, best.target) == (u, v), trial
            assert best.value == expr, trial
    assert symbolic_cases > 70


def test_symbolic_maximum_uses_floating_point_at_the_sample_points(monkeypatch):
    """The exact per-point run (_substituted rules) is the fallback only: a deep MLP's and a
    ResNet's symbolic maxima never build it, and come out as before."""
    import graphs.walker as walker

    def exact_run(*args, **kwargs):
        raise AssertionError("exact arithmetic at the sample points")

    monkeypatch.setattr(walker, "_substituted", exact_run)
    best = graphs.max_subnetwork(graphs.mlp(1500), lambda node, y: s * y, 1)
    assert (best.value, best.source, best.target) == (s**1500, "input", "output")
    assert graphs.max_subnetwork_value(graphs.mlp(1500), lambda node, y: k + y, 0) == 1500 * k
    g = graphs.resnet(blocks=(1,), projection=False, shortcut_weight=W95)
    assert graphs.max_subnetwork_value(g, lambda node, y: s * y, 1) == s**3


def test_rules_that_reject_a_bare_symbol_fall_back_to_exact_arithmetic():
    """A rule that cannot be asked for its expression in a bare symbol y is not compiled; the
    sample points are then run exactly, with the same result."""
    g = graphs.resnet(blocks=(1, 1), shortcut_weight=W95, projection=False)

    def rule(node, y):
        if isinstance(y, sympy.Dummy):
            raise TypeError("needs the propagated value")
        return s * y

    best = graphs.max_subnetwork(g, rule, 1)
    u, v, expr = exact_symbolic_reference(g, rule, 1, default_points((s,)))
    assert (best.source, best.target, best.value) == (u, v, expr)
    assert best.value is not None


def test_composed_runs_give_the_same_expression_as_node_by_node():
    """Runs of y -> c*y (y -> y + c) activations are composed in one step; the SymPy expression
    must be identical (==, not merely equal in value) to propagating node by node
    (subnetwork_value), for all sub-networks of random DAGs and rules mixing symbols, numbers,
    surds, compound factors, sums, floats and rules that rewrite their input."""
    import graphs.walker as walker

    rng = random.Random(23)
    factors = [s, 2 * s, sympy.Rational(1, 2), 2, sympy.sqrt(2), s * t, s**2, s + 1, sympy.sinh(s)]
    terms = [k, 2 * k, 1, k + t, sympy.Rational(3, 2) * k]
    starts = [sympy.Integer(1), sympy.Integer(0), 2, sympy.Rational(1, 3), 1.0, s + 1, k]
    checked = 0
    nets = [graphs.mlp(6), graphs.resnet(blocks=(2, 1), shortcut_weight=W),
            graphs.multi_branch((0, 1, 3), blocks=2)]
    for trial in range(60):
        g = nets[trial] if trial < len(nets) else random_network(rng, max_nodes=rng.choice([12, 25]))
        if trial % 2:
            g = exact_weights(g, rng)
        acts = [n for n in g if g.nodes[n]["kind"] == "activation"]
        pick = {n: (rng.choice(["mul", "mul", "add", "other", "expand", "float"]), rng.choice(factors),
                    rng.choice(terms)) for n in acts}
        if trial % 3 == 0:  # long uniform runs
            same = (rng.choice(["mul", "add"]), rng.choice(factors), rng.choice(terms))
            pick = {n: same for n in acts}

        def rule(n, y):
            form, c, d = pick[n]
            if form == "mul":
                return c * y
            if form == "add":
                return y + d
            if form == "expand":
                return sympy.expand(c * y)
            if form == "float":
                return 0.5 * c * y
            return sympy.sinh(c * y) + d

        params = (s, t, k)
        probe = walker._probe_rules(g, walker._Dominance(g), rule, params)
        dom = walker._Dominance(g)
        ctx = graphs.graph.PropagationContext(g, rule, "c")
        start = rng.choice(starts)
        for u in g:
            for v in nx.descendants(g, u):
                if not dom.dominates(u, v):
                    continue
                forms = walker._run_forms(rule, probe, dom.between(u, [v]))
                composed = walker._compose(ctx, dom, u, v, start, forms)
                node_by_node = graphs.subnetwork_value(g, rule, start, u, v)
                between = dom.between(u, [v])
                if all(n in forms for n in between if g.nodes[n]["kind"] == "activation"):
                    # affine rules commute with the channel average: _compose averages at the
                    # concats (one nested expression), node by node keeps channel parts
                    averaged = {u: start}
                    walker._evaluate(graphs.graph.PropagationContext(g, rule, "c", channel_parts=False),
                                     between, averaged)
                    assert composed == averaged[v], (trial, u, v)
                    point = {s: sympy.Rational(7, 5), t: sympy.Rational(3, 7), k: sympy.Rational(2, 3)}
                    gap = sympy.N(sympy.sympify(composed - node_by_node).xreplace(point), 30)
                    size = sympy.N(sympy.sympify(node_by_node).xreplace(point), 30)
                    assert abs(gap) < 1e-12 * max(1, abs(size)), (trial, u, v)  # mpmath weights round
                else:
                    assert composed == node_by_node, (trial, u, v)
                checked += 1
    assert checked > 1500


def test_float_walk_through_exact_sum_weights_stays_float_for_numpy_maps():
    """multi_branch's default weights are exact (sqrt(1/2)); a float walk through them used to
    come out as SymPy Floats, on which a numpy C map (np.arccos) raised a raw TypeError.
    Reference: the ReLU arc-cosine C map composed by hand, C(c/2 + C(c)/2)."""
    np = pytest.importorskip("numpy")

    def relu_c(c):
        return (np.sqrt(1 - c * c) + (np.pi - np.arccos(c)) * c) / np.pi

    g = graphs.multi_branch((0, 1))
    for c in (0.0, 0.3, 0.9):
        walked = graphs.network_c_map(g, lambda node, x: relu_c(x), c)
        assert isinstance(walked, float) and not isinstance(walked, sympy.Basic)
        assert walked == pytest.approx(relu_c(0.5 * c + 0.5 * relu_c(c)), abs=1e-14)
    # mpmath values keep their working precision through exact weights
    with mpmath.workdps(40):
        walked = graphs.propagate(g, lambda node, y: 3 * y, mpmath.mpf(1))["output"]
        assert isinstance(walked, mpmath.mpf) and walked == 6


def test_float_walks_through_sympy_channels_and_fraction_weights_stay_float():
    """Concat channels given as SymPy Integers (is_whole_number admits them) turned a float walk
    into SymPy Floats, so a numpy C map after the concat raised a raw TypeError; hand-set Fraction
    weights turned a walk over a numpy array of cosines into an array of dtype object.
    Reference: the maps composed by hand, C(c)/4 + 3 C(C(c))/4 (the head activation maps each
    part of the concat's channels) and 9/25 c + 16/25 C(c)."""
    np = pytest.importorskip("numpy")
    from fractions import Fraction

    g = graphs.multi_branch((0, 1), combine="concat", channels=(sympy.Integer(1), sympy.Integer(3)))
    for c in (0.0, 0.3, 0.9):
        walked = graphs.network_c_map(g, lambda node, x: np.sin(x), c)
        assert isinstance(walked, float) and not isinstance(walked, sympy.Basic)
        assert walked == pytest.approx(np.sin(c) / 4 + 3 * np.sin(np.sin(c)) / 4, abs=1e-15)
    assert type(graphs.max_subnetwork_value(g, lambda node, y: 1.5 * y, 1.0)) is float

    g = graphs.new_graph()
    graphs.add_node(g, "x", "input")
    graphs.add_node(g, "l1", "linear", "x")
    graphs.add_node(g, "a", "activation", "l1", activation="sin")
    graphs.add_node(g, "l2", "linear", "a")
    graphs.add_weighted_sum(g, "sum", {"l1": Fraction(3, 5), "l2": Fraction(4, 5)})
    graphs.add_node(g, "y", "output", "sum")
    cs = np.linspace(-1, 1, 5)
    walked = graphs.network_c_map(g, lambda node, x: np.sin(x), cs)
    assert walked.dtype == np.float64
    assert np.allclose(walked, 0.36 * cs + 0.64 * np.sin(cs), rtol=0, atol=1e-15)
    # exact walks stay exact, mpmath ones at their working precision
    assert graphs.network_c_map(g, lambda node, x: x / 2, Fraction(1, 3)) == sympy.Rational(9, 75) + sympy.Rational(16, 150)
    with mpmath.workdps(40):
        walked = graphs.network_c_map(g, lambda node, x: x / 2, mpmath.mpf(1) / 7)
        assert abs(walked - mpmath.mpf(34) / 350) < mpmath.mpf(10) ** -39


def test_walks_through_decimal_weights():
    """Decimal weights pass validation (0.36 + 0.64 == 1 exactly), but a float walk through them
    raised a raw TypeError (Decimal * float is not defined).  Reference: 0.36 c + 0.64 sin(c)."""
    import math
    from decimal import Decimal

    g = graphs.new_graph()
    graphs.add_node(g, "x", "input")
    graphs.add_node(g, "l1", "linear", "x")
    graphs.add_node(g, "a", "activation", "l1", activation="sin")
    graphs.add_node(g, "l2", "linear", "a")
    graphs.add_weighted_sum(g, "sum", {"l1": Decimal("0.6"), "l2": Decimal("0.8")})
    graphs.add_node(g, "y", "output", "sum")
    for c in (0.0, 0.3, 1.0):
        walked = graphs.network_c_map(g, lambda node, x: math.sin(x), c)
        assert type(walked) is float
        assert walked == pytest.approx(0.36 * c + 0.64 * math.sin(c), abs=1e-15)
    with mpmath.workdps(40):  # the weights' squares are exact rationals, so mpmath keeps its digits
        walked = graphs.network_c_map(g, lambda node, x: mpmath.sin(x), mpmath.mpf(1) / 3)
        exact = mpmath.mpf(9) / 25 / 3 + mpmath.mpf(16) / 25 * mpmath.sin(mpmath.mpf(1) / 3)
        assert abs(walked - exact) < mpmath.mpf(10) ** -39
    assert graphs.max_subnetwork_value(g, lambda node, y: 1.5 * y, 1.0) == 1.5


def test_symbolic_weights_in_the_maximum_are_refused_by_name():
    """resnet(shortcut_weight=w) with a Symbol w: propagate gives the formula in w, but the
    maximum compares sub-network values; it used to fail with 'cannot compare ... use
    max_subnetwork with a symbolic rule' even when called with one."""
    w = sympy.Symbol("w", positive=True)
    g = graphs.resnet(blocks=(2,), block="basic", shortcut_weight=w, projection=False)
    # the whole-network slope in w still follows from propagate: (w**2 + (1 - w**2) s**2)**2 s
    out = graphs.propagate(g, lambda node, y: s * y, 1)["output"]
    assert sympy.simplify(out - (w**2 + (1 - w**2) * s**2) ** 2 * s) == 0
    for rule, start in ((lambda node, y: s * y, 1), (lambda node, y: 1.5 * y, 1.0)):
        with pytest.raises(InvalidGraphError, match=r"weights hold the symbols \['w'\]"):
            graphs.max_subnetwork(g, rule, start)


def test_a_weight_attribute_outside_weighted_sums_is_not_a_sum_weight():
    """The walk reads weights only on a weighted sum's in-edges, but the maximum refused a graph
    whose linear edge carried a stray symbolic 'weight' attribute (left by another networkx tool)
    as 'weighted-sum weights hold the symbols ['w']'.  Reference: an MLP of depth 3, s**3."""
    g = graphs.mlp(3)
    g.edges["input", "linear1"]["weight"] = sympy.Symbol("w")
    assert graphs.max_subnetwork_value(g, lambda node, y: s * y, 1) == s**3
    assert graphs.max_subnetwork_value(g, lambda node, y: 1.5 * y, 1.0) == pytest.approx(1.5**3, rel=1e-15)
    # a symbol in a real sum weight is still refused by name
    h = graphs.resnet(blocks=(1,), block="basic", shortcut_weight=sympy.Symbol("w", positive=True))
    with pytest.raises(InvalidGraphError, match=r"weights hold the symbols \['w'\]"):
        graphs.max_subnetwork_value(h, lambda node, y: s * y, 1)


@pytest.mark.parametrize("c", [1.5, -1.0000001, float("nan"), sympy.Integer(2), 0.5j])
def test_network_c_map_refuses_c_outside_minus_one_one(c):
    """A C value is a cosine similarity; sinh(c)/sinh(1) extends past 1 and the walk used to
    return a number for c = 1.5 (and a ReLU arc-cosine map a raw math domain error)."""
    from symact.errors import DomainError
    with pytest.raises(DomainError, match=r"\[-1, 1\]"):
        graphs.network_c_map(graphs.mlp(2), lambda node, x: mpmath.sinh(x) / mpmath.sinh(1), c)
    # the ends of the interval are fine: C(1) = 1 for a C map of a Q-preserving activation
    assert graphs.network_c_map(graphs.mlp(2), lambda node, x: mpmath.sinh(x) / mpmath.sinh(1), 1.0) == 1


def test_network_c_map_takes_an_array_of_cosines():
    np = pytest.importorskip("numpy")
    cs = np.linspace(-1, 1, 5)
    walked = graphs.network_c_map(graphs.mlp(2), lambda node, x: np.sinh(x) / np.sinh(1), cs)
    assert np.allclose(walked, np.sinh(np.sinh(cs) / np.sinh(1)) / np.sinh(1), rtol=0, atol=1e-15)
    from symact.errors import DomainError
    with pytest.raises(DomainError, match=r"\[-1, 1\]"):
        graphs.network_c_map(graphs.mlp(2), lambda node, x: np.sinh(x) / np.sinh(1), np.array([0.5, 1.5]))


def test_every_walk_checks_the_quantity():
    """Q values are reset to 1 by a normalise node only for quantity="q"; max_subnetwork and
    subnetwork_value took "Q" silently as "c" and walked q = 2 * 3 = 6 through the normalise."""
    g = graphs.new_graph()
    graphs.add_node(g, "x", "input")
    graphs.add_node(g, "l1", "linear", "x")
    graphs.add_node(g, "a1", "activation", "l1", activation="tanh")
    graphs.add_node(g, "n", "normalise", "a1")
    graphs.add_node(g, "l2", "linear", "n")
    graphs.add_node(g, "a2", "activation", "l2", activation="tanh")
    graphs.add_node(g, "y", "output", "a2")
    double = lambda node, q: 2 * q  # noqa: E731
    # per-location normalisation gives q = 1 before a2, so the Q walk ends at 2 * 1
    assert graphs.subnetwork_value(g, double, 1.0, "x", "y", quantity="q") == 2.0
    for call in (lambda: graphs.subnetwork_value(g, double, 1.0, "x", "y", quantity="Q"),
                 lambda: graphs.max_subnetwork(g, double, 1.0, quantity="Q"),
                 lambda: graphs.propagate(g, double, 1.0, quantity="Q")):
        with pytest.raises(DomainError, match="quantity must be 'c'"):
            call()


def test_sample_points_and_parameter_values_are_checked():
    """A point missing a parameter failed with 'cannot compare ... use max_subnetwork with a
    symbolic rule', an empty list with a raw IndexError, and the maximum's function dropped
    extra positional values (best(2, 3) == 4 for one parameter)."""
    g = graphs.mlp(2)
    for points, message in (([{k: 2}], r"gives no value to \['s'\]"), ([], "sample_points is empty")):
        with pytest.raises(DomainError, match=message):
            graphs.max_subnetwork(g, lambda node, y: s * y, 1, sample_points=points)
    # points keyed by the parameter's name work as keyed by the symbol: s**2 at s = 2 and 3
    best = graphs.max_subnetwork(g, lambda node, y: s * y, 1, sample_points=[{"s": 2}, {"s": 3}])
    assert best.value == s**2
    assert best(3) == 9
    with pytest.raises(TypeError, match="2 values for the 1 parameter"):
        best(2, 3)


def test_bad_method_and_subnetworks_are_symact_errors_naming_the_choices():
    """They were bare ValueErrors, outside the SymactError family the README promises for bad input."""
    g = graphs.mlp(2)
    with pytest.raises(DomainError, match="method must be one of"):
        graphs.max_subnetwork(g, lambda node, y: 2 * y, 1, method="fastest")
    with pytest.raises(DomainError, match="subnetworks must be 'single_exit' or 'dominated'"):
        graphs.max_subnetwork(g, lambda node, y: 2 * y, 1, subnetworks="all")


def test_c_maps_given_for_nodes_that_are_not_activations_are_refused():
    # was: {"linear1": ...} beside the activations' maps was silently unused
    import math

    g = graphs.mlp(2)
    acts = [n for n, k in g.nodes(data="kind") if k == "activation"]
    maps = {n: (lambda c: math.sinh(c) / math.sinh(1)) for n in acts}
    assert graphs.network_c_map(g, maps, 1.0) == pytest.approx(1.0, abs=1e-15)
    for stray in ("linear1", "no_such_node"):
        with pytest.raises(InvalidGraphError, match=f"C maps given for \\['{stray}'\\], which are not activation"):
            graphs.network_c_map(g, {**maps, stray: lambda c: c}, 0.5)


# --------------------------------------------------------------------------- an activation after a concat

def relu_c_map(c):
    """The normalised ReLU C map (arc-cosine kernel of order 1, C(1) = 1), in mpmath."""
    c = mpmath.mpf(c)
    return (mpmath.sqrt(1 - c * c) + (mpmath.pi - mpmath.acos(c)) * c) / mpmath.pi


def concat_then_activation():
    """x -> l0; branch relu -> lb; concat {l0: 1, lb: 1} -> relu -> linear -> output."""
    g = graphs.new_graph()
    graphs.add_node(g, "x", "input")
    graphs.add_node(g, "l0", "linear", "x")
    graphs.add_node(g, "a", "activation", "l0", activation="relu")
    graphs.add_node(g, "lb", "linear", "a")
    graphs.add_concat(g, "cat", {"l0": 1, "lb": 1})
    graphs.add_node(g, "b", "activation", "cat", activation="relu")
    graphs.add_node(g, "head", "linear", "b")
    graphs.add_node(g, "y", "output", "head")
    return g


def test_an_activation_after_a_concat_maps_each_part():
    """The concat's channels carry c0 (from l0) and C(c0) (from lb); the ReLU after it acts per
    channel, so the network's C map is (C(c0) + C(C(c0)))/2 = 0.17955 at c0 = -0.8.  The walker
    applied C to the average, C((c0 + C(c0))/2) = 0.14917."""
    g = concat_then_activation()
    with mpmath.workdps(50):
        c0 = mpmath.mpf("-0.8")
        expected = (relu_c_map(c0) + relu_c_map(relu_c_map(c0))) / 2
        walked = graphs.network_c_map(g, lambda node, c: relu_c_map(c), c0)
        assert abs(walked - expected) < mpmath.mpf(10) ** -45
        assert abs(walked - relu_c_map((c0 + relu_c_map(c0)) / 2)) > mpmath.mpf("0.03")  # the old value
        # the walk reports channel averages: the concat's (c0 + C(c0))/2, the activation's the result
        values = graphs.propagate(g, lambda node, c: relu_c_map(c), c0)
        assert values["b"] == values["head"] == values["y"] == walked
        assert values["cat"] == (c0 + relu_c_map(c0)) / 2
        assert graphs.subnetwork_value(g, lambda node, c: relu_c_map(c), c0, "x", "b") == walked
    assert float(expected) == pytest.approx(0.1795532642189879, abs=1e-15)


def test_an_activation_after_a_concat_matches_a_wide_random_network():
    """Monte Carlo of the network above at width n = 10**6: l0 is n pairs of unit Gaussians with
    correlation c0; a linear layer's channels given its input u, u' are iid Gaussian pairs with the
    covariance [[u.u, u.u'], [u.u', u'.u']] / n (exact for iid N(0, 1/n) weights), so each layer is
    sampled channel by channel without an n x n matrix.  The head's cosine is that of the kernel
    of b.  The estimate's noise is O(n**-0.5), about 1e-3: the tolerance 1e-2 separates the
    corrected value (0.1796) from the old one (0.1492)."""
    np = pytest.importorskip("numpy")
    rng = np.random.default_rng(12345)
    n, c0 = 10**6, -0.8

    def gaussian_pairs(cov):
        return rng.multivariate_normal([0.0, 0.0], cov, size=n)  # (n, 2): the two inputs' channels

    def linear(u):
        return gaussian_pairs(u.T @ u / len(u))

    def relu(h):  # normalised: q is preserved, E[(sqrt(2) relu(z))**2] = 1
        return np.sqrt(2.0) * np.maximum(h, 0.0)

    l0 = gaussian_pairs([[1.0, c0], [c0, 1.0]])
    lb = linear(relu(l0))
    b = relu(np.concatenate([l0, lb]))  # channel concat: n + n channels
    kernel = b.T @ b
    simulated = kernel[0, 1] / np.sqrt(kernel[0, 0] * kernel[1, 1])
    walked = float(graphs.network_c_map(concat_then_activation(), lambda node, c: relu_c_map(c), c0))
    assert simulated == pytest.approx(walked, abs=1e-2)
    old = float(relu_c_map((c0 + relu_c_map(c0)) / 2))
    assert abs(simulated - old) > 2e-2


def densenet_block(layers, growth, stem, nested):
    """A DenseNet-like block: x0 = stem linear (``stem`` channels); layer l applies
    concat(x0, ..., x_{l-1}) -> normalise -> relu -> linear, giving x_l (``growth`` channels);
    then concat(x0, ..., x_L) -> normalise -> relu -> linear -> output.  ``nested``: each concat
    joins the previous concat with the newest features, as torchvision's DenseNet does."""
    g = graphs.new_graph()
    graphs.add_node(g, "x", "input")
    feats = [graphs.add_node(g, "x0", "linear", "x")]
    widths = [stem]
    previous = None
    for layer in range(1, layers + 2):
        if len(feats) == 1:
            joined = feats[0]
        elif nested and previous is not None:
            joined = graphs.add_concat(g, f"cat{layer}", {previous: sum(widths[:-1]), feats[-1]: widths[-1]})
        else:
            joined = graphs.add_concat(g, f"cat{layer}", dict(zip(feats, widths)))
        previous = joined
        h = graphs.add_node(g, f"norm{layer}", "normalise", joined)
        h = graphs.add_node(g, f"act{layer}", "activation", h, activation="relu")
        if layer == layers + 1:
            h = graphs.add_node(g, "head", "linear", h)
            graphs.add_node(g, "y", "output", h)
            break
        feats.append(graphs.add_node(g, f"x{layer}", "linear", h))
        widths.append(growth)
    return g


@pytest.mark.parametrize("nested", [False, True])
def test_densenet_block_c_map_is_the_channel_weighted_mean_of_the_parts_maps(nested):
    """c_0 = c; layer l sees the parts c_0 (stem channels) and c_1..c_{l-1} (growth channels
    each), and its ReLU maps each: c_l = (stem C(c_0) + growth sum_{j<l} C(c_j)) / (stem + (l-1)
    growth).  The output is that sum over all L + 1 parts.  Nested concats flatten to the same."""
    stem, growth, layers = 64, 32, 3
    g = densenet_block(layers, growth, stem, nested)
    with mpmath.workdps(40):
        c = mpmath.mpf("0.2")
        cs = [c]
        for layer in range(1, layers + 2):
            parts = [(stem, cs[0])] + [(growth, cj) for cj in cs[1:]]
            cs.append(mpmath.fsum(n * relu_c_map(cj) for n, cj in parts) / sum(n for n, _ in parts))
        walked = graphs.network_c_map(g, lambda node, x: relu_c_map(x), c)
        assert abs(walked - cs[-1]) < mpmath.mpf(10) ** -35
        assert abs(walked - composed_value(g, lambda node, x: relu_c_map(x), c)) < mpmath.mpf(10) ** -35
    # slopes s*y commute with the channel average: C'(1) is as when the concat averaged, each layer
    # 2 * (the channel-weighted mean of its parts' slopes), exactly
    sl = [sympy.Integer(1)]
    for layer in range(1, layers + 2):
        parts = [(stem, sl[0])] + [(growth, sj) for sj in sl[1:]]
        sl.append(sum(n * 2 * sj for n, sj in parts) / sum(n for n, _ in parts))
    assert graphs.propagate(g, lambda node, y: 2 * y, sympy.Integer(1))["y"] == sl[-1]


def erf_q_map(q):
    """The Q map of erf: E[erf(z)**2] = (2/pi) asin(2q / (1 + 2q)) for z ~ N(0, q)."""
    q = mpmath.mpf(q)
    return 2 / mpmath.pi * mpmath.asin(2 * q / (1 + 2 * q))


def test_q_values_after_a_concat_map_each_part_and_normalise_keeps_their_ratios():
    """Q values: the concat's channels carry q0 (1 of 4) and Q(q0) (3 of 4); erf acts per channel,
    so q = Q(q0)/4 + 3 Q(Q(q0))/4, not Q(q0/4 + 3 Q(q0)/4).  A per-location normalisation before
    the activation divides the whole vector by one factor: the parts become q_i / m with m their
    channel average, and the activation gives Q(q0/m)/4 + 3 Q(Q(q0)/m)/4."""
    for normalised in (False, True):
        g = graphs.new_graph()
        graphs.add_node(g, "x", "input")
        graphs.add_node(g, "l0", "linear", "x")
        graphs.add_node(g, "a", "activation", "l0", activation="erf")
        graphs.add_node(g, "lb", "linear", "a")
        h = graphs.add_concat(g, "cat", {"l0": 1, "lb": 3})
        if normalised:
            h = graphs.add_node(g, "norm", "normalise", h)
        graphs.add_node(g, "b", "activation", h, activation="erf")
        graphs.add_node(g, "head", "linear", "b")
        graphs.add_node(g, "y", "output", "head")
        with mpmath.workdps(40):
            q0 = mpmath.mpf(5)
            parts = [q0, erf_q_map(q0)]
            mean = (parts[0] + 3 * parts[1]) / 4
            if normalised:
                parts = [p / mean for p in parts]
            expected = (erf_q_map(parts[0]) + 3 * erf_q_map(parts[1])) / 4
            values = graphs.propagate(g, lambda node, q: erf_q_map(q), q0, quantity="q")
            assert abs(values["y"] - expected) < mpmath.mpf(10) ** -35, normalised
            assert abs(values["y"] - erf_q_map(mean if not normalised else 1)) > mpmath.mpf("0.01")
            assert abs(values["cat"] - mean) < mpmath.mpf(10) ** -35
            if normalised:
                assert values["norm"] == 1  # the channel average of the normalised parts
            reference = composed_value(g, lambda node, q: erf_q_map(q), q0, quantity="q")
            assert abs(values["y"] - reference) < mpmath.mpf(10) ** -35


def test_weighted_sum_of_concats_lines_up_their_channels():
    """concat {a: 1, b: 3} + concat {c: 1, d: 1} (weights 0.6, 0.8), then an activation: the sum's
    channels are [0, 1/4) a + c, [1/4, 1/2) b + c, [1/2, 1) b + d (in proportions: the counts of
    the two concats sum to 4 and 2); the activation maps each.  A nested concat splits its part in
    proportion to its own counts."""
    g = graphs.new_graph(assume_uncorrelated_sums=True)  # a formal composition of maps
    graphs.add_node(g, "x", "input")
    graphs.add_node(g, "l", "linear", "x")
    for name in "abcd":
        graphs.add_node(g, f"act_{name}", "activation", "l", activation=name)
        graphs.add_node(g, name, "linear", f"act_{name}")
    graphs.add_concat(g, "cat1", {"a": 1, "b": 3})
    graphs.add_concat(g, "cat2", {"c": 1, "d": 1})
    graphs.add_weighted_sum(g, "sum", {"cat1": sympy.Rational(3, 5), "cat2": sympy.Rational(4, 5)})
    graphs.add_node(g, "f", "activation", "sum", activation="f")
    graphs.add_node(g, "lf", "linear", "f")
    graphs.add_concat(g, "outer", {"sum": 2, "lf": 1})  # the parts of the sum share 2 of 3 channels
    graphs.add_node(g, "pool", "pool", "outer")
    graphs.add_node(g, "out_act", "activation", "pool", activation="g")
    graphs.add_node(g, "head", "linear", "out_act")
    graphs.add_node(g, "y", "output", "head")
    x = sympy.Symbol("x")
    fa, fb, fc, fd, ff, fg = sympy.symbols("fa fb fc fd ff fg", cls=sympy.Function)
    maps = {"act_a": fa, "act_b": fb, "act_c": fc, "act_d": fd, "f": ff, "out_act": fg}
    walked = graphs.network_c_map(g, lambda node, y: maps[node](y), x)
    w1, w2 = sympy.Rational(9, 25), sympy.Rational(16, 25)
    a, b, c, d = fa(x), fb(x), fc(x), fd(x)
    pieces = [(sympy.Rational(1, 4), w1 * a + w2 * c), (sympy.Rational(1, 4), w1 * b + w2 * c),
              (sympy.Rational(1, 2), w1 * b + w2 * d)]
    f_mean = sum(p * ff(v) for p, v in pieces)  # the linear layer after f mixes its channels
    expected = sum(sympy.Rational(2, 3) * p * fg(v) for p, v in pieces) + sympy.Rational(1, 3) * fg(f_mean)
    assert sympy.simplify(walked - expected) == 0
    assert sympy.simplify(walked - composed_value(g, lambda node, y: maps[node](y), x)) == 0


def test_a_registered_kind_sees_channel_averages_unless_channelwise():
    """A kind registered without ``channelwise`` gets the channel average of a concat's parts (it
    may do arithmetic on its input); a ``channelwise`` one gets the parts and keeps them apart."""
    from graphs.graph import ChannelParts, NodeKind

    seen = []

    def record(ctx, node, inputs):
        seen.append(inputs[0][1])
        return inputs[0][1]

    graphs.register_kind(NodeKind("probe", 1, 1, record))
    graphs.register_kind(NodeKind("probe_parts", 1, 1, record, channelwise=True))
    try:
        for kind in ("probe", "probe_parts"):
            g = concat_then_activation()
            g.remove_edge("cat", "b")
            graphs.add_node(g, "p", kind, "cat")
            g.add_edge("p", "b")
            seen.clear()
            walked = graphs.network_c_map(g, lambda node, c: relu_c_map(c), -0.8)
            if kind == "probe":
                assert seen == [(-0.8 + relu_c_map(-0.8)) / 2]
                assert walked == pytest.approx(relu_c_map((-0.8 + relu_c_map(-0.8)) / 2), abs=1e-15)
            else:
                assert isinstance(seen[0], ChannelParts) and seen[0].counts == (1, 1)
                assert walked == pytest.approx(0.1795532642189879, abs=1e-15)
    finally:
        del graphs.KINDS["probe"], graphs.KINDS["probe_parts"]


def random_concat_network(rng: random.Random, max_nodes: int) -> nx.DiGraph:
    """A random valid network rich in joins of pre-activations (concats, nested ones, weighted
    sums of them), each followed by pool/normalise nodes and an activation, then a linear layer."""
    g = graphs.new_graph(assume_uncorrelated_sums=True)  # a formal composition: any sum's inputs
    graphs.add_node(g, "in", "input")
    gaussian = [graphs.add_node(g, "n0", "linear", "in")]
    i = 0
    while len(g) < max_nodes - 6:
        i += 1
        pick = rng.sample(gaussian[-6:], min(len(gaussian[-6:]), rng.randint(1, 3)))
        if len(pick) == 1:
            h = pick[0]
        elif rng.random() < 0.7:
            h = graphs.add_concat(g, f"cat{i}", {p: rng.randint(1, 6) for p in pick})
        else:
            raw = [mpmath.mpf(rng.uniform(0.2, 1.0)) for _ in pick]
            norm = mpmath.sqrt(mpmath.fsum(w * w for w in raw))
            h = graphs.add_weighted_sum(g, f"sum{i}", {p: w / norm for p, w in zip(pick, raw)})
        if h != pick[0]:
            gaussian.append(h)
        for kind in rng.sample(["pool", "normalise", None], 2):
            if kind is not None and rng.random() < 0.4:
                h = graphs.add_node(g, f"{kind}{i}", kind, h)
        h = graphs.add_node(g, f"act{i}", "activation", h, activation="toy")
        gaussian.append(graphs.add_node(g, f"lin{i}", "linear", h))
    sinks = [n for n in g if g.out_degree(n) == 0]
    last = sinks[0] if len(sinks) == 1 else graphs.add_concat(g, "join", {n: rng.randint(1, 6) for n in sinks})
    graphs.add_node(g, "head", "linear", last)
    graphs.add_node(g, "out", "output", "head")
    graphs.validate(g)
    return g


def _after_a_concat(g, node):
    """A concat reaches ``node`` through channelwise nodes only (no linear layer between)."""
    stack = list(g.predecessors(node))
    while stack:
        n = stack.pop()
        kind = g.nodes[n]["kind"]
        if kind == "concat":
            return True
        if kind in ("pool", "normalise", "weighted_sum", "activation"):
            stack.extend(g.predecessors(n))
    return False


def test_random_dags_c_maps_and_q_values_match_the_channel_by_channel_reference():
    """Random DAGs of every kind (nested concats, sums of concats, normalise, pool): C maps and
    Q values (with a non-linear map) walked, and every sub-network of the small ones, against
    tests/_reference.py's channel-by-channel composition."""
    rng = random.Random(606)
    checked_concat_activations = 0
    with mpmath.workdps(30):
        for trial in range(60):
            g = random_network(rng, max_nodes=rng.choice([12, 20, 35])) if trial % 3 == 0 else \
                random_concat_network(rng, max_nodes=rng.choice([12, 20, 35]))
            acts = [n for n in g if g.nodes[n]["kind"] == "activation"]
            checked_concat_activations += any(_after_a_concat(g, n) for n in acts)
            lams = {n: mpmath.mpf(rng.uniform(0.3, 2.0)) for n in acts}
            c_rule = lambda n, c: sinh_c_map(lams[n])(c)  # noqa: E731
            q_rule = lambda n, q: lams[n] * erf_q_map(q)  # noqa: E731
            c = mpmath.mpf(rng.uniform(-1, 1))
            tol = mpmath.mpf(10) ** -25
            assert abs(graphs.network_c_map(g, c_rule, c) - composed_value(g, c_rule, c)) < tol, trial
            q = mpmath.mpf(rng.uniform(0.1, 3))
            walked = graphs.propagate(g, q_rule, q, quantity="q")["out"]
            assert abs(walked - composed_value(g, q_rule, q, quantity="q")) < tol * max(1, abs(walked)), trial
            if len(g) <= 20:
                best = graphs.max_subnetwork(g, c_rule, c, method="all_pairs")
                subnets = {(u, v): val for u, v, val in brute_force_subnetworks(g, c_rule, c)}
                assert abs(best.value - max(subnets.values())) < tol, trial
                assert abs(best.value - subnets[best.source, best.target]) < tol, trial
    assert checked_concat_activations > 10


def test_symbolic_maximum_of_a_densenet_block_stays_a_compact_expression():
    """Per-part SymPy values of nested concats refer to every earlier layer: as trees they grow
    exponentially (a block of 16 layers took 7 s, of 24 minutes).  Slope rules commute with the
    channel average, so the maximiser's expression is built averaging at the concats: a product
    of one factor per layer, as before channel parts, equal to the per-part walk."""
    g = densenet_block(24, 32, 64, nested=True)
    expr = graphs.max_subnetwork_value(g, lambda node, y: s * y, sympy.Integer(1))
    assert len(str(expr)) < 2000
    at = {s: sympy.Rational(6, 5)}
    per_part = graphs.propagate(g, lambda node, y: sympy.Rational(6, 5) * y, sympy.Integer(1))["y"]
    assert expr.xreplace(at) == per_part


def test_symbolic_maximum_with_a_non_affine_rule_on_nested_concats_is_not_exponential():
    """With a non-affine rule the parts are kept apart, and each concat's parts refer to every earlier
    layer: the maximiser's expression is a tree of exponential size but a DAG of a few nodes per layer.
    Checking it at the sample points substituted numbers into the tree (``xreplace``, ``has``): 2 s
    for 10 layers, 25 s for 12, ten times longer every two more.  Each distinct subexpression is now
    visited once; the value is that of the per-part walk."""
    import time

    g = densenet_block(16, 32, 64, nested=True)
    rule = lambda node, y: (y + y**2) / 2 * s  # noqa: E731 - the C map of (x + x**2 Hermite) scaled by s
    start = time.perf_counter()
    best = graphs.max_subnetwork(g, rule, sympy.Rational(1, 2), sample_points=[{s: 2}, {s: 3}])
    assert time.perf_counter() - start < 20
    assert (best.source, best.target) == ("x", "y") and best.value is not None
    from graphs.walker import _xreplace_shared  # best.value.xreplace walks the exponential tree

    with mpmath.workdps(30):
        for at in (2, 3):
            walked = graphs.propagate(g, lambda node, y: (y + y**2) / 2 * at, mpmath.mpf(1) / 2)["y"]
            value = mpmath.mpf(sympy.N(_xreplace_shared(best.value, {s: sympy.Float(at, 40)})[0], 30))
            assert abs(value - walked) <= mpmath.mpf(10) ** -25 * walked


def test_dominator_maximum_of_a_c_map_through_parts_that_are_not_ordered():
    """c = 0.45 enters two branches: four ReLU layers (C map above c) and one sin layer with lambda = 8
    (far below c), concatenated 18 : 13 (channel average 0.44992, just below c), then ReLU layers.
    At the concat the programme kept the larger channel average, the fresh start c, and dropped the
    parts: but the ReLU C map is convex, so the spread parts give more after it (0.8849 at the output
    against 0.8815).  Candidates not ordered part by part are now both kept; the value is the
    brute-force maximum over every sub-network, channel by channel (tests/_reference.py)."""
    g = graphs.new_graph()
    graphs.add_node(g, "in", "input")
    p = graphs.add_node(g, "lin0", "linear", "in")
    for i in range(4):
        p = graphs.add_node(g, f"linA{i}", "linear", graphs.add_node(g, f"actA{i}", "activation", p, activation="relu"))
    graphs.add_node(g, "actB", "activation", "lin0", activation="sin")
    graphs.add_node(g, "linB", "linear", "actB")
    prev = graphs.add_concat(g, "cat", {p: 18, "linB": 13})
    for i in range(9):
        a = graphs.add_node(g, f"act{i}", "activation", prev, activation="relu")
        prev = graphs.add_node(g, f"lin{i + 1}x", "linear", a)
    graphs.add_node(g, "out", "output", prev)
    rule = lambda node, c: sinh_c_map(8)(c) if node == "actB" else relu_c_map(c)  # noqa: E731
    with mpmath.workdps(30):
        c = mpmath.mpf("0.45")
        for single_exit, mode in ((True, "single_exit"), (False, "dominated")):
            subnets = {(u, v): value for u, v, value in brute_force_subnetworks(g, rule, c, single_exit)}
            reference = max(subnets.values())
            assert abs(reference - mpmath.mpf("0.8848819251")) < 1e-9
            for method in ("dominators", "all_pairs"):
                best = graphs.max_subnetwork(g, rule, c, subnetworks=mode, method=method)
                assert abs(best.value - reference) < mpmath.mpf(10) ** -25, (mode, method)
                assert abs(subnets[best.source, best.target] - best.value) < mpmath.mpf(10) ** -25
