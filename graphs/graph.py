"""Network topologies as networkx ``DiGraph``s: node kinds, their rules, validation.

A network graph has one node of kind ``input`` and one of kind ``output``; every other node
has one of the kinds below, stored in the node attribute ``kind``.  Each kind *owns* the rule by
which it transforms a scalar propagated from the input (a C value, a Q value, a slope C'(1) or a
curvature C''(1)), as the layers of neural-tangents' ``stax`` own their kernel rules; the walker
(:mod:`graphs.walker`) only composes these rules.  Adding a kind is one :func:`register_kind` call.

======================  =====================================================================
kind                    rule for a propagated value ``y``
======================  =====================================================================
``input``               the start value
``linear``              ``y`` (dense, or conv with delta initialisation: kernel maps pass)
``pool``                ``y`` (average pooling of positions carrying one kernel; see Pools),
                        per channel part
``activation``          ``r(node, y)``: the per-activation function the walker is given, applied
                        to each channel part
``weighted_sum``        ``sum_i w_i**2 * y_i``, edge attribute ``weight``, ``sum_i w_i**2 == 1``,
                        channel by channel
``concat``              the parts ``(n_i / N, y_i)``, edge attribute ``channels`` = n_i,
                        N = sum n_i (a :class:`ChannelParts` value)
``normalise``           ``y`` for C values and their derivatives; for Q values each part divided
                        by the channel average (so the average is 1)
``output``              ``y`` (the channel average)
======================  =====================================================================

Channel parts.  A concat's channels carry different values: the channels of input ``i`` (a
fraction ``n_i / N`` of them) carry ``y_i``.  Nodes that act on each channel alone keep the parts
(``NodeKind.channelwise``): an activation acts elementwise, so after it the channels of part ``i``
carry ``r(y_i)``, and the value of the layer is ``sum (n_i / N) r(y_i)``, *not*
``r(sum (n_i / N) y_i)`` (for the normalised ReLU C map at ``c = -0.8``, concat of ``c`` and
``C(c)`` then ReLU: 0.1796, not 0.1492).  A linear layer mixes all channels, so its value is the
channel average ``sum (n_i / N) y_i`` (the kernel of ``W x`` is the mean over channels of
``x_c x'_c``), as is the output's; so is every value the walker reports.  A kind that is not
``channelwise`` (linear, output, and by default every registered kind) sees channel averages only.
Slopes ``s * y`` and curvatures ``k + y`` commute with the averaging (the fractions sum to 1), so
C'(1), and C''(1) when every per-layer C'(1) is 1, come out as if values were averaged at the
concat; C maps away from ``c = 1`` and Q values do not.

The sum and concat rules for C values (and their slopes and curvatures) are those of a network
whose every node has q = 1 (normalised inputs, each activation's Q map with Q(1) = 1, as DKS and
TAT impose); with unequal q values they would be q-weighted averages,
``sum w_i**2 q_i y_i / sum w_i**2 q_i``, which these rules do not form.

Pools.  Every value is a per-position one (a delta-initialised conv, a ``linear`` node, acts on
each position alone); the values walked are those of one position, or of every position alike.
Averaging ``P`` positions gives the kernel ``mean_ij k(x_i, x'_j)``, which holds the kernels
*across* positions that the walk does not carry, so passing ``y`` on is exact only when they equal
the per-position ones: identical positions, or (for C values) kernels across positions that
vanish, as with inputs whose positions are uncorrelated and C(0) = 0 at every layer (DKS).  Q
values are not passed on so in general: the pool's q is ``q * (1/P + (1 - 1/P) * rho)``, with
``rho`` the mean cosine between different positions at the pool (the network's C map of their
cosine at the input): after one wide ReLU conv layer at initialisation, on ``P = 8`` i.i.d.
positions, ``rho = C(0) = 1/pi`` and the pool's q is 0.404 q, not q; after tanh, q/8.

A ``linear`` node may carry a ``weights`` attribute naming its weight matrix: nodes with the same
``weights`` apply one matrix (a module called twice, tied weights), and their outputs are correlated
(``W u`` and ``W v`` have covariance ``<u, v>/n``), which the sum check below takes into account.
:func:`graphs.from_torch` sets it.

The activation node's ``activation`` attribute is opaque here (a catalogue name such as
``"tanh"`` or a :class:`symact.Activation`); graphs never interprets it.

Example
-------
>>> import graphs
>>> g = graphs.new_graph()
>>> graphs.add_node(g, "x", "input")
'x'
>>> graphs.add_node(g, "dense", "linear", "x")
'dense'
>>> graphs.add_node(g, "act", "activation", "dense", activation="tanh")
'act'
>>> graphs.add_node(g, "head", "linear", "act")
'head'
>>> graphs.add_node(g, "y", "output", "head")
'y'
>>> graphs.validate(g)
>>> graphs.activation_nodes(g)
['act']
"""

from __future__ import annotations

import decimal
import math
import numbers
from dataclasses import dataclass
from typing import Any, Callable, Hashable, Mapping, Sequence

import networkx as nx
import sympy

from symact.errors import InvalidGraphError, is_whole_number

__all__ = [
    "NodeKind",
    "PropagationContext",
    "ChannelParts",
    "channel_average",
    "node_value",
    "KINDS",
    "register_kind",
    "new_graph",
    "add_node",
    "add_weighted_sum",
    "add_concat",
    "edge_weights",
    "edge_channels",
    "normalised_weights",
    "activation_nodes",
    "input_node",
    "output_node",
    "validate",
    "WEIGHT_TOLERANCE",
]

#: Tolerance on ``|sum w_i**2 - 1|`` for inexact (float, mpmath, SymPy Float) weights.
WEIGHT_TOLERANCE = 1e-12


