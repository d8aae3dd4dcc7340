"""Independent references for tests: exact evaluation through SymPy/mpmath, torch built-ins."""

from __future__ import annotations

import importlib
import math
from fractions import Fraction

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


def least_one_sided_slope(expr, point, wrt=None, at=None) -> float:
    """The minimum-norm subgradient of ``expr`` in ``wrt`` (default symact.x) at ``wrt = point``, the other
    symbols at their values in ``at``, from its one-sided difference quotients at h = +-1e-30 evaluated at
    50 digits (no derivative code): the lesser in magnitude when they have one sign, 0 otherwise."""
    wrt = symact.x if wrt is None else wrt
    at = {**(at or {}), wrt: point}
    f0 = expr.xreplace(at)
    quotients = [float(sympy.N((expr.xreplace({**at, wrt: point + h}) - f0) / h, 50))
                 for h in (sympy.Rational(1, 10**30), -sympy.Rational(1, 10**30))]
    return min(quotients, key=abs) if quotients[0] * quotients[1] > 0 else 0.0


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


class ChannelValues:
    """The value of every channel of every node, with ``value(source) = start`` (``source``: the
    input by default; it must dominate the nodes asked about); written independently of
    graphs.graph and graphs.walker, channel by channel.

    A node's channels are the relative positions ``t`` in ``[0, 1)`` (the channel ``j`` of ``m``
    sits at ``[j/m, (j+1)/m)``), and ``value(node, t)`` is what its channel at ``t`` carries.  A
    concat puts input ``i`` at the positions ``[S_i/N, (S_i + n_i)/N)`` (``S_i`` the channels before
    it); an activation applies ``rule`` to its channel; a weighted sum adds channel by channel;
    pool and normalise act per channel (normalise divides Q values by their mean,
    quantity="q"); a linear layer and the output mix all channels: every output channel carries
    the mean over the input's channels, the integral of a step function whose steps ``cuts``
    lists.
    """

    def __init__(self, g, rule, start, source=None, quantity="c"):
        self.g, self.rule, self.start, self.quantity = g, rule, start, quantity
        self.source = source if source is not None else next(n for n in g if g.nodes[n]["kind"] == "input")
        self._values, self._means, self._cuts = {}, {}, {}

    def _preds(self, node):
        return list(self.g.predecessors(node))

    def _places(self, node):
        """(input, first position, fraction of the positions) of each input of a concat."""
        preds = self._preds(node)
        counts = [Fraction(int(self.g.edges[p, node]["channels"])) for p in preds]
        total, first, out = sum(counts), Fraction(0), []
        for p, n in zip(preds, counts):
            out.append((p, first, n / total))
            first += n / total
        return out

    def cuts(self, node):
        """The positions in (0, 1) where ``value(node, t)`` may change."""
        if node in self._cuts:
            return self._cuts[node]
        kind = self.g.nodes[node]["kind"]
        if node == self.source or kind in ("linear", "output"):
            out = set()
        elif kind == "concat":
            out = set()
            for p, first, size in self._places(node):
                out |= {first + size * t for t in self.cuts(p)}
                if first:
                    out.add(first)
        else:
            out = set().union(*(self.cuts(p) for p in self._preds(node)))
        self._cuts[node] = out
        return out

    def mean(self, node):
        """The mean over ``node``'s channels."""
        if node not in self._means:
            steps = [Fraction(0), *sorted(self.cuts(node)), Fraction(1)]
            terms = [(b - a, self.value(node, (a + b) / 2)) for a, b in zip(steps, steps[1:])]
            if any(isinstance(v, sympy.Basic) for _, v in terms):
                mean = sympy.Add(*[sympy.Rational(w.numerator, w.denominator) * v for w, v in terms])
            else:  # in the values' arithmetic: an integer numerator over a common denominator
                den = math.lcm(*(w.denominator for w, _ in terms))
                mean = None
                for w, v in terms:
                    term = v * int(w * den)
                    mean = term if mean is None else mean + term
                mean = mean / den
            self._means[node] = mean
        return self._means[node]

    def value(self, node, t):
        """What the channel of ``node`` at position ``t`` (a Fraction in [0, 1)) carries."""
        key = (node, t)
        if key in self._values:
            return self._values[key]
        g, kind = self.g, self.g.nodes[node]["kind"]
        preds = self._preds(node)
        if node == self.source:
            out = self.start
        elif kind == "activation":
            out = self.rule(node, self.value(preds[0], t))
        elif kind == "weighted_sum":
            out = None
            for p in preds:
                term = g.edges[p, node]["weight"] ** 2 * self.value(p, t)
                out = term if out is None else out + term
        elif kind == "concat":
            p, first, size = next((p, a, n) for p, a, n in self._places(node) if a <= t < a + n)
            out = self.value(p, (t - first) / size)
        elif kind in ("linear", "output"):
            out = self.mean(preds[0])
        elif kind == "normalise" and self.quantity == "q":
            out = self.value(preds[0], t) / self.mean(preds[0])
        else:  # pool, normalise of C values
            out = self.value(preds[0], t)
        self._values[key] = out
        return out


def composed_value(g, rule, start, quantity="c"):
    """The output's value (the mean over its channels) from :class:`ChannelValues`."""
    out = next(n for n in g if g.nodes[n]["kind"] == "output")
    return ChannelValues(g, rule, start, quantity=quantity).mean(out)


def subnetworks(g, rule, start, single_exit=True):
    """Every sub-network of a network graph as (u, v, S(u, v)), enumerating all pairs; written
    independently of graphs.walker (reachability by networkx, values composed channel by channel
    by :class:`ChannelValues`, S(u, v) the mean over v's channels).

    (u, v), u != v, is one when u dominates v and, with ``single_exit``, every interior node
    (on a u-to-v path, neither u nor v) has all its successors on u-to-v paths or equal to v:
    one input u (which may also feed e.g. a shortcut) and one output v.  ``rule(node, y)`` is
    applied at activation nodes, to each channel.
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
            out.append((u, v, ChannelValues(g, rule, start, source=u).mean(v)))
    return out


def power_kernel(a, c, odd: bool = False):
    """E[phi(u) phi(v)] for phi = |x|^a (or sign(x)|x|^a with ``odd``), u, v standard normals with correlation c,
    in closed form (mpmath, at the caller's precision): 2^a Gamma((a+1)/2)^2 2F1(-a/2, -a/2; 1/2; c^2) / pi, and
    for the odd one 2^(a+1) c Gamma(a/2 + 1)^2 2F1((1-a)/2, (1-a)/2; 3/2; c^2) / pi."""
    import mpmath

    a, c = mpmath.mpf(a), mpmath.mpf(c)
    if odd:
        return 2 ** (a + 1) / mpmath.pi * c * mpmath.gamma(a / 2 + 1) ** 2 * mpmath.hyp2f1(
            (1 - a) / 2, (1 - a) / 2, mpmath.mpf(3) / 2, c * c)
    return 2**a / mpmath.pi * mpmath.gamma((a + 1) / 2) ** 2 * mpmath.hyp2f1(-a / 2, -a / 2, mpmath.mpf(1) / 2, c * c)
