"""The topology walker: propagate a scalar through a network graph, and maximise over sub-networks.

Each node kind owns its rule (:data:`graphs.graph.KINDS`); the walker composes them.  With a
per-activation rule ``r(node, y)``:

* ``r(node, y) = s * y`` from ``1`` gives the network's C'(1) (C maps compose, weighted sums and
  concats are convex combinations, so slopes multiply and average);
* ``r(node, y) = k + y`` from ``0`` gives the network's C''(1) when every per-layer C'(1) is 1
  (``(f o g)''(1) = f''(1) g'(1)**2 + f'(1) g''(1)`` with ``g(1) = 1``);
* ``r = `` the node's C map, from ``c``, gives the network's C map at ``c``.

A concat's channels carry its inputs' values apart (``n_i`` of its ``N`` channels carry ``y_i``:
a :class:`~graphs.graph.ChannelParts` value), and an activation acts on each channel alone, so an
activation after a concat gives ``sum (n_i/N) r(node, y_i)``, not ``r(node, sum (n_i/N) y_i)``;
weighted sums (channel by channel), pools and normalise nodes keep the parts, and a linear layer,
which mixes channels, takes their average ``sum (n_i/N) y_i``.  Every value the walker reports
is that channel average (the maximum over sub-networks compares them too, once it has carried
every candidate that could still win later past the parts; see the algorithm below).  The slope and curvature rules above commute
with the averaging (``sum (n_i/N) s y_i = s sum (n_i/N) y_i``, and likewise ``k + y`` as the
fractions sum to 1), so C'(1) and C''(1) are as if the concat averaged; the C map is not.

Deep Kernel Shaping (Martens et al. 2021) and TAT (Zhang et al. 2022) impose their conditions on
*every* sub-network.  A sub-network ``S(u, v)`` has input ``u`` and output ``v`` and contains
everything between them: its *interior* ``I(u, v)`` is the set of nodes on ``u``-to-``v`` paths
other than ``u`` and ``v``.  It is evaluated with ``value(u) = start``.  Two readings are offered:

* ``subnetworks="single_exit"`` (default): ``u`` dominates ``v`` (every input-to-``v`` path passes
  ``u``) and every node of ``I(u, v)`` has all its successors in ``I(u, v)`` or equal to ``v``: a
  component with one input and one output, as in the DKS talk ("some component of the network
  ... that defines a well-defined input and output").  ``u`` itself may feed other nodes too, so
  a residual branch alone, from its block input, is a sub-network (its shortcut leaves ``u``), as
  is the whole network; the network cut at the end of a later branch is not (an earlier block's
  sum inside it also feeds its shortcut).  This is the reading of the DKS/TAT reference code,
  whose ResNet ``subnet_max_func`` takes the maximum of the whole network and one residual branch
  alone, and it reproduces their numbers, e.g. the maximal curvature 65.8 k of a ResNet-101 V2
  with shortcut weight 0.6.  (A V2 block with a projection shortcut feeds its pre-activation to
  both the projection and the branch; there the branch counts from that pre-activation on.)
* ``subnetworks="dominated"``: every pair where ``u`` dominates ``v``.  It also counts cuts whose
  output is not the only way out, e.g. the network truncated at the end of the last residual
  branch before its shortcut sum, which gives 65.88 k for that ResNet.

Algorithm (``method="dominators"``).  With ``d = idom(v)``, the value at ``v`` of any dominated
sub-network from a strict dominator ``u`` of ``d`` is a function of the value at ``d`` alone:
``S(u, v) = f_v(S(u, d))`` with ``f_v = S(d, v)`` as a function of ``value(d)``.  If every rule is
nondecreasing in its inputs (true for slopes ``s*y`` with ``s > 0``, curvatures ``k + y`` and C
maps on ``[0, 1]``), then ``M(v) = max_u S(u, v) = f_v(max(start, M(d)))``, a dynamic programme
over the dominator tree (one Cooper-Harvey-Kennedy pass in topological order).  For single-exit
sub-networks the children ``v`` of ``d`` for which ``S(d, v)`` is not one are dropped, and those
that do not post-dominate ``d`` (a branch end whose block input ``d`` also feeds the shortcut)
start afresh, ``M(v) = f_v(start)`` (proof in ``_max_dominators``).  Where ``d`` holds channel
parts the max is taken part by part: candidates that are not ordered in every part (one part
above ``start``, another below, possible for C maps) are all kept and propagated, as the one with
the larger channel average need not give the larger value later.  ``f_v`` is evaluated by
propagating over the nodes between ``d`` and ``v`` only, and all children of ``d`` share one
propagation (two when some start afresh), so the cost is ``O(sum_d |between(d)|)``: linear for
chains and for networks built of bounded blocks (MLPs, ResNets, multi-branch blocks).
``method="all_pairs"`` propagates from every node over its whole dominance region (quadratic;
correct for non-monotone rules too) and is the baseline.

Values may be floats, mpmath numbers, or SymPy expressions.  For symbolic rules the maximiser is
found by running the dynamic programme at sample parameter values (default: every free symbol at
1001/1000, 9/8, 3/2 and 2, plus i/997 for the i-th symbol, the DKS/TAT regime of per-layer slopes
above 1 and positive curvatures); when one sub-network attains the maximum at every sample point
its SymPy expression is returned, otherwise a callable.  Pass ``sample_points`` for other regimes.
The sample runs use mpmath at ``max(SAMPLE_DIGITS, mp.dps + 20)`` digits (exact rationals grow
with the depth), each rule compiled once from its expression in a dummy input, and read
differences below ``10**-(digits // 2)`` relative as ties, broken as exact ties are; a rule that
cannot be compiled so is run in exact arithmetic.  The maximiser's expression is then built once,
runs of identical ``y -> c*y`` or ``y -> y + c`` layers in one step, so the cost stays linear.

>>> import sympy, graphs
>>> s, k = sympy.symbols("s k", positive=True)
>>> g = graphs.mlp(4)
>>> graphs.max_subnetwork_value(g, lambda node, y: s * y, 1)
s**4
>>> graphs.max_subnetwork_value(g, lambda node, y: k + y, 0)
4*k
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Callable, Hashable, Iterable, Mapping, Sequence

import mpmath
import networkx as nx
import sympy

from symact.errors import DomainError, InvalidGraphError

from .graph import (KINDS, ChannelParts, PropagationContext, _channel_by_channel, _pass_single, channel_average,
                    input_node, node_value, output_node, validate)

__all__ = [
    "propagate",
    "subnetwork_value",
    "max_subnetwork",
    "max_subnetwork_value",
    "network_c_map",
    "SubnetworkMaximum",
    "DEFAULT_SAMPLE_VALUES",
]

ActivationRule = Callable[[Hashable, Any], Any]

#: Values given to every free symbol, one sample point each, when deciding which sub-network
#: attains a symbolic maximum (per-layer slopes just above 1 up to 2; positive curvatures).
DEFAULT_SAMPLE_VALUES = (sympy.Rational(1001, 1000), sympy.Rational(9, 8), sympy.Rational(3, 2), sympy.Integer(2))


# --------------------------------------------------------------------------- basic propagation

def _evaluate(ctx: PropagationContext, nodes: Iterable[Hashable], values: dict[Hashable, Any]) -> None:
    """Fill ``values`` for ``nodes`` (in topological order) from their predecessors' values."""
    g = ctx.graph
    for node in nodes:
        values[node] = node_value(ctx, node, [(p, values[p]) for p in g.predecessors(node)])