@dataclass(frozen=True)
class PropagationContext:
    """What a kind's rule may use besides its inputs.

    ``activation_rule(node, value) -> value`` is applied at activation nodes; ``quantity`` is
    ``"c"`` (C values, slopes, curvatures) or ``"q"`` (Q values, reset to 1 by ``normalise``).
    """

    graph: nx.DiGraph
    activation_rule: Callable[[Hashable, Any], Any]
    quantity: str = "c"
    #: False: concats give the channel average at once.  Exact only when every activation rule
    #: met is ``y -> c*y`` or ``y -> y + c`` (they commute with the average); the walker's symbolic
    #: maximiser uses it then, as nested per-part SymPy expressions grow exponentially as trees.
    channel_parts: bool = True


# A rule receives (context, node, [(predecessor, value), ...]) and returns the node's value.
Rule = Callable[[PropagationContext, Hashable, Sequence[tuple[Hashable, Any]]], Any]


@dataclass(frozen=True)
class NodeKind:
    """A node kind: its arity, its propagation rule and its attribute checks.

    ``gaussian`` says what the kind does to the Gaussianity of wide-limit pre-activations, which
    the kernel-map analysis needs at every activation input: ``"source"`` (linear layers make
    Gaussian outputs), ``"transparent"`` (Gaussian iff all inputs are) or ``"breaks"``.

    ``channelwise``: the rule takes :class:`ChannelParts` inputs (values that differ between
    groups of channels, as after a concat) and keeps them apart, as a layer acting on each
    channel alone must.  Otherwise (the default) the walker hands the rule channel averages, which
    is right for a layer that mixes channels (linear) and safe for any registered kind.
    """

    name: str
    min_inputs: int
    max_inputs: int | None
    rule: Rule | None
    gaussian: str = "transparent"
    check: Callable[[nx.DiGraph, Hashable], None] | None = None
    description: str = ""
    channelwise: bool = False

    def __repr__(self) -> str:
        arity = f"{self.min_inputs}" if self.max_inputs == self.min_inputs else (
            f"{self.min_inputs}..{'' if self.max_inputs is None else self.max_inputs}")
        return f"NodeKind({self.name!r}, inputs={arity}, gaussian={self.gaussian!r})"


KINDS: dict[str, NodeKind] = {}


def register_kind(kind: NodeKind) -> NodeKind:
    """Add (or replace) a node kind; the walker and validation pick it up from :data:`KINDS`."""
    if kind.gaussian not in ("source", "transparent", "breaks"):
        raise InvalidGraphError(f"gaussian must be 'source', 'transparent' or 'breaks', not {kind.gaussian!r}")
    if not isinstance(kind.min_inputs, int) or kind.min_inputs < 0 or (
            kind.max_inputs is not None and (not isinstance(kind.max_inputs, int) or kind.max_inputs < kind.min_inputs)):
        raise InvalidGraphError(f"kind {kind.name!r}: inputs must satisfy 0 <= min_inputs <= max_inputs (or max_inputs "
                         f"None for no limit), got min_inputs={kind.min_inputs!r}, max_inputs={kind.max_inputs!r}")
    # the walker calls the rule of every node but the input; only a kind without inputs has no value to derive
    if kind.rule is None and kind.max_inputs != 0:
        raise InvalidGraphError(f"kind {kind.name!r} takes inputs, so it needs a rule(ctx, node, inputs) giving its "
                         f"value (e.g. lambda ctx, node, inputs: inputs[0][1] for a layer that passes kernels)")
    KINDS[kind.name] = kind
    return kind


# --------------------------------------------------------------------------- value helpers

def _is_exact(number: Any) -> bool:
    """True for ints, Fractions and exact SymPy numbers/expressions (no Float inside)."""
    if isinstance(number, bool):
        return True
    if isinstance(number, numbers.Rational):
        return True
    if isinstance(number, sympy.Basic):
        return not number.has(sympy.Float)
    return False


def _one_like(value: Any) -> Any:
    """The number 1 in the arithmetic of ``value`` (float 1.0, mpf(1), SymPy 1)."""
    if isinstance(value, sympy.Basic):
        return sympy.Integer(1)
    try:
        return value ** 0
    except TypeError:  # pragma: no cover - exotic number types
        return 1


@dataclass(frozen=True, eq=False)
class ChannelParts:
    """A value that differs between groups of channels, as a concat makes it: in channel order,
    ``counts[i]`` of every ``sum(counts)`` channels carry ``values[i]`` (a float, an mpmath number,
    a SymPy expression, ...; never itself a ``ChannelParts``: nested concats flatten).

    Only the proportions ``counts[i] / sum(counts)`` matter.  :func:`channel_average` gives the
    value of the layer (what a linear layer reading it, and the walker's results, see).
    """

    counts: tuple[int, ...]
    values: tuple[Any, ...]

    @property
    def total(self) -> int:
        return sum(self.counts)

    def map(self, fn: Callable[[Any], Any]) -> "ChannelParts":
        """``fn`` applied to the value of every part (a layer acting on each channel alone)."""
        return ChannelParts(self.counts, tuple(fn(v) for v in self.values))

    def average(self) -> Any:
        """``sum counts[i] * values[i] / sum(counts)``: exact for SymPy values and Fractions, at
        the working precision for mpmath ones (the counts are ints, no rounded ``n_i / N``)."""
        if any(isinstance(v, sympy.Basic) for v in self.values):
            total = self.total
            return _combine_symbolic([(sympy.Rational(n, total), v) for n, v in zip(self.counts, self.values)])
        # sum(n_i * y_i) / N: multiplying the value by an int first keeps SymPy exact and mpmath at
        # its working precision (n_i / N as a Python float would round)
        out = None
        for n, v in zip(self.counts, self.values):
            term = v * n
            out = term if out is None else out + term
        return out / self.total


