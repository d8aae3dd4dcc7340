"""Builders for common topologies: MLPs, ResNets (V1/V2, basic/bottleneck), multi-branch nets.

Every builder returns a validated ``networkx.DiGraph`` (see :mod:`graphs.graph`) with readable
node names.  ``activation`` is stored opaquely on every activation node.
"""

from __future__ import annotations

import numbers
from typing import AbstractSet, Any, Mapping, Sequence

import networkx as nx
import sympy

from symact.errors import InvalidGraphError, is_whole_number

from .graph import _is_bool, add_concat, add_node, add_weighted_sum, new_graph, validate

__all__ = ["mlp", "resnet", "multi_branch", "residual_weights"]


def mlp(depth: int, activation: Any = "tanh") -> nx.DiGraph:
    """A vanilla MLP with ``depth`` activation layers:
    ``input -> (linear_i -> activation_i) for i = 1..depth -> linear_{depth+1} -> output``.

    >>> g = mlp(2)
    >>> list(g)
    ['input', 'linear1', 'activation1', 'linear2', 'activation2', 'linear3', 'output']
    """
    if not is_whole_number(depth, 0):
        raise InvalidGraphError(f"depth must be a non-negative int (number of activation layers), not {depth!r}")
    depth = int(depth)
    g = new_graph(builder=f"mlp(depth={depth})")
    prev = add_node(g, "input", "input")
    for i in range(1, depth + 1):
        lin = add_node(g, f"linear{i}", "linear", prev)
        prev = add_node(g, f"activation{i}", "activation", lin, activation=activation)
    head = add_node(g, f"linear{depth + 1}", "linear", prev)
    add_node(g, "output", "output", head)
    validate(g)
    return g


def residual_weights(shortcut_weight: Any) -> tuple[Any, Any]:
    """``(w, sqrt(1 - w**2))``: shortcut and residual-branch weights of a normalised sum.

    Exact for SymPy/int/Fraction weights (``Rational(3, 5) -> (3/5, 4/5)``), float otherwise.

    >>> from fractions import Fraction
    >>> residual_weights(Fraction(3, 5))
    (3/5, 4/5)
    """
    w = shortcut_weight
    if isinstance(w, (bool, str, bytes)):  # float("0.6") would read a string as a number
        raise InvalidGraphError(f"shortcut_weight must be a number in [0, 1], got {w!r}")
    if isinstance(w, (numbers.Rational, sympy.Basic)):
        w = sympy.sympify(w)
        if w.is_extended_real is False or w.has(sympy.S.NaN):  # nan: comparing it raised a raw TypeError
            raise InvalidGraphError(f"shortcut_weight must be a real number in [0, 1], got {w}")
        # a symbol declared negative (or above 1) passed, since only numbers were compared
        if w.is_extended_negative or (w - 1).is_extended_positive or (w.is_number and not (0 <= w <= 1)):
            raise InvalidGraphError(f"shortcut_weight must lie in [0, 1], got {w}")
        return w, sympy.sqrt(1 - w**2)
    try:
        w = float(w)
    except (TypeError, ValueError):
        raise InvalidGraphError(f"shortcut_weight must be a number in [0, 1], got {w!r}") from None
    if not 0.0 <= w <= 1.0:
        raise InvalidGraphError(f"shortcut_weight must lie in [0, 1], got {w}")
    return w, (1.0 - w * w) ** 0.5


_BLOCK_ACTIVATIONS = {("v2", "bottleneck"): 3, ("v2", "basic"): 2, ("v1", "bottleneck"): 2, ("v1", "basic"): 1}