def propagate(g: nx.DiGraph, activation_rule: ActivationRule, start_value: Any, *,
              quantity: str = "c", check: bool = True) -> dict[Hashable, Any]:
    """Value of every node when the input holds ``start_value``: ``{node: value}``.

    Each kind applies its own rule (linear, pool, output pass the value on; activation nodes
    apply ``activation_rule(node, value)``; weighted sums give ``sum w_i**2 y_i``; normalise
    passes C values and resets Q values to 1 when ``quantity="q"``).  A concat's channels keep
    their inputs' values ``y_i`` apart, in parts of ``n_i`` of its ``N`` channels, and an
    activation after it applies ``activation_rule`` to each part: its value is
    ``sum (n_i/N) activation_rule(node, y_i)``, since the activation acts channel by channel;
    weighted sums, pools and normalise nodes keep the parts too, a linear layer mixes them.  The
    value reported for a node holding parts is their channel average ``sum (n_i/N) y_i`` (see
    :mod:`graphs.graph`).

    >>> import sympy, graphs
    >>> s = sympy.Symbol("s")
    >>> graphs.propagate(graphs.mlp(3), lambda node, y: s * y, 1)["output"]
    s**3
    """
    _check_quantity(quantity)
    if check:
        validate(g)
    ctx = PropagationContext(g, activation_rule, quantity)
    source = input_node(g)
    values: dict[Hashable, Any] = {source: start_value}
    _evaluate(ctx, (n for n in nx.topological_sort(g) if n != source), values)
    return {node: channel_average(value) for node, value in values.items()}


def network_c_map(g: nx.DiGraph, c_map_of_node: ActivationRule | Mapping[Hashable, Callable[[Any], Any]],
                  c: Any) -> Any:
    """The network's C map at ``c``: ``c_map_of_node(node, c_in)`` (or a mapping
    ``{activation node: C map}``) composed through the graph.

    ``c`` is a cosine similarity, in ``[-1, 1]``.  The composition takes every node's q value to
    be 1 (normalised inputs, and each activation's Q map with Q(1) = 1, as DKS/TAT impose): then
    a weighted sum's C value is ``sum w_i**2 c_i`` and a concat's ``sum (n_i/N) c_i``.  Where q
    values differ these become q-weighted averages, ``sum w_i**2 q_i c_i / sum w_i**2 q_i``, which
    this function does not form: pass C maps of Q-preserving activations.  An activation after a
    concat maps each part's C value, ``sum (n_i/N) C(c_i)`` (its channels carry different
    kernels), not ``C(sum (n_i/N) c_i)``.

    >>> import math, graphs
    >>> round(graphs.network_c_map(graphs.mlp(2), lambda node, c: math.sinh(c) / math.sinh(1), 1.0), 12)
    1.0
    """
    _check_cosine(c)
    if isinstance(c_map_of_node, Mapping):
        maps = c_map_of_node
        missing = [n for n, k in g.nodes(data="kind") if k == "activation" and n not in maps]
        if missing:
            raise InvalidGraphError(f"no C map given for activation nodes {missing}; "
                                    f"pass one per activation node")
        # a map keyed by a linear or sum node would be silently unused: the walk reads activations only
        extra = [n for n in maps if n not in g or g.nodes[n].get("kind") != "activation"]
        if extra:
            raise InvalidGraphError(f"C maps given for {extra}, which are not activation nodes of the graph; "
                                    f"give one C map per activation node "
                                    f"({[n for n, k in g.nodes(data='kind') if k == 'activation']}) and no other")
        rule: ActivationRule = lambda node, value: maps[node](value)
    else:
        rule = c_map_of_node
    return propagate(g, rule, c)[output_node(g)]


def _check_quantity(quantity: Any) -> None:
    # normalise nodes reset Q values only when told quantity == "q"; any other spelling ("Q")
    # would walk Q values as C values through them
    if quantity not in ("c", "q"):
        raise DomainError(f"quantity must be 'c' (C values, slopes, curvatures) or 'q' (Q values), "
                         f"not {quantity!r}")


def _check_cosine(c: Any) -> None:
    """Refuse a numeric ``c`` outside ``[-1, 1]`` (or nan); symbolic values pass."""
    if isinstance(c, sympy.Basic):
        if not c.is_number or c.free_symbols:
            return
        c = sympy.N(c)
        if not c.is_real:
            raise DomainError(f"c must be a real cosine similarity in [-1, 1], got {c}")
    values = c.ravel().tolist() if hasattr(c, "ravel") else [c]  # a numpy array of cosines, elementwise
    try:
        inside = all(-1 <= x <= 1 for x in values)
    except TypeError:  # complex numbers do not order
        inside = False
    if not inside:
        raise DomainError(f"c is a cosine similarity between two inputs and lies in [-1, 1], got {c!r}; "
                          f"the network's C map is not defined there")