def channel_average(value: Any) -> Any:
    """The value of a layer: the average over its channels of a :class:`ChannelParts` value;
    any other value is the same in every channel and is returned as it is."""
    return value.average() if isinstance(value, ChannelParts) else value


def node_value(ctx: PropagationContext, node: Hashable, inputs: Sequence[tuple[Hashable, Any]]) -> Any:
    """The value of ``node`` from ``[(predecessor, value), ...]`` by its kind's rule.  A kind that
    is not ``channelwise`` gets channel averages in place of :class:`ChannelParts` inputs."""
    kind = KINDS[ctx.graph.nodes[node]["kind"]]
    if not kind.channelwise:
        inputs = [(p, channel_average(v)) for p, v in inputs]
    return kind.rule(ctx, node, inputs)


def _channel_by_channel(combine: Callable[[Sequence[tuple[Hashable, Any]]], Any],
                        inputs: Sequence[tuple[Hashable, Any]]) -> Any:
    """``combine`` applied channel by channel to inputs of which some are :class:`ChannelParts`.

    The inputs' partitions are refined to their common one: each input's parts cover consecutive
    channel intervals, scaled to a common number of channels (the lcm of their totals).  A
    weighted sum adds its inputs channel by channel, so they have one width in the network; two
    concats whose channel counts sum differently (``{a: 1, b: 1}`` beside ``{c: 32, d: 32}``) can
    only give them in different units, and their proportions are what line their channels up.
    """
    totals = [v.total for _, v in inputs if isinstance(v, ChannelParts)]
    width = math.lcm(*totals)
    # per input: [(end of the part, in channels of `width`), value), ...]
    layouts = []
    cuts = {width}
    for _, value in inputs:
        if isinstance(value, ChannelParts):
            scale, end, layout = width // value.total, 0, []
            for n, v in zip(value.counts, value.values):
                end += n * scale
                layout.append((end, v))
                cuts.add(end)
        else:
            layout = [(width, value)]
        layouts.append(layout)
    counts, values = [], []
    position = [0] * len(inputs)
    start = 0
    for cut in sorted(cuts):
        parts_here = []
        for i, (pred, _) in enumerate(inputs):
            while layouts[i][position[i]][0] < cut:  # the part covering channels [start, cut)
                position[i] += 1
            parts_here.append((pred, layouts[i][position[i]][1]))
        counts.append(cut - start)
        values.append(combine(parts_here))
        start = cut
    return ChannelParts(tuple(counts), tuple(values))


def _pass_single(ctx: PropagationContext, node: Hashable, inputs: Sequence[tuple[Hashable, Any]]) -> Any:
    return inputs[0][1]


def _activation_rule(ctx: PropagationContext, node: Hashable, inputs: Sequence[tuple[Hashable, Any]]) -> Any:
    # an elementwise activation acts on each channel alone: after a concat, on each part's value
    value = inputs[0][1]
    if isinstance(value, ChannelParts):
        return value.map(lambda y: ctx.activation_rule(node, y))
    return ctx.activation_rule(node, value)


def _combine_symbolic(terms: Sequence[tuple[Any, Any]]) -> sympy.Expr:
    """``sum c_i * v_i`` for SymPy values, with the factors common to every ``v_i`` pulled out.

    Residual networks feed one value into both branches of a sum; SymPy would distribute the
    coefficients and copy that value into every term, doubling the expression per block.  Pulling
    out the shared factor keeps e.g. a ResNet slope as a product of per-block factors
    ``x * (w**2 + (1 - w**2) * s**3)``, linear in the depth.
    """
    values = [sympy.sympify(v) for _, v in terms]
    powers = [v.as_powers_dict() for v in values]
    common: dict[sympy.Expr, sympy.Expr] = {}
    for base, exp in powers[0].items():
        if base.is_Number or not exp.is_Rational or exp <= 0:
            continue
        exps = [pw.get(base) for pw in powers[1:]]
        if all(e is not None and e.is_Rational and e > 0 for e in exps):
            common[base] = min([exp, *exps])
    factor = sympy.Mul(*[b**e for b, e in common.items()])
    return factor * sympy.Add(*[sympy.sympify(c) * (v / factor) for (c, _), v in zip(terms, values)])


def _in_arithmetic_of(coefficient: Any, value: Any) -> Any:
    """An exact SymPy coefficient (a weight squared) as a number of ``value``'s arithmetic.

    ``sympy.Rational(1, 2) * 0.3`` is a SymPy Float, so a float walk through exact weights (the
    default ones of ``multi_branch``, ``Rational`` shortcut weights) would hand SymPy Floats to
    the next activation rule, where numpy maps fail (``np.arccos(sympy.Float(0.3))``), and an
    mpmath walk would turn into SymPy Floats likewise.  Floats (and numpy floats) get a float
    coefficient, mpmath numbers one at their context's working precision; ints and Fractions
    keep the exact SymPy one.  ``Fraction`` and ``Decimal`` coefficients (hand-set weights) are
    converted likewise: ``Fraction(9, 25) * numpy_array`` is an array of dtype object, not
    float64, and ``Decimal("0.36") * 0.3`` raises a TypeError.
    """
    if isinstance(value, (sympy.Basic, numbers.Rational)):
        return coefficient
    if isinstance(coefficient, decimal.Decimal):
        coefficient = sympy.Rational(*coefficient.as_integer_ratio())  # exact
    elif (isinstance(coefficient, numbers.Rational) and not isinstance(coefficient, (numbers.Integral, sympy.Basic))):
        coefficient = sympy.Rational(coefficient.numerator, coefficient.denominator)
    if not isinstance(coefficient, sympy.Basic) or coefficient.free_symbols:
        return coefficient
    context = getattr(value, "context", None)
    if type(value).__module__.startswith("mpmath") and context is not None:
        return context.convert(sympy.N(coefficient, context.dps + 5))
    return float(coefficient)