def resnet(blocks: Sequence[int] = (3, 4, 23, 3), variant: str = "v2", block: str = "bottleneck",
           shortcut_weight: Any = 0.6, projection: bool | Sequence[bool] | None = None,
           activation: Any = "relu", stem_pool: bool = True) -> nx.DiGraph:
    """A ResNet graph with weighted shortcuts: each block ends in
    ``weighted_sum(shortcut * w + residual * sqrt(1 - w**2))``.

    * ``variant="v2"`` (pre-activation, He et al. 2016b): stem ``linear -> pool``; a block is
      ``x -> act -> [linear -> act]* -> linear`` (3 activations per bottleneck branch, 2 per basic
      one), the shortcut is ``x``, or with a projection ``linear(act(x))`` taking the
      pre-activated input; after the last block ``act -> pool -> linear -> output``.
    * ``variant="v1"`` (post-activation): stem ``linear -> act -> pool``; a block is
      ``x -> [linear -> act]* -> linear`` (2 activations in a bottleneck branch, 1 in a basic one),
      the shortcut is ``x`` or ``linear(x)``, and an activation follows the sum; head
      ``pool -> linear -> output``.  The post-sum activation sees an activation output through
      the shortcut, so the graph is marked ``preactivations="mixed"`` (see ``graphs.validate``).
    * ``projection``: per stage, whether its first block has a projection shortcut; default
      ``True`` for every stage of a bottleneck net (channels change at every stage start) and
      ``(False, True, True, True)`` for a basic one.
    * ``stem_pool``: an average-pool node after the stem (it passes the per-position kernel maps,
      exact for positions carrying one kernel, see :mod:`graphs.graph`; standard ResNets use max
      pooling there, which is not a supported kind).

    Nodes are named ``"s{stage}b{block}/{part}"``, e.g. ``"s1b0/act_a"``, ``"s1b0/sum"``.

    >>> from graphs import edge_weights
    >>> g = resnet(blocks=(1, 1), block="basic", shortcut_weight=0.6)
    >>> edge_weights(g, "s1b0/sum")
    {'stem/pool': 0.6, 's1b0/linear_b': 0.8}
    """
    if variant not in ("v1", "v2"):
        raise InvalidGraphError(f"variant must be 'v1' or 'v2', not {variant!r}")
    if block not in ("bottleneck", "basic"):
        raise InvalidGraphError(f"block must be 'bottleneck' or 'basic', not {block!r}")
    # a dict or set iterates over its keys in no stage order: {1: 2} was read as blocks (1,)
    if isinstance(blocks, (str, bytes, Mapping, AbstractSet)) or not hasattr(blocks, "__iter__"):
        one_stage = f"blocks=[{blocks!r}] for one stage or " if isinstance(blocks, numbers.Number) else ""
        raise InvalidGraphError(f"blocks must be a sequence of block counts, one per stage, not {blocks!r}; "
                                f"e.g. {one_stage}blocks=(3, 4, 6, 3)")
    blocks = tuple(blocks)
    if not blocks or any(not is_whole_number(b, 1) for b in blocks):
        raise InvalidGraphError(f"blocks must be a non-empty sequence of positive ints, not {blocks!r}")
    blocks = tuple(int(b) for b in blocks)
    if projection is None:
        projection = [True] * len(blocks) if block == "bottleneck" else [i > 0 for i in range(len(blocks))]
    elif isinstance(projection, bool):
        projection = [projection] * len(blocks)
    elif isinstance(projection, (str, bytes, Mapping, AbstractSet)) or not hasattr(projection, "__iter__"):
        raise InvalidGraphError(f"projection must be a bool or one bool per stage, not {projection!r}")
    projection = list(projection)
    if len(projection) != len(blocks):
        raise InvalidGraphError(f"projection needs one flag per stage ({len(blocks)}), got {len(projection)}")
    # a flag is read by truth value: "no" or None would pick a shortcut without a word
    bad = [flag for flag in projection if not _is_bool(flag)]
    if bad:
        raise InvalidGraphError(f"projection flags must be True or False, one per stage, got {bad[0]!r} in "
                                f"{projection!r}")
    projection = [bool(flag) for flag in projection]
    if not _is_bool(stem_pool):
        raise InvalidGraphError(f"stem_pool must be True or False, not {stem_pool!r}")
    w_short, w_res = residual_weights(shortcut_weight)
    n_act = _BLOCK_ACTIVATIONS[variant, block]

    g = new_graph(builder=f"resnet(blocks={tuple(blocks)}, variant={variant!r}, block={block!r}, "
                          f"shortcut_weight={shortcut_weight!r})")
    if variant == "v1":
        g.graph["preactivations"] = "mixed"
    x = add_node(g, "input", "input")
    x = add_node(g, "stem/linear", "linear", x)
    if variant == "v1":
        x = add_node(g, "stem/act", "activation", x, activation=activation)
    if stem_pool:
        x = add_node(g, "stem/pool", "pool", x)

    for stage, count in enumerate(blocks, start=1):
        for j in range(count):
            p = f"s{stage}b{j}/"
            project = j == 0 and projection[stage - 1]
            if variant == "v2":
                pre = add_node(g, p + "act_a", "activation", x, activation=activation)
                shortcut = add_node(g, p + "proj", "linear", pre) if project else x
                h = add_node(g, p + "linear_a", "linear", pre)
                for i in range(1, n_act):
                    h = add_node(g, p + f"act_{'abc'[i]}", "activation", h, activation=activation)
                    h = add_node(g, p + f"linear_{'abc'[i]}", "linear", h)
                x = add_weighted_sum(g, p + "sum", {shortcut: w_short, h: w_res})
            else:
                shortcut = add_node(g, p + "proj", "linear", x) if project else x
                h = add_node(g, p + "linear_a", "linear", x)
                for i in range(1, n_act + 1):
                    h = add_node(g, p + f"act_{'abc'[i - 1]}", "activation", h, activation=activation)
                    h = add_node(g, p + f"linear_{'abc'[i]}", "linear", h)
                s = add_weighted_sum(g, p + "sum", {shortcut: w_short, h: w_res})
                x = add_node(g, p + "act_out", "activation", s, activation=activation)

    if variant == "v2":
        x = add_node(g, "head/act", "activation", x, activation=activation)
    x = add_node(g, "head/pool", "pool", x)
    x = add_node(g, "head/linear", "linear", x)
    add_node(g, "output", "output", x)
    validate(g)
    return g