# --------------------------------------------------------------------------- sub-networks

def _dag_idoms(order: Sequence[Hashable], index: Mapping[Hashable, int],
               preds: Mapping[Hashable, Iterable[Hashable]]) -> dict[Hashable, Hashable]:
    """Immediate dominators of a DAG with a single source ``order[0]`` (the root maps to itself).

    In topological order every predecessor's dominator chain is final, so one pass of the
    Cooper-Harvey-Kennedy intersection suffices: ``idom(v)`` is the nearest common ancestor of
    ``v``'s predecessors in the dominator tree, found by walking up whichever of two nodes comes
    later (a dominator always precedes the nodes it dominates).  Agrees with
    ``networkx.immediate_dominators`` (tested), several times faster on DAGs.
    """
    root = order[0]
    idom = {root: root}
    for node in order[1:]:
        it = iter(preds[node])
        a = next(it)
        for b in it:
            while a != b:
                while index[a] > index[b]:
                    a = idom[a]
                while index[b] > index[a]:
                    b = idom[b]
        idom[node] = a
    return idom


class _Dominance:
    """Dominator tree of a validated graph, with a topological index."""

    def __init__(self, g: nx.DiGraph):
        self.graph = g
        self.source = input_node(g)
        self.order = list(nx.topological_sort(g))
        self.index = {n: i for i, n in enumerate(self.order)}
        self.idom = _dag_idoms(self.order, self.index, g.pred)
        self.children: dict[Hashable, list[Hashable]] = defaultdict(list)
        for node in self.order:  # children listed in topological order
            if node != self.source:
                self.children[self.idom[node]].append(node)
        # Post-dominator tree (dominators of the reversed graph from the output), with DFS
        # entry/exit times so "v post-dominates u" is an O(1) ancestor test.
        self.sink = output_node(g)
        reverse_order = self.order[::-1]
        self.ipdom = ipdom = _dag_idoms(reverse_order, {n: i for i, n in enumerate(reverse_order)}, g.succ)
        pchildren: dict[Hashable, list[Hashable]] = defaultdict(list)
        for node, parent in ipdom.items():
            if node != self.sink:
                pchildren[parent].append(node)
        self.enter: dict[Hashable, int] = {}
        self.leave: dict[Hashable, int] = {}
        clock, stack = 0, [(self.sink, False)]
        while stack:
            node, done = stack.pop()
            if done:
                self.leave[node] = clock
                continue
            self.enter[node] = clock
            clock += 1
            stack.append((node, True))
            stack.extend((c, False) for c in pchildren.get(node, ()))

    def post_dominates(self, v: Hashable, u: Hashable) -> bool:
        """Every path from ``u`` to the output passes through ``v`` (``v == u`` counts)."""
        return self.enter[v] <= self.enter[u] and self.leave[u] <= self.leave[v]

    def common_post_dominator(self, a: Hashable, b: Hashable) -> Hashable:
        """The nearest common ancestor of ``a`` and ``b`` in the post-dominator tree (a parent
        always comes later in topological order, so walk up whichever node comes earlier)."""
        index, ipdom = self.index, self.ipdom
        while a != b:
            while index[a] < index[b]:
                a = ipdom[a]
            while index[b] < index[a]:
                b = ipdom[b]
        return a

    def closed_children(self, top: Hashable, kids: Sequence[Hashable],
                        nodes: Sequence[Hashable]) -> list[Hashable]:
        """The ``kids`` ``v`` (nodes dominated by ``top``) for which ``S(top, v)`` is a single-exit
        sub-network: every node strictly between ``top`` and ``v`` has all its successors between
        ``top`` and ``v`` or equal to ``v``.  ``nodes`` is ``between(top, kids)``.

        One reverse pass with a bitset per node of the kids it reaches (itself included): a node
        ``w`` is an interior node of ``S(top, v)`` iff some successor of ``w`` reaches ``v``, and it
        breaks that sub-network iff another successor does not.  Successors outside ``nodes``
        reach no kid.  Cost ``O(edges within nodes * len(kids) / 64)``.
        """
        bit = {kid: 1 << i for i, kid in enumerate(kids)}
        reach: dict[Hashable, int] = {}
        broken = 0
        for w in reversed(nodes):
            below, every = 0, -1
            for x in self.graph.successors(w):
                r = reach.get(x, 0)
                below |= r
                every &= r
            broken |= below & ~every
            reach[w] = below | bit.get(w, 0)
        return [kid for kid in kids if not broken & bit[kid]]

    def dominates(self, u: Hashable, v: Hashable) -> bool:
        while True:
            if v == u:
                return True
            if v == self.source:
                return False
            v = self.idom[v]

    def between(self, top: Hashable, targets: Iterable[Hashable]) -> list[Hashable]:
        """Ancestors of ``targets`` strictly below their dominator ``top``, in topological order.

        Every such node is dominated by ``top`` and so are its predecessors (else an input path
        would bypass ``top``), so propagating over this list from ``value(top)`` is exact.
        """
        g = self.graph
        seen: set[Hashable] = set()
        stack = [t for t in targets]
        while stack:
            n = stack.pop()
            if n in seen or n == top:
                continue
            seen.add(n)
            stack.extend(g.predecessors(n))
        return sorted(seen, key=self.index.__getitem__)

    def region(self, top: Hashable) -> list[Hashable]:
        """Nodes strictly dominated by ``top`` (its dominator subtree), in topological order."""
        out, stack = [], list(self.children.get(top, ()))
        while stack:
            n = stack.pop()
            out.append(n)
            stack.extend(self.children.get(n, ()))
        return sorted(out, key=self.index.__getitem__)


