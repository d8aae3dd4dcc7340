"""Independent references for tests: exact evaluation through SymPy/mpmath, torch built-ins."""

from __future__ import annotations

import importlib

import networkx as nx
import sympy

import symact


def exact(expr, point, digits: int = 600):
    """expr at x = point (a decimal string or number), evaluated at ``digits`` working digits.

    SymPy's evalf does not raise its precision for log(1 + tiny), so the working
    precision must itself resolve 1 + exp(-1000) (about 435 digits).
    """
    value = sympy.sympify(expr).xreplace({symact.x: sympy.Rational(str(point))})
    return value.evalf(digits, maxn=2 * digits)


def resolve_torch(act):
    """The PyTorch built-in of a catalogue activation as a callable of one float64 tensor."""
    import torch

    function_name, kwargs = act.torch_builtin
    module_name, _, attr = function_name.rpartition(".")
    function = getattr(importlib.import_module(module_name), attr)
    tensor_kwargs = set(act.torch_spec.tensor_kwargs)

    def call(t):
        kw = {
            key: (torch.tensor([value] if key == "weight" else value, dtype=t.dtype) if key in tensor_kwargs else value)
            for key, value in kwargs.items()
        }
        if function_name.endswith("heaviside"):
            return function(t, kw["values"])
        return function(t, **kw)

    return call


def subnetworks(g, rule, start, single_exit=True):
    """Every sub-network of a network graph as (u, v, S(u, v)), enumerating all pairs; written
    independently of graphs.walker (reachability by networkx, values composed directly).

    (u, v), u != v, is one when u dominates v and, with ``single_exit``, every interior node
    (on a u-to-v path, neither u nor v) has all its successors on u-to-v paths or equal to v:
    one input u (which may also feed e.g. a shortcut) and one output v.  ``rule(node, y)`` is
    applied at activation nodes; weighted sums give sum w**2 y, concats sum (n/N) y.
    """
    source = next(n for n in g if g.nodes[n]["kind"] == "input")
    out = []
    for u in g:
        after_u = nx.descendants(g, u)
        for v in after_u:
            h = g.copy()
            h.remove_node(u)
            if u != source and nx.has_path(h, source, v):
                continue  # u does not dominate v
            inside = after_u & nx.ancestors(g, v)  # the interior: on u -> v paths, not u or v
            if single_exit and any(x not in inside | {v} for w in inside for x in g.successors(w)):
                continue  # an interior node has a second way out (e.g. a shortcut)
            values = {u: start}
            for w in nx.topological_sort(g.subgraph(inside | {u, v})):
                if w == u:
                    continue
                preds = list(g.predecessors(w))
                kind = g.nodes[w]["kind"]
                if kind == "activation":
                    values[w] = rule(w, values[preds[0]])
                elif kind == "weighted_sum":
                    values[w] = sum(g.edges[p, w]["weight"] ** 2 * values[p] for p in preds)
                elif kind == "concat":
                    n_total = sum(g.edges[p, w]["channels"] for p in preds)
                    values[w] = sum(g.edges[p, w]["channels"] * values[p] for p in preds) / n_total
                else:
                    values[w] = values[preds[0]]
            out.append((u, v, values[v]))
    return out