def multi_branch(branches: Sequence[int] = (0, 1, 2), blocks: int = 1, combine: str = "weighted_sum",
                 weights: Sequence[Any] | None = None, channels: Sequence[int] | None = None,
                 activation: Any = "tanh", head_activation: bool = True) -> nx.DiGraph:
    """A chain of ``blocks`` multi-branch blocks, each with ``len(branches)`` parallel branches.

    Branch ``i`` of a block is ``(act -> linear) * branches[i]`` applied to the block input
    (pre-activation style, so every activation follows a linear layer); ``branches[i] == 0`` is
    an identity shortcut.  Branches are joined by a ``weighted_sum`` (``weights``, default
    ``1/sqrt(len(branches))`` each; must be normalised) or a ``concat`` (``channels``, default
    equal).  Layout: ``input -> linear -> block* -> [act ->] linear -> output``.

    >>> from graphs import edge_channels
    >>> g = multi_branch((0, 2), combine="concat", channels=(32, 96))
    >>> edge_channels(g, "b0/join")
    {'stem/linear': 32, 'b0/br1/linear2': 96}
    """
    if combine not in ("weighted_sum", "concat"):
        raise InvalidGraphError(f"combine must be 'weighted_sum' or 'concat', not {combine!r}")
    if isinstance(branches, (str, bytes, Mapping, AbstractSet)) or not hasattr(branches, "__iter__"):
        raise InvalidGraphError(f"branches must be a sequence of branch depths, one per branch, not "
                                f"{branches!r}; e.g. branches=(0, 1, 2) for a shortcut and two branches")
    branches = tuple(branches)
    if len(branches) < 2 or any(not is_whole_number(b, 0) for b in branches):
        raise InvalidGraphError(f"branches must list at least two non-negative depths, not {branches!r}")
    if not is_whole_number(blocks, 0):
        raise InvalidGraphError(f"blocks must be a non-negative int (number of multi-branch blocks), "
                                f"not {blocks!r}")
    branches, blocks = tuple(int(b) for b in branches), int(blocks)
    if sum(1 for b in branches if b == 0) > 1:
        raise InvalidGraphError("at most one branch may be an identity (depth 0): two identities are one edge")
    # the other join's argument would be ignored without a word: weights scale no concat
    if combine == "concat" and weights is not None:
        raise InvalidGraphError("weights apply to combine='weighted_sum'; a concat joins branches by their "
                                "channels=(n_1, n_2, ...), or pass combine='weighted_sum'")
    if combine == "weighted_sum" and channels is not None:
        raise InvalidGraphError("channels apply to combine='concat'; a weighted_sum joins branches by their "
                                "weights=(w_1, w_2, ...) with sum w_i**2 == 1, or pass combine='concat'")
    if not _is_bool(head_activation):  # read by truth value, "no" would add the activation
        raise InvalidGraphError(f"head_activation must be True or False, not {head_activation!r}")
    for name, given in (("weights", weights), ("channels", channels)):
        if given is not None and (isinstance(given, (str, bytes, Mapping)) or not hasattr(given, "__len__")):
            raise InvalidGraphError(f"{name} must be a sequence with one entry per branch, in the order of branches, "
                                    f"not {given!r}; e.g. {name}={'(0.6, 0.8)' if name == 'weights' else '(32, 96)'} "
                                    f"for two branches")
    m = len(branches)
    if weights is None:
        weights = [sympy.sqrt(sympy.Rational(1, m))] * m
    if channels is None:
        channels = [1] * m
    if len(weights) != m or len(channels) != m:
        raise InvalidGraphError(f"give one weight/channel count per branch ({m})")
    g = new_graph(builder=f"multi_branch(branches={tuple(branches)}, blocks={blocks}, combine={combine!r})")
    x = add_node(g, "input", "input")
    x = add_node(g, "stem/linear", "linear", x)
    for b in range(blocks):
        ends = []
        for i, depth in enumerate(branches):
            h = x
            for layer in range(1, depth + 1):
                h = add_node(g, f"b{b}/br{i}/act{layer}", "activation", h, activation=activation)
                h = add_node(g, f"b{b}/br{i}/linear{layer}", "linear", h)
            ends.append(h)
        if combine == "weighted_sum":
            x = add_weighted_sum(g, f"b{b}/join", dict(zip(ends, weights)))
        else:
            x = add_concat(g, f"b{b}/join", dict(zip(ends, channels)))
    if head_activation:
        x = add_node(g, "head/act", "activation", x, activation=activation)
    x = add_node(g, "head/linear", "linear", x)
    add_node(g, "output", "output", x)
    validate(g)
    return g