def subnetwork_value(g: nx.DiGraph, activation_rule: ActivationRule, start_value: Any,
                     source: Hashable, target: Hashable, *, quantity: str = "c") -> Any:
    """``S(source, target)``: the value at ``target`` when ``value(source) = start_value`` and
    everything between them propagates.  ``source`` must dominate ``target``.

    >>> import graphs
    >>> g = graphs.mlp(3)
    >>> graphs.subnetwork_value(g, lambda node, y: 2 * y, 1, "activation1", "output")
    4
    """
    _check_quantity(quantity)
    validate(g)
    dom = _Dominance(g)
    for node in (source, target):
        if node not in g:
            raise InvalidGraphError(f"{node!r} is not a node of the graph")
    if source == target:
        return start_value
    if not dom.dominates(source, target):
        raise InvalidGraphError(
            f"{source!r} does not dominate {target!r}: some input path reaches {target!r} without "
            f"{source!r}, so S({source!r}, {target!r}) is not a sub-network; its dominators are "
            f"{_dominator_chain(dom, target)}")
    ctx = PropagationContext(g, activation_rule, quantity)
    values = {source: start_value}
    _evaluate(ctx, dom.between(source, [target]), values)
    return channel_average(values[target])


def _dominator_chain(dom: _Dominance, node: Hashable) -> list[Hashable]:
    chain = []
    while node != dom.source:
        node = dom.idom[node]
        chain.append(node)
    return chain


def _greater(a: Any, b: Any) -> bool:
    result = a > b
    if isinstance(result, sympy.Basic) and not isinstance(result, sympy.logic.boolalg.BooleanAtom):
        raise InvalidGraphError(
            f"cannot compare sub-network values {a} and {b}: they are not numbers; use "
            f"max_subnetwork with a symbolic rule (it picks the maximiser at sample points)")
    return bool(result)


def _max_dominators(dom: _Dominance, ctx: PropagationContext, start: Any, single_exit: bool,
                    greater: Callable[[Any, Any], bool] = _greater) -> tuple[Any, Hashable, Hashable, int]:
    """The dynamic programme over the dominator tree (rules must be nondecreasing).

    Notation: ``I(u, v)`` = the interior of ``S(u, v)`` (nodes on a ``u``-to-``v`` path other than
    ``u`` and ``v``), ``d = idom(v)``, ``M(v)`` = the maximum of ``S(u, v)`` over the admissible
    ``u``.  With ``single_exit``, (u, v) is admissible iff u dominates v and every node of
    ``I(u, v)`` has all its successors in ``I(u, v) + {v}``; equivalently (a path leaving the
    interior elsewhere reaches the output without ``v``, and one that stays meets ``v``) iff ``v``
    post-dominates every node of ``I(u, v)``.

    Claim: for ``u`` a strict dominator of ``d``, (u, v) is admissible iff (d, v) is, ``v``
    post-dominates ``d``, and (u, d) is.  Every ``u``-to-``v`` path passes ``d`` (an
    input-to-``u`` path avoids ``d``, which comes after ``u``, and the whole path must meet ``d``),
    so ``I(u, v) = I(u, d) + {d} + I(d, v)``.  (If) a node of ``I(u, d)`` is post-dominated by
    ``d``, hence by ``v``.  (Only if) ``I(d, v)`` and ``d`` lie in ``I(u, v)``; and a node ``w`` of
    ``I(u, d)`` post-dominated by ``v`` is post-dominated by ``d``: otherwise input -> ``u`` ->
    ``w`` (both parts before ``d`` in topological order) -> output avoiding ``d``, which passes
    ``v``, would reach ``v`` without ``d``.

    Hence, with ``f_v = S(d, v)`` nondecreasing: no sub-network ends at ``v`` unless (d, v) is
    admissible; then ``M(v) = f_v(max(start, M(d)))`` if ``v`` post-dominates ``d`` and ``M(d)``
    exists, else ``M(v) = f_v(start)`` (only ``u = d``, e.g. a residual branch from its block
    input, whose shortcut leaves ``d`` past ``v``).  Without ``single_exit`` every dominated pair
    is admissible and ``M(v) = f_v(max(start, M(d)))`` always.  Ties keep the larger sub-network.

    Channel parts: where ``d`` holds :class:`~graphs.graph.ChannelParts` (a concat, or an
    activation, pool or normalise node after one), the candidates ``start`` and ``M(d)`` are
    vectors, one value per part, and the rules act on each part: ``f_v`` is nondecreasing in
    every part, so a candidate no larger than another in every part gives no larger a value
    anywhere downstream, but two candidates that are not so ordered (one part above ``start``,
    another below) can each win somewhere: taking the larger channel average missed the maximum
    of a C map (0.8815 for 0.8849 in ``test_walker``'s two-branch concat: the ReLU C map of the
    parts gains more from their spread than their average lost).  So ``M(d)`` is kept as the set
    of candidates that no other one bounds in every part (those from larger sub-networks first;
    a plain value is one part), each propagated to the children; plain values are totally
    ordered, so the set has one member wherever the values are plain (after a linear layer) and
    wherever they are ordered part by part (slopes ``s * y`` and curvatures ``k + y`` from a plain
    start: every part of the larger candidate is larger), and the cost is as before.  The
    reported maximum at a node is the largest channel average among its candidates.
    """
    best: dict[Hashable, list[tuple[Any, Hashable]]] = {}
    for top in dom.order:
        kids = dom.children.get(top)
        if not kids:
            continue
        fresh = (start, top)
        # max(start, M(top)), part by part; on a tie keep the larger sub-network (listed first)
        candidates = _undominated([*best.get(top, ()), fresh], greater)
        all_kids, nodes = kids, dom.between(top, kids)
        if single_exit:
            kids = dom.closed_children(top, kids, nodes)
            groups = [([k for k in kids if dom.post_dominates(k, top)], candidates),
                      ([k for k in kids if not dom.post_dominates(k, top)], [fresh])]
            if len(candidates) == 1 and candidates[0][1] == top:  # both groups start from `start`: one propagation
                groups = [(kids, [fresh])]
        else:
            groups = [(kids, candidates)]
        for group, group_candidates in groups:
            if not group:
                continue
            between = nodes if len(group) == len(all_kids) else dom.between(top, group)
            for value, origin in group_candidates:
                values = {top: value}
                _evaluate(ctx, between, values)
                for kid in group:
                    best.setdefault(kid, []).append((values[kid], origin))
            for kid in group:
                best[kid] = _undominated(best[kid], greater)
    return _argmax(dom, {node: _largest_average(found, greater) for node, found in best.items()}, greater)