def _weighted_sum_rule(ctx: PropagationContext, node: Hashable, inputs: Sequence[tuple[Hashable, Any]]) -> Any:
    if any(isinstance(v, ChannelParts) for _, v in inputs):
        return _channel_by_channel(lambda parts: _weighted_sum_rule(ctx, node, parts), inputs)
    if any(isinstance(v, sympy.Basic) for _, v in inputs):
        return _combine_symbolic([(ctx.graph.edges[p, node]["weight"] ** 2, v) for p, v in inputs])
    total = None
    for pred, value in inputs:
        w = ctx.graph.edges[pred, node]["weight"]
        term = _in_arithmetic_of(w**2, value) * value
        total = term if total is None else total + term
    return total


def _concat_rule(ctx: PropagationContext, node: Hashable, inputs: Sequence[tuple[Hashable, Any]]) -> Any:
    """The parts ``(n_i, y_i)``: the channels of input ``i`` keep its value ``y_i``.  A
    :class:`ChannelParts` input is split in proportion to its own parts (nested concats flatten)."""
    if not ctx.channel_parts:
        return ChannelParts(tuple(int(ctx.graph.edges[p, node]["channels"]) for p, _ in inputs),
                            tuple(channel_average(v) for _, v in inputs)).average()
    nested = [v.total for _, v in inputs if isinstance(v, ChannelParts)]
    scale = math.lcm(*nested) if nested else 1
    counts: list[int] = []
    values: list[Any] = []
    for pred, value in inputs:
        # int(): channels given as SymPy Integers would turn a float walk into SymPy Floats
        # (numpy maps then fail on them)
        n = int(ctx.graph.edges[pred, node]["channels"])
        if isinstance(value, ChannelParts):
            # its parts are proportions of the n channels it gives here
            factor = n * scale // value.total
            counts.extend(m * factor for m in value.counts)
            values.extend(value.values)
        else:
            counts.append(n * scale)
            values.append(value)
    if nested:
        common = math.gcd(*counts)
        counts = [m // common for m in counts]
    return ChannelParts(tuple(counts), tuple(values))


def _normalise_rule(ctx: PropagationContext, node: Hashable, inputs: Sequence[tuple[Hashable, Any]]) -> Any:
    value = inputs[0][1]
    # Per-location normalisation (RMSNorm, F.normalize over the features) rescales every vector to
    # q = 1; cosine similarities (C values), also those of each part of the channels, and hence
    # C-map slopes and curvatures are unchanged.
    if ctx.quantity != "q":
        return value
    if isinstance(value, ChannelParts):
        # one factor for the whole vector: the parts keep their ratios, and average 1
        mean = value.average()
        return value.map(lambda q: q / mean)
    return _one_like(value)


def _check_activation(g: nx.DiGraph, node: Hashable) -> None:
    if g.nodes[node].get("activation") is None:
        raise InvalidGraphError(
            f"activation node {node!r} has no 'activation' attribute; set it to a catalogue name "
            f"(e.g. 'tanh') or a symact Activation: g.nodes[{node!r}]['activation'] = 'tanh'")


def _check_linear(g: nx.DiGraph, node: Hashable) -> None:
    shared = g.nodes[node].get("weights")
    try:
        hash(shared)
    except TypeError:
        raise InvalidGraphError(
            f"linear node {node!r} has a 'weights' attribute of type {type(shared).__name__}, which is not "
            f"hashable; 'weights' names the weight matrix (nodes with equal names apply one matrix), so "
            f"set it to a name such as a string, e.g. g.nodes[{node!r}]['weights'] = 'encoder.fc'") from None


def _check_weighted_sum(g: nx.DiGraph, node: Hashable) -> None:
    weights = {}
    for pred in g.predecessors(node):
        w = g.edges[pred, node].get("weight")
        if w is None:
            raise InvalidGraphError(
                f"weighted_sum {node!r}: edge {pred!r} -> {node!r} has no 'weight'; give every "
                f"incoming edge a weight w_i with sum w_i**2 == 1 (graphs.add_weighted_sum does)")
        weights[pred] = w
    _check_normalised(node, weights)


def _is_bool(flag: Any) -> bool:
    """A Python or NumPy bool (graphs does not import numpy)."""
    return isinstance(flag, bool) or (type(flag).__module__ == "numpy" and type(flag).__name__ in ("bool_", "bool"))


def _is_real_weight(w: Any) -> bool:
    """A real number, or a SymPy expression not known to be non-real (``w`` for a Symbol ``w``).

    Not a bool (Python, NumPy or SymPy's true/false): ``True`` passed as the weight 1, and beside a
    SymPy weight raised SymPy's raw "BooleanAtom not allowed in this context".
    """
    if _is_bool(w):
        return False
    if isinstance(w, sympy.Basic):
        return isinstance(w, sympy.Expr) and w.is_extended_real is not False
    if isinstance(w, numbers.Real):
        return True
    if isinstance(w, (numbers.Complex, str, bytes)) or w is None:
        return False
    try:
        float(w)
    except (TypeError, ValueError):
        return False
    return True


def _is_finite_weight(w: Any) -> bool:
    """False for nan and infinities (float, numpy, mpmath, Decimal or SymPy); True otherwise."""
    if isinstance(w, sympy.Basic):
        return not w.has(sympy.S.NaN, sympy.S.Infinity, sympy.S.NegativeInfinity, sympy.S.ComplexInfinity)
    try:
        return math.isfinite(float(w))
    except (TypeError, ValueError, OverflowError):
        return True


def _check_normalised(node: Hashable, weights: Mapping[Hashable, Any]) -> None:
    if not weights:
        raise InvalidGraphError(f"weighted_sum {node!r} has no inputs; give it at least two, with weights w_i "
                                f"such that sum w_i**2 == 1, e.g. {{a: 0.6, b: 0.8}}")
    # The rule sum w_i**2 k_i is the kernel of sum w_i x_i only for real w_i; a complex weight
    # can pass sum w_i**2 == 1 ((i*sqrt(3))**2 + 2**2) while |w|**2 sums to 7.
    for pred, w in weights.items():
        if not _is_real_weight(w):
            raise InvalidGraphError(
                f"weighted_sum {node!r}: the weight {w!r} of input {pred!r} is not a real number; "
                f"weights are real w_i with sum w_i**2 == 1, e.g. {{a: 0.6, b: 0.8}}")
        # the normalised weights suggested below would be nan for these
        if not _is_finite_weight(w):
            raise InvalidGraphError(
                f"weighted_sum {node!r}: the weight {w!r} of input {pred!r} is not finite; weights are "
                f"finite real w_i with sum w_i**2 == 1, e.g. {{a: 0.6, b: 0.8}}")
    # w * w: a float's w**2 raises OverflowError past 1.3e154 (1e200 gave a bare error); w * w is inf
    square_sum = sum((w * w for w in weights.values()), sympy.Integer(0) if any(
        isinstance(w, sympy.Basic) for w in weights.values()) else 0)
    if all(_is_exact(w) for w in weights.values()):
        ok = sympy.simplify(sympy.sympify(square_sum) - 1) == 0
    else:
        try:
            ok = abs(complex(square_sum) - 1) <= WEIGHT_TOLERANCE
        except TypeError:
            ok = False
    if not ok and all(w == 0 for w in weights.values()):
        raise InvalidGraphError(
            f"weighted_sum {node!r} has every weight 0, so its output is 0 and has no kernel; give at "
            f"least one input a non-zero weight, with sum w_i**2 == 1")
    if not ok:
        fixed = normalised_weights(weights)
        shown = ", ".join(f"{p!r}: {_fmt(w)}" for p, w in weights.items())
        shown_fixed = ", ".join(f"{p!r}: {_fmt(w)}" for p, w in fixed.items())
        raise InvalidGraphError(
            f"weighted_sum {node!r} has weights {{{shown}}} whose squares sum to {_fmt(square_sum)}, "
            f"not 1, so it does not preserve q (an un-normalised add). Use the normalised weights "
            f"w_i / sqrt(sum w_j**2): {{{shown_fixed}}}, i.e. w1*x + w2*y with w1**2 + w2**2 == 1")


def _fmt(w: Any) -> str:
    if isinstance(w, float):
        return f"{w:.12g}"
    return str(w)


def _check_concat(g: nx.DiGraph, node: Hashable) -> None:
    _check_channels(node, {pred: g.edges[pred, node].get("channels") for pred in g.predecessors(node)})


def _check_channels(node: Hashable, channels: Mapping[Hashable, Any]) -> None:
    for pred, n in channels.items():
        if not is_whole_number(n, 1):
            raise InvalidGraphError(
                f"concat {node!r}: edge {pred!r} -> {node!r} needs a positive integer 'channels' "
                f"(got {n!r}); the concatenated kernel is sum (n_i / N) * k_i")


register_kind(NodeKind("input", 0, 0, None, gaussian="breaks",
                       description="the network input; holds the start value"))
register_kind(NodeKind("linear", 1, 1, _pass_single, gaussian="source", check=_check_linear,
                       description="dense layer, or conv with delta initialisation: maps pass unchanged"))
register_kind(NodeKind("pool", 1, 1, _pass_single, channelwise=True,
                       description="average pooling (over positions, per channel): passes the per-position value "
                                   "(exact for positions carrying one kernel; see graphs.graph, Pools)"))
register_kind(NodeKind("activation", 1, 1, _activation_rule, gaussian="breaks", check=_check_activation,
                       channelwise=True,
                       description="elementwise activation: applies the walker's per-node rule to each channel part"))
register_kind(NodeKind("weighted_sum", 2, None, _weighted_sum_rule, check=_check_weighted_sum, channelwise=True,
                       description="sum_i w_i * x_i with sum w_i**2 == 1: values combine as sum w_i**2 y_i, "
                                   "channel by channel"))
register_kind(NodeKind("concat", 2, None, _concat_rule, check=_check_concat, channelwise=True,
                       description="channel concatenation: the channels of input i, n_i of N, keep its value y_i "
                                   "(the layer's value is sum (n_i/N) y_i)"))
register_kind(NodeKind("normalise", 1, 1, _normalise_rule, channelwise=True,
                       description="per-location normalisation: q -> 1 (on average over the channels), C values pass"))
register_kind(NodeKind("output", 1, 1, _pass_single, gaussian="transparent",
                       description="the network output"))


# --------------------------------------------------------------------------- construction

def new_graph(**graph_attrs: Any) -> nx.DiGraph:
    """An empty network graph (a ``networkx.DiGraph``) with the given graph attributes."""
    g = nx.DiGraph()
    g.graph.update(graph_attrs)
    return g


def add_node(g: nx.DiGraph, name: Hashable, kind: str, *inputs: Hashable, **attrs: Any) -> Hashable:
    """Add node ``name`` of ``kind`` fed by ``inputs`` (edges ``input -> name``); returns ``name``.

    Use :func:`add_weighted_sum` and :func:`add_concat` for the kinds with edge attributes.
    """
    if kind not in KINDS:
        raise InvalidGraphError(f"unknown node kind {kind!r}; known kinds: {sorted(KINDS)} "
                                f"(register new ones with graphs.register_kind)")
    if name in g:
        raise InvalidGraphError(f"node {name!r} already exists; node names must be unique")
    for pred in inputs:
        if pred not in g:
            raise InvalidGraphError(f"input {pred!r} of {name!r} is not a node yet; add it first")
    g.add_node(name, kind=kind, **attrs)
    for pred in inputs:
        g.add_edge(pred, name)
    return name


def add_weighted_sum(g: nx.DiGraph, name: Hashable, weights: Mapping[Hashable, Any], **attrs: Any) -> Hashable:
    """Add a ``weighted_sum`` node computing ``sum_i weights[i] * i``; squares must sum to 1."""
    _check_normalised(name, weights)
    add_node(g, name, "weighted_sum", *weights, **attrs)
    for pred, w in weights.items():
        g.edges[pred, name]["weight"] = w
    return name


def add_concat(g: nx.DiGraph, name: Hashable, channels: Mapping[Hashable, int], **attrs: Any) -> Hashable:
    """Add a ``concat`` node joining its inputs' ``channels[i]`` channels each."""
    _check_channels(name, channels)  # before adding, so a corrected call can reuse the name
    add_node(g, name, "concat", *channels, **attrs)
    for pred, n in channels.items():
        g.edges[pred, name]["channels"] = n
    return name


def edge_weights(g: nx.DiGraph, node: Hashable) -> dict[Hashable, Any]:
    """``{predecessor: weight}`` of a weighted_sum node."""
    _require_kind(g, node, "weighted_sum", "edge_weights")
    return {p: g.edges[p, node]["weight"] for p in g.predecessors(node)}


def edge_channels(g: nx.DiGraph, node: Hashable) -> dict[Hashable, int]:
    """``{predecessor: channels}`` of a concat node."""
    _require_kind(g, node, "concat", "edge_channels")
    return {p: g.edges[p, node]["channels"] for p in g.predecessors(node)}


def _require_kind(g: nx.DiGraph, node: Hashable, kind: str, what: str) -> None:
    if node not in g:
        raise InvalidGraphError(f"{what}: the graph has no node {node!r}")
    if g.nodes[node].get("kind") != kind:
        raise InvalidGraphError(f"{what}: node {node!r} is a {g.nodes[node].get('kind')!r} node, not a {kind!r} "
                                f"node; only {kind} nodes carry {'weights' if kind == 'weighted_sum' else 'channels'} "
                                "on their in-edges")


def normalised_weights(weights: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
    """``w_i / sqrt(sum_j w_j**2)``: exact for SymPy/int weights, float otherwise.

    >>> normalised_weights({"a": 1, "b": 1})
    {'a': sqrt(2)/2, 'b': sqrt(2)/2}
    """
    if all(_is_exact(w) for w in weights.values()):
        norm = sympy.sqrt(sum(sympy.sympify(w) ** 2 for w in weights.values()))
        # no nsimplify: it matches a float approximation to a "simple" number, which turned
        # {a: 1, b: 1/1000} into b = 18*2**(5/18)*3**(7/9)*... and {a: 1, b: 10**-20} into b = 0
        return {p: sympy.sympify(w) / norm if norm != 0 else w for p, w in weights.items()}
    if any(isinstance(w, sympy.Basic) and w.free_symbols for w in weights.values()):
        # a symbol beside a float ({a: w, b: 0.5}): float(w) would raise
        norm = sympy.sqrt(sum(sympy.sympify(w) ** 2 for w in weights.values()))
        return {p: sympy.sympify(w) / norm for p, w in weights.items()}
    # hypot scales: the sum of squares overflowed for 1e200 (OverflowError) and underflowed to 0 for 1e-200
    norm = math.hypot(*(float(w) for w in weights.values()))
    return {p: float(w) / norm if norm else float(w) for p, w in weights.items()}


# --------------------------------------------------------------------------- queries

def _nodes_of_kind(g: nx.DiGraph, kind: str) -> list[Hashable]:
    return [n for n, k in g.nodes(data="kind") if k == kind]


def activation_nodes(g: nx.DiGraph) -> list[Hashable]:
    """Activation nodes in topological order (ties broken by insertion order)."""
    if not nx.is_directed_acyclic_graph(g):
        validate(g)  # names the cycle (NetworkXUnfeasible says only that there is one)
    return [n for n in nx.topological_sort(g) if g.nodes[n].get("kind") == "activation"]


def input_node(g: nx.DiGraph) -> Hashable:
    """The single input node (raises InvalidGraphError unless there is exactly one)."""
    found = _nodes_of_kind(g, "input")
    if len(found) != 1:
        raise InvalidGraphError(
            f"a network graph needs exactly one input node, found {len(found)}: {found}; "
            f"feed several data inputs through one input node and a concat if needed")
    return found[0]


def output_node(g: nx.DiGraph) -> Hashable:
    """The single output node (raises InvalidGraphError unless there is exactly one)."""
    found = _nodes_of_kind(g, "output")
    if len(found) != 1:
        raise InvalidGraphError(
            f"a network graph needs exactly one output node, found {len(found)}: {found}; "
            f"join several heads with a weighted_sum or concat before one output node")
    return found[0]


# --------------------------------------------------------------------------- validation

def validate(g: nx.DiGraph) -> None:
    """Raise :class:`~symact.errors.InvalidGraphError` unless ``g`` is a well-formed network graph.

    Checks, in order: a simple ``DiGraph``; every node has a known ``kind``; no cycles; exactly one
    input and one output; every node is reachable from the input and reaches the output;
    in-degrees fit each kind; kind attributes (activation set, weighted-sum weights with
    ``sum w_i**2 == 1`` -- exactly for SymPy/int weights, to ``WEIGHT_TOLERANCE`` for floats --
    and positive integer concat channels); and every activation's input is a Gaussian
    pre-activation, i.e. every path back from it through pool/normalise/weighted_sum/concat nodes
    meets a linear layer before another activation or the input.

    That last rule is what makes the kernel-map composition exact in the wide limit.  Post-
    activation (ResNet V1) sums mix an activation output into the next activation's input; a graph
    that knowingly does so sets ``g.graph["preactivations"] = "mixed"`` (a traced model:
    ``graphs.from_torch(model, x, preactivations="mixed")``), and then each activation
    only needs at least one linear-fed branch (the DKS package's convention for V1 networks).

    Every pair of a weighted sum's inputs must be uncorrelated in the wide limit (the sum's rule
    drops cross terms): one of the two must be a combination of linear-layer outputs that the
    other does not depend on, as a residual branch ending in a linear layer is.  A graph used as a
    formal composition of maps (tests of the walker itself) can set
    ``g.graph["assume_uncorrelated_sums"] = True`` to skip that check.
    """
    if not isinstance(g, nx.DiGraph) or g.is_multigraph():
        raise InvalidGraphError(f"a network graph is a networkx.DiGraph, not {type(g).__name__}")
    if g.number_of_nodes() == 0:
        raise InvalidGraphError("the graph is empty; build one with graphs.mlp(...) or graphs.add_node")
    # both marks relax a check, so a misspelt value must not pass for one: "Mixed" was read as
    # "gaussian", and the string "False" (truthy) switched the correlated-sum check off
    preactivations, uncorrelated = g.graph.get("preactivations"), g.graph.get("assume_uncorrelated_sums")
    if preactivations not in (None, "gaussian", "mixed"):
        raise InvalidGraphError(f"g.graph['preactivations'] is {preactivations!r}; it is 'gaussian' (the default: "
                                f"every activation input is a linear-fed Gaussian pre-activation) or 'mixed' "
                                f"(post-activation sums, as in ResNet V1)")
    if uncorrelated is not None and not isinstance(uncorrelated, bool):
        raise InvalidGraphError(f"g.graph['assume_uncorrelated_sums'] is {uncorrelated!r}; it is True (skip the "
                                f"check that a weighted sum's inputs are uncorrelated) or False (the default)")
    for node, kind in g.nodes(data="kind"):
        if kind not in KINDS:
            raise InvalidGraphError(
                f"node {node!r} has kind {kind!r}; known kinds: {sorted(KINDS)} "
                f"(set g.nodes[{node!r}]['kind'] or register the kind with graphs.register_kind)")
    if not nx.is_directed_acyclic_graph(g):
        cycle = nx.find_cycle(g)
        path = " -> ".join(repr(u) for u, _ in cycle) + f" -> {cycle[0][0]!r}"
        raise InvalidGraphError(f"the graph has a cycle {path}; a feed-forward network must be acyclic "
                                f"(remove the edge that feeds back)")
    source = input_node(g)
    sink = output_node(g)
    if g.out_degree(sink) != 0:
        raise InvalidGraphError(f"output node {sink!r} feeds {list(g.successors(sink))}; "
                                f"the output must be the last node")
    reachable = nx.descendants(g, source) | {source}
    unreachable = [n for n in g if n not in reachable]
    if unreachable:
        raise InvalidGraphError(f"nodes {unreachable} are not reachable from the input {source!r}; "
                                f"connect them or remove them")
    reaching = nx.ancestors(g, sink) | {sink}
    dead = [n for n in g if n not in reaching]
    if dead:
        raise InvalidGraphError(f"nodes {dead} do not reach the output {sink!r} (dead branches); "
                                f"connect them or remove them")
    for node, kind in g.nodes(data="kind"):
        spec = KINDS[kind]
        degree = g.in_degree(node)
        if degree < spec.min_inputs or (spec.max_inputs is not None and degree > spec.max_inputs):
            wanted = (f"exactly {spec.min_inputs}" if spec.max_inputs == spec.min_inputs
                      else f"at least {spec.min_inputs}" + (f" and at most {spec.max_inputs}"
                                                           if spec.max_inputs is not None else ""))
            raise InvalidGraphError(
                f"{kind} node {node!r} has {degree} input(s) {list(g.predecessors(node))}; a {kind} node "
                f"takes {wanted}" + (" (combine several inputs with a weighted_sum or concat first)"
                                     if spec.max_inputs == 1 else ""))
    for node, kind in g.nodes(data="kind"):
        if KINDS[kind].check is not None:
            KINDS[kind].check(g, node)
    _check_gaussian_preactivations(g)
    if not g.graph.get("assume_uncorrelated_sums", False):
        _check_uncorrelated_sum_inputs(g)


def _check_gaussian_preactivations(g: nx.DiGraph) -> None:
    mixed = g.graph.get("preactivations", "gaussian") == "mixed"
    # gaussian[n]: n's output is a (wide-limit) Gaussian pre-activation; some[n]: at least one
    # linear-fed branch reaches n (the relaxed rule for post-activation sums).
    gaussian: dict[Hashable, bool] = {}
    some: dict[Hashable, bool] = {}
    for node in nx.topological_sort(g):
        spec = KINDS[g.nodes[node]["kind"]]
        preds = list(g.predecessors(node))
        if spec.gaussian == "source":
            gaussian[node] = some[node] = True
        elif spec.gaussian == "breaks":
            gaussian[node] = some[node] = False
        else:
            gaussian[node] = bool(preds) and all(gaussian[p] for p in preds)
            some[node] = any(some[p] for p in preds)
        if g.nodes[node]["kind"] == "activation":
            (pred,) = preds
            if gaussian[pred] or (mixed and some[pred]):
                continue
            raise InvalidGraphError(
                f"activation {node!r} is not preceded by a linear layer: its input {pred!r} "
                f"carries {'the network input' if _reaches_kind(g, pred, 'input') else 'another activation'} "
                f"without a linear (dense/conv) layer in between, so its pre-activations are not "
                f"Gaussian and kernel maps do not compose; insert a linear node before {node!r}"
                + ("" if mixed or not some[pred] else
                   f", or, for a post-activation residual sum as in ResNet V1 (a linear branch added to an "
                   f"activation's output), mark the graph g.graph['preactivations'] = 'mixed' "
                   f"(graphs.from_torch(model, x, preactivations='mixed')): kernel maps then compose as if "
                   f"{pred!r} were Gaussian, the DKS convention for such networks"))


def _check_uncorrelated_sum_inputs(g: nx.DiGraph) -> None:
    """A weighted sum's rule q = sum w_i**2 q_i (and the same for C values) drops the cross terms
    w_i w_j E[x_i x_j], so it needs every pair of inputs uncorrelated in the wide limit.  That holds
    when one of the two is a Gaussian pre-activation (a combination of linear-layer outputs,
    zero-mean) whose linear layers the other input does not depend on: their weights are drawn
    independently of everything the other computes.  ResNet shortcuts (x + linear(...)) pass;
    0.6*tanh(z) + 0.8*relu(z) on a shared z does not (E[tanh(z) relu(z)] != 0), nor does
    linear(x) + pool(linear(x)) (the same weights on both sides), nor two calls of one weight matrix
    (linear nodes with the same ``weights`` attribute) on different inputs.
    """
    # Every query below is answered by walking back from a node, never by sets of everything
    # upstream of every node: those grow with the depth (a ResNet's sums each depend on all earlier
    # layers), which made validation quadratic (1.3 s for a ResNet of 400 blocks, 2,000 nodes).
    order = list(nx.topological_sort(g))
    index = {n: i for i, n in enumerate(order)}
    # gaussian[n]: n is a combination of linear-layer outputs (a zero-mean Gaussian pre-activation)
    gaussian: dict[Hashable, bool] = {}
    # holders[key]: the linear nodes applying the weight matrix key (see _weights_key)
    holders: dict[tuple, list] = {}
    for node in order:
        spec = KINDS[g.nodes[node]["kind"]]
        preds = list(g.predecessors(node))
        if spec.gaussian == "source":
            gaussian[node] = True
            holders.setdefault(_weights_key(g, node), []).append(node)
        else:
            gaussian[node] = spec.gaussian != "breaks" and bool(preds) and all(gaussian[p] for p in preds)

    def depends_on(b: Hashable, targets: set) -> bool:
        """Whether ``b`` is one of ``targets`` or depends on one of them (an ancestor): the walk back
        stops at nodes earlier in the topological order than every target."""
        if b in targets:
            return True
        lowest = min(index[t] for t in targets)
        stack, seen = [b], {b}
        while stack:
            for p in g.predecessors(stack.pop()):
                if p in seen or index[p] < lowest:
                    continue
                if p in targets:
                    return True
                seen.add(p)
                stack.append(p)
        return False

    def independent_zero_mean(a: Hashable, b: Hashable) -> bool:
        """``a`` is a zero-mean Gaussian pre-activation built from weight matrices ``b`` does not
        depend on."""
        if not gaussian[a]:
            return False
        # a combination of linear outputs depends on at least one linear layer, which every
        # descendant of it depends on too
        if depends_on(b, {a}):
            return False
        sources, stack, seen = set(), [a], {a}
        while stack:  # the linear nodes a is a combination of, through transparent nodes
            n = stack.pop()
            if KINDS[g.nodes[n]["kind"]].gaussian == "source":
                sources.add(n)
                continue
            for p in g.predecessors(n):
                if p not in seen:
                    seen.add(p)
                    stack.append(p)
        targets = {t for key in {_weights_key(g, s) for s in sources} for t in holders[key]}
        return not depends_on(b, targets)

    for node, kind in g.nodes(data="kind"):
        if kind != "weighted_sum":
            continue
        preds = list(g.predecessors(node))
        for i, a in enumerate(preds):
            for b in preds[i + 1:]:
                if independent_zero_mean(a, b) or independent_zero_mean(b, a):
                    continue
                shared = sorted(str(n) for n in g if g.nodes[n].get("weights") is not None
                                and _weights_key(g, n) in _upstream_weights(g, a) & _upstream_weights(g, b))
                if shared:
                    raise InvalidGraphError(
                        f"weighted_sum {node!r} adds {a!r} and {b!r}, which both depend on the linear layers "
                        f"{shared}, one weight matrix W applied more than once (a module called twice, or tied "
                        f"weights): W u and W v are correlated in a wide network (covariance <u, v>/n), so the "
                        f"sum's kernel has cross terms the rule sum w_i**2 k_i leaves out; give each call its "
                        f"own layer (untied weights)")
                raise InvalidGraphError(
                    f"weighted_sum {node!r} adds {a!r} and {b!r}, which are correlated in a wide random "
                    f"network (neither is a linear layer's output that the other does not depend on), so "
                    f"the sum's kernel has cross terms the rule sum w_i**2 k_i leaves out; put a linear "
                    f"(dense/conv) layer at the end of one of the two branches, as a residual branch has")


def _weights_key(g: nx.DiGraph, node: Hashable) -> tuple:
    """The weight matrix a linear node applies: its ``weights`` attribute, shared by the nodes that
    apply one matrix, or else the node itself."""
    shared = g.nodes[node].get("weights")
    return ("node", node) if shared is None else ("weights", shared)


def _upstream_weights(g: nx.DiGraph, node: Hashable) -> set:
    """The weight matrices of the linear nodes ``node`` depends on (itself included)."""
    return {_weights_key(g, n) for n in nx.ancestors(g, node) | {node}
            if KINDS[g.nodes[n]["kind"]].gaussian == "source"}


def _reaches_kind(g: nx.DiGraph, node: Hashable, kind: str) -> bool:
    """True if walking back from ``node`` through non-linear, non-activation nodes meets ``kind``."""
    stack, seen = [node], set()
    while stack:
        n = stack.pop()
        if n in seen:
            continue
        seen.add(n)
        k = g.nodes[n]["kind"]
        if k == kind:
            return True
        if k in ("linear", "activation"):
            continue
        stack.extend(g.predecessors(n))
    return False