def _bounded_by(a: Any, b: Any, greater: Callable[[Any, Any], bool]) -> bool:
    """``a <= b`` in every channel (``a`` is not greater than ``b`` in any part)."""
    if not isinstance(a, ChannelParts) and not isinstance(b, ChannelParts):
        return not greater(a, b)
    pairs = _channel_by_channel(lambda parts: (parts[0][1], parts[1][1]), [("a", a), ("b", b)]).values
    return not any(greater(x, y) for x, y in pairs)


def _undominated(candidates: Sequence[tuple[Any, Hashable]],
                 greater: Callable[[Any, Any], bool]) -> list[tuple[Any, Hashable]]:
    """The ``(value, origin)`` candidates that no other bounds in every channel, in their order;
    of equal ones the first is kept (the larger sub-network)."""
    kept: list[tuple[Any, Hashable]] = []
    for candidate in candidates:
        if any(_bounded_by(candidate[0], k[0], greater) for k in kept):
            continue
        kept = [k for k in kept if not _bounded_by(k[0], candidate[0], greater)] + [candidate]
    return kept


def _largest_average(candidates: Sequence[tuple[Any, Hashable]],
                     greater: Callable[[Any, Any], bool]) -> tuple[Any, Hashable]:
    """The candidate with the largest channel average (the first of equal ones)."""
    value, origin = candidates[0]
    for other, other_origin in candidates[1:]:
        if greater(channel_average(other), channel_average(value)):
            value, origin = other, other_origin
    return value, origin


def _argmax(dom: _Dominance, best: Mapping[Hashable, tuple[Any, Hashable]],
            greater: Callable[[Any, Any], bool] = _greater) -> tuple[Any, Hashable, Hashable, int]:
    top_value, top_pair = None, None
    for node in dom.order:  # ties go to the later node (the output over an inner node)
        if node not in best:
            continue
        value, origin = best[node]
        value = channel_average(value)
        if top_pair is None or not greater(top_value, value):
            top_value, top_pair = value, (origin, node)
    if top_pair is None:
        raise InvalidGraphError("the graph has no sub-networks (a lone input node)")
    return top_value, top_pair[0], top_pair[1], len(best)


def _max_all_pairs(dom: _Dominance, ctx: PropagationContext, start: Any, single_exit: bool,
                   greater: Callable[[Any, Any], bool] = _greater) -> tuple[Any, Hashable, Hashable, int]:
    """Propagate from every node over its dominance region: O(n * depth), any rules.

    With ``single_exit``, (top, v) is admitted iff ``v`` post-dominates every node of ``I(top, v)``
    (see ``_max_dominators``), i.e. ``v`` is an ancestor in the post-dominator tree of ``J(v)``,
    the nearest common post-dominator of ``I(top, v)``; ``I(top, v)`` is the union over the
    predecessors ``p != top`` of ``v`` of ``{p} + I(top, p)``, so ``J`` follows in topological order.
    """
    best: dict[Hashable, tuple[Any, Hashable]] = {}
    pairs = 0
    g = dom.graph
    for top in dom.order:
        region = dom.region(top)
        if not region:
            continue
        values = {top: start}
        _evaluate(ctx, region, values)
        join: dict[Hashable, Hashable | None] = {}
        for node in region:
            if single_exit:
                j = None
                for p in g.predecessors(node):
                    if p == top:
                        continue
                    jp = p if join[p] is None else dom.common_post_dominator(p, join[p])
                    j = jp if j is None else dom.common_post_dominator(j, jp)
                join[node] = j
                if j is not None and not dom.post_dominates(node, j):
                    continue
            pairs += 1
            value = channel_average(values[node])
            if node not in best or not greater(best[node][0], value):
                best[node] = (value, top)
    value, u, v, _ = _argmax(dom, best, greater)
    return value, u, v, pairs


_METHODS = {"dominators": _max_dominators, "all_pairs": _max_all_pairs}


@dataclass(frozen=True)
class SubnetworkMaximum:
    """The maximum over sub-networks ``S(u, v)`` of a propagated value.

    ``value``: the maximum -- a number, or for symbolic rules the SymPy expression of the
    sub-network that attains it at every sample point (``None`` if no single sub-network does).
    ``source``, ``target``: that sub-network (at the first sample point when symbolic).
    ``parameters``: the free symbols, in the order ``function`` takes them positionally.
    ``function``: ``function(*values)`` or ``function(**{name: value})`` -> the numeric maximum.
    """

    value: Any
    source: Hashable
    target: Hashable
    parameters: tuple[sympy.Symbol, ...] = ()
    sample_points: tuple[Mapping[sympy.Symbol, Any], ...] = field(default=(), repr=False)
    function: Callable[..., Any] | None = field(default=None, repr=False, compare=False)

    @property
    def is_symbolic(self) -> bool:
        return bool(self.parameters)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.function is None:
            if args or kwargs:
                raise TypeError("this maximum has no parameters")
            return self.value
        return self.function(*args, **kwargs)


def _sum_weights(g: nx.DiGraph) -> list[tuple[Hashable, Hashable, Any]]:
    """``(a, b, weight)`` for the in-edges of weighted-sum nodes: the only weights the walk reads
    (a ``weight`` attribute on any other edge, e.g. left by another networkx tool, is not one)."""
    return [(a, b, w) for a, b, w in g.edges(data="weight") if g.nodes[b]["kind"] == "weighted_sum"]


def _free_symbols(value: Any) -> set[sympy.Symbol]:
    return set(value.free_symbols) if isinstance(value, sympy.Basic) else set()


def _substituted(rule: ActivationRule, point: Mapping[sympy.Symbol, Any]) -> ActivationRule:
    def rule_at_point(node: Hashable, value: Any) -> Any:
        result = rule(node, value)
        return result.xreplace(point) if isinstance(result, sympy.Basic) else result
    return rule_at_point


#: Working digits (at least; ``mpmath.mp.dps + 20`` if more) of the floating-point runs at the
#: sample points, and the relative gap below which two values there count as a tie.
SAMPLE_DIGITS = 50


def _tie_tolerance(digits: int) -> Any:
    return mpmath.mpf(10) ** -(digits // 2)


def _tolerant_greater(tol: Any) -> Callable[[Any, Any], bool]:
    """``a > b`` by more than ``tol`` relative: rounding noise between values that are equal in
    exact arithmetic reads as a tie, which the programme breaks as it does exact ties."""
    def greater(a: Any, b: Any) -> bool:
        return a > b and a - b > tol * max(abs(a), abs(b))
    return greater


class _NotNumeric(Exception):
    """The floating-point run at the sample points does not apply; use exact arithmetic."""


def _probe_rules(g: nx.DiGraph, dom: _Dominance, activation_rule: ActivationRule,
                 parameters: tuple[sympy.Symbol, ...]) -> tuple[sympy.Dummy, dict[Hashable, sympy.Expr]]:
    """``(y, {activation node: rule(node, y)})`` for a dummy input ``y``; raises ``_NotNumeric``
    when a rule does not give a SymPy expression of ``y`` and the parameters."""
    y = sympy.Dummy("y")
    allowed = {y, *parameters}
    exprs: dict[Hashable, sympy.Expr] = {}
    for node in dom.order:
        if g.nodes[node]["kind"] != "activation":
            continue
        try:
            expr = sympy.sympify(activation_rule(node, y))
        except Exception as exc:  # e.g. `if y > 0` on a symbol
            raise _NotNumeric(f"rule at {node!r}: {exc}") from exc
        if not isinstance(expr, sympy.Expr) or not expr.free_symbols <= allowed:
            raise _NotNumeric(f"rule at {node!r} gives {expr!r}")
        exprs[node] = expr
    return y, exprs


def _float_sample_maxima(g: nx.DiGraph, dom: _Dominance, probe: tuple[sympy.Dummy, dict[Hashable, sympy.Expr]],
                         start_value: Any, quantity: str, parameters: tuple[sympy.Symbol, ...],
                         sample_points: Sequence[Mapping[sympy.Symbol, Any]], solve: Callable[..., Any],
                         digits: int) -> list[tuple[Any, Hashable, Hashable, int]]:
    """The maximum at each sample point, in mpmath at ``digits`` digits (call inside workdps).

    Exact rationals at the sample points grow by a few digits per layer, which made the symbolic
    maximum quadratic in the depth.  Here each activation rule's expression in a dummy input
    ``y`` (``probe``, from ``_probe_rules``) is compiled once per distinct expression
    (``sympy.lambdify`` to mpmath), and the programme runs on mpmath numbers: linear in the size
    of the graph.  Raises ``_NotNumeric`` when a weight holds a free symbol, a point misses a
    parameter, or the run fails (e.g. a function mpmath lacks).
    """
    y, exprs = probe
    compiled: dict[sympy.Expr, Callable[..., Any]] = {}
    node_fns: dict[Hashable, Callable[..., Any]] = {}
    for node, expr in exprs.items():
        fn = compiled.get(expr)
        if fn is None:
            fn = compiled[expr] = sympy.lambdify((y, *parameters), expr, modules="mpmath")
        node_fns[node] = fn

    def to_mpf(value: Any) -> Any:
        value = sympy.sympify(value)
        try:
            number = mpmath.mpmathify(sympy.N(value, digits + 5))
        except (TypeError, ValueError) as exc:
            raise _NotNumeric(f"{value} is not a number") from exc
        if not isinstance(number, mpmath.mpf):
            raise _NotNumeric(f"{value} is not real")
        return number

    graph = g
    sympy_weights = [(a, b, w) for a, b, w in _sum_weights(g) if isinstance(w, sympy.Basic)]
    if sympy_weights:
        graph = g.copy()
        for a, b, w in sympy_weights:
            if w.free_symbols:
                raise _NotNumeric(f"weight {w} on {a!r} -> {b!r} is symbolic")
            graph.edges[a, b]["weight"] = to_mpf(w)

    greater = _tolerant_greater(_tie_tolerance(digits))
    results = []
    for point in sample_points:
        if set(parameters) - set(point):
            raise _NotNumeric("a sample point misses a parameter")
        args = tuple(to_mpf(point[p]) for p in parameters)
        start = to_mpf(start_value.xreplace(point) if isinstance(start_value, sympy.Basic) else start_value)
        rule = lambda node, value, args=args: node_fns[node](value, *args)  # noqa: E731
        try:
            results.append(solve(dom, PropagationContext(graph, rule, quantity), start, greater))
        except Exception as exc:  # e.g. a function mpmath lacks, a complex value: go exact
            raise _NotNumeric(f"floating-point run failed: {exc!r}") from exc
    return results


def _run_forms(activation_rule: ActivationRule, probe: tuple[sympy.Dummy, dict[Hashable, sympy.Expr]],
               nodes: Iterable[Hashable]) -> dict[Hashable, tuple[str, sympy.Expr]]:
    """``{activation node: ("mul", c) or ("add", c)}`` for the nodes whose rule is ``y -> c*y``
    (``c`` not an Add) or ``y -> y + c``, with ``c`` free of ``y`` and of floats, and which does
    the same to a compound input (``c*(a + b)``, ``(a + b) + c``; a rule that, say, expands its
    result does not): runs of such nodes can be composed in one step (``_compose``)."""
    y, exprs = probe
    a, b = sympy.Dummy("a"), sympy.Dummy("b")
    z = a + b
    forms: dict[Hashable, tuple[str, sympy.Expr]] = {}
    for node in nodes:
        expr = exprs.get(node)
        if expr is None or expr.has(sympy.Float):
            continue
        c, rest = expr.as_independent(y, as_Add=False)
        if rest == y and not c.is_Add and c != 0:
            form = ("mul", c)
        else:
            c, rest = expr.as_independent(y, as_Add=True)
            if rest != y:
                continue
            form = ("add", c)
        try:
            same = sympy.sympify(activation_rule(node, z)) == (c * z if form[0] == "mul" else z + c)
        except Exception:  # pragma: no cover - the rule took y, so it should take a + b
            same = False
        if same:
            forms[node] = form
    return forms


def _compose(ctx: PropagationContext, dom: _Dominance, u: Hashable, v: Hashable, start: Any,
             forms: Mapping[Hashable, tuple[str, sympy.Expr]]) -> Any:
    """``S(u, v)`` symbolically, as ``_evaluate`` over ``between(u, [v])`` gives it, but a run of
    activations applying the same ``y -> c*y`` (or ``y -> y + c``), with only single-input
    pass-through nodes (linear, pool, ...) between them, is composed in one step as
    ``x * c**n`` (``x + n*c``): the same SymPy expression (products and sums of one factor
    collect the same way), without building the ``n - 1`` intermediate ones -- building
    ``s**k`` node by node was most of the time of a deep MLP's symbolic maximum."""
    g = ctx.graph
    between = dom.between(u, [v])
    if all(node in forms for node in between if g.nodes[node]["kind"] == "activation"):
        # every rule is y -> c*y or y -> y + c, which commute with the channel average: averaging
        # at the concats gives the same value, as one nested expression (parts of a DenseNet's
        # nested concats, each an expression of the earlier ones, grow exponentially as trees)
        ctx = PropagationContext(ctx.graph, ctx.activation_rule, ctx.quantity, channel_parts=False)
    values: dict[Hashable, Any] = {u: start}
    pending: dict[Hashable, tuple[Any, str, sympy.Expr, int]] = {}  # node -> (x, form, c, n)

    def value_of(node: Hashable) -> Any:
        if node not in values:
            x, form, c, n = pending[node]
            values[node] = x * c**n if form == "mul" else x + n * c
        return values[node]

    for node in between:
        kind = KINDS[g.nodes[node]["kind"]]
        preds = list(g.predecessors(node))
        if kind.rule is _pass_single and len(preds) == 1 and preds[0] in pending:
            pending[node] = pending[preds[0]]
            continue
        form = forms.get(node)
        if form is not None:
            prev = pending.get(preds[0])
            if prev is not None and prev[1:3] == form:
                pending[node] = (prev[0], form[0], form[1], prev[3] + 1)
                continue
            x = value_of(preds[0])
            if not isinstance(x, ChannelParts):  # runs start from plain values only (parts map per part)
                pending[node] = (x, form[0], form[1], 1)
                continue
        values[node] = node_value(ctx, node, [(p, value_of(p)) for p in preds])
    return channel_average(value_of(v))


def _xreplace_shared(expr: sympy.Basic, rule: Mapping[sympy.Basic, Any]) -> tuple[sympy.Basic, bool]:
    """``(expr.xreplace(rule), whether expr holds a Float)``, visiting each distinct subexpression
    once.  A value propagated through nested concats refers to the earlier ones many times over
    (a DenseNet's, with a non-affine rule, has a tree of 3**depth nodes but a DAG of a few per
    layer); ``xreplace`` and ``has`` walk the tree, which made the symbolic maximum of 12 nested
    concats take seconds and each further level twice as long.  Iterative (no recursion limit)."""
    done: dict[int, tuple[sympy.Basic, sympy.Basic, bool]] = {}  # id -> (node kept alive, result, float)
    stack = [expr]
    while stack:
        e = stack[-1]
        if id(e) in done:
            stack.pop()
            continue
        if e in rule:
            done[id(e)] = (e, rule[e], False)
            stack.pop()
            continue
        todo = [a for a in e.args if id(a) not in done]
        if todo:
            stack.extend(todo)
            continue
        stack.pop()
        results = [done[id(a)] for a in e.args]
        args = tuple(r[1] for r in results)
        changed = any(new is not old for new, old in zip(args, e.args))
        done[id(e)] = (e, e.func(*args) if changed else e,
                       isinstance(e, sympy.Float) or any(r[2] for r in results))
    return done[id(expr)][1], done[id(expr)][2]


def _attains(expr: Any, point: Mapping[sympy.Symbol, Any], best: Any, digits: int) -> bool:
    """``expr`` at ``point`` equals the floating-point maximum ``best`` there: to the tie
    tolerance, or to 1e-12 relative when ``expr`` holds floats (as ``_close`` compares)."""
    expr = sympy.sympify(expr)
    value, has_float = _xreplace_shared(expr, {p: sympy.Float(v, digits + 5) for p, v in point.items()})
    value = sympy.N(value, digits)
    if not value.is_number or value.free_symbols:
        return False
    try:
        value = mpmath.mpmathify(value)
    except (TypeError, ValueError):
        return False
    tol = mpmath.mpf(10) ** -12 if has_float else _tie_tolerance(digits)
    return abs(value - best) <= tol * max(abs(value), abs(best))


def _close(a: Any, b: Any) -> bool:
    if isinstance(a, sympy.Basic) and isinstance(b, sympy.Basic) and not (a.has(sympy.Float) or b.has(sympy.Float)):
        return sympy.simplify(a - b) == 0
    diff = abs(complex(a) - complex(b))
    return diff <= 1e-12 * max(1.0, abs(complex(b)))


def max_subnetwork(g: nx.DiGraph, activation_rule: ActivationRule, start_value: Any, *,
                   quantity: str = "c", method: str = "dominators", subnetworks: str = "single_exit",
                   sample_points: Sequence[Mapping[sympy.Symbol, Any]] | None = None) -> SubnetworkMaximum:
    """The maximum over all sub-networks ``S(u, v)`` (``u != v``; ``u`` dominates ``v``, and with
    ``subnetworks="single_exit"`` every node strictly between ``u`` and ``v`` has all its
    successors between them or equal to ``v``) of the value at ``v`` when ``value(u) =
    start_value``; see the module docstring for the definitions and the algorithm.

    ``method="dominators"`` (default) needs every rule nondecreasing in its input over the values
    reached; ``method="all_pairs"`` makes no such assumption and is quadratic.

    >>> import graphs
    >>> best = graphs.max_subnetwork(graphs.mlp(3), lambda node, y: 0.5 * y, 1.0)
    >>> best.value, best.source, best.target
    (1.0, 'activation3', 'output')
    """
    if method not in _METHODS:
        raise DomainError(f"method must be one of {sorted(_METHODS)}, not {method!r}")
    if subnetworks not in ("single_exit", "dominated"):
        raise DomainError(f"subnetworks must be 'single_exit' or 'dominated', not {subnetworks!r}")
    _check_quantity(quantity)
    validate(g)
    # Sub-network values are compared as numbers (at sample points of the rule's parameters); a
    # weight holding a free symbol would leave every comparison undecided.
    weight_symbols = sorted({str(x) for *_, w in _sum_weights(g) for x in _free_symbols(w)})
    if weight_symbols:
        raise InvalidGraphError(
            f"weighted-sum weights hold the symbols {weight_symbols}; the maximum over sub-networks "
            f"compares their values, so give the weights numbers (e.g. graphs.resnet(shortcut_weight="
            f"sympy.Rational(3, 5))), or for a formula in {weight_symbols[0]} use graphs.subnetwork_value "
            f"or graphs.propagate on the sub-network you need")
    dom = _Dominance(g)
    single_exit = subnetworks == "single_exit"
    method_fn = _METHODS[method]
    solve = lambda d, ctx, start, greater=_greater: method_fn(d, ctx, start, single_exit, greater)  # noqa: E731

    # Probe each activation rule once to find the free parameters of a symbolic rule.
    symbols = _free_symbols(start_value)
    for node in dom.order:
        if g.nodes[node]["kind"] == "activation":
            symbols |= _free_symbols(activation_rule(node, start_value))
    parameters = tuple(sorted(symbols, key=lambda s: s.name))

    def numeric_max(point: Mapping[sympy.Symbol, Any]) -> tuple[Any, Hashable, Hashable, int]:
        rule = _substituted(activation_rule, point) if point else activation_rule
        start = start_value.xreplace(point) if isinstance(start_value, sympy.Basic) and point else start_value
        return solve(dom, PropagationContext(g, rule, quantity), start)

    if not parameters:
        value, u, v, _ = numeric_max({})
        return SubnetworkMaximum(value, u, v)

    def function(*args: Any, **kwargs: Any) -> Any:
        if len(args) > len(parameters):
            raise TypeError(f"got {len(args)} values for the {len(parameters)} parameter(s) "
                            f"{[p.name for p in parameters]}")
        point = dict(zip(parameters, (sympy.sympify(a) for a in args)))
        by_name = {p.name: p for p in parameters}
        for name, val in kwargs.items():
            if name not in by_name:
                raise TypeError(f"unknown parameter {name!r}; parameters are {[p.name for p in parameters]}")
            point[by_name[name]] = sympy.sympify(val)
        if len(point) != len(parameters):
            raise TypeError(f"give a value for each of {[p.name for p in parameters]}")
        return numeric_max(point)[0]

    if sample_points is None:
        sample_points = [{p: base + sympy.Rational(i, 997) for i, p in enumerate(parameters)}
                         for base in DEFAULT_SAMPLE_VALUES]
    by_name = {p.name: p for p in parameters}
    # keys may be the symbols or their names ({"s": 2}); every point needs every parameter, or
    # the sub-network values there stay symbolic and cannot be compared
    sample_points = tuple({by_name.get(key, key) if isinstance(key, str) else key: value
                           for key, value in pt.items()} for pt in sample_points)
    if not sample_points:
        raise DomainError(f"sample_points is empty; give at least one point, e.g. "
                         f"[{{{', '.join(f'{p.name!r}: 2' for p in parameters)}}}]")
    for pt in sample_points:
        missing = [p.name for p in parameters if p not in pt]
        if missing:
            raise DomainError(f"sample point {pt} gives no value to {missing}; each point needs a value "
                             f"for every parameter {[p.name for p in parameters]}")
    digits = max(SAMPLE_DIGITS, mpmath.mp.dps + 20)
    probe = None
    try:
        probe = _probe_rules(g, dom, activation_rule, parameters)
        with mpmath.workdps(digits):
            results = _float_sample_maxima(g, dom, probe, start_value, quantity, parameters,
                                           sample_points, solve, digits)
        close = lambda value, pt, best: _attains(value, pt, best, digits)  # noqa: E731
    except _NotNumeric:
        results = [numeric_max(pt) for pt in sample_points]
        close = lambda value, pt, best: _close(_xreplace_shared(sympy.sympify(value), {  # noqa: E731
            p: sympy.sympify(x) for p, x in pt.items()})[0], sympy.sympify(best))
    _, u, v, _ = results[0]
    # The expression once, over the maximiser only.
    ctx = PropagationContext(g, activation_rule, quantity)
    runs = _run_forms(activation_rule, probe, dom.between(u, [v])) if probe is not None else {}
    expr = _compose(ctx, dom, u, v, start_value, runs)
    attained = all(close(expr, pt, best) for pt, (best, *_rest) in zip(sample_points, results))
    return SubnetworkMaximum(expr if attained else None, u, v, parameters, sample_points, function)


def max_subnetwork_value(g: nx.DiGraph, activation_rule: ActivationRule, start_value: Any, *,
                         quantity: str = "c", method: str = "dominators", subnetworks: str = "single_exit",
                         sample_points: Sequence[Mapping[sympy.Symbol, Any]] | None = None) -> Any:
    """The maximum over sub-networks (see :func:`max_subnetwork`): a number for numeric rules; for
    symbolic rules the SymPy expression of the maximising sub-network when one sub-network
    attains it at every sample point (e.g. ``s**T`` for an MLP), otherwise a callable of the
    parameters.

    >>> import sympy, graphs
    >>> k = sympy.Symbol("k", positive=True)
    >>> graphs.max_subnetwork_value(graphs.mlp(5), lambda node, y: k + y, 0)
    5*k
    """
    result = max_subnetwork(g, activation_rule, start_value, quantity=quantity, method=method,
                            subnetworks=subnetworks, sample_points=sample_points)
    if result.value is None:
        return result.function
    return result.value
