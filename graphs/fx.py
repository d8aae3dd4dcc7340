"""``from_torch``: trace a PyTorch model with ``torch.fx`` into a network graph.

torch is imported inside :func:`from_torch` only, so ``import graphs`` never needs it.

Mapping (torch op -> node kind):

* ``nn.Linear``, ``nn.Conv1d/2d/3d``, ``F.linear``, ``F.conv*d`` -> ``linear``
* ``nn.AvgPool*d``, ``nn.AdaptiveAvgPool*d``, ``F.avg_pool*d``, ``F.adaptive_avg_pool*d``,
  ``mean`` over spatial dims -> ``pool``
* activation modules and functions (``nn.Tanh``, ``nn.ReLU``, ``F.gelu``, ``torch.tanh``,
  ``x.relu()``, ...) -> ``activation`` with the symact catalogue name as ``activation`` and the
  hyper-parameters as ``activation_params``, keyword arguments for
  ``symact.activation(name, **params)`` (``negative_slope``, ``alpha``, ``beta``, ``a`` for PReLU; a per-channel ``nn.PReLU(n)`` whose
  slopes differ is rejected);
  ``nn.GELU(approximate="tanh")`` is ``"gelu_tanh"``
* any module with an attribute ``activation`` that is not itself a module and that holds no
  linear/conv layer (a generated symact module) -> one ``activation`` node carrying that object
* linear combinations of tensors with constant scalar coefficients (``a*x + b*y``,
  ``torch.add(x, y, alpha=b)``, ``x - y``, ``-x``, ``x / 2``) -> ``weighted_sum`` with those
  weights, which must satisfy ``sum w_i**2 == 1``; a plain ``x + y`` is rejected
* ``torch.cat`` -> ``concat`` with channel counts (sizes along the cat dim) from shape propagation
* ``flatten``, ``reshape``, ``view``, ``squeeze``, ``unsqueeze``, ``contiguous``, ``nn.Flatten``,
  ``nn.Identity``, ``nn.Dropout(p=0)`` -> pass-through (no node)
* ``nn.RMSNorm`` and ``F.normalize`` (per-location normalisation) -> ``normalise``

Anything else raises :class:`~symact.errors.InvalidGraphError` naming the op.
"""

from __future__ import annotations

import inspect
import math
import operator
from dataclasses import dataclass
from typing import Any, Hashable

import networkx as nx

from symact.errors import InvalidGraphError

from .graph import add_concat, add_node, add_weighted_sum, new_graph, validate

__all__ = ["from_torch"]


@dataclass(frozen=True)
class _Combo:
    """A tensor value as a linear combination ``sum coeff * graph_node`` (not yet a node)."""

    terms: tuple[tuple[Hashable, float], ...]
    origin: str  # fx name of the op that produced it, used to name a weighted_sum

    def scaled(self, factor: float, origin: str) -> "_Combo":
        return _Combo(tuple((n, c * factor) for n, c in self.terms), origin)


@dataclass(frozen=True)
class _Const:
    value: float


class _Other:
    """A non-tensor value (a size, a dim) that only feeds shape arguments."""


def _activation_tables():
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    modules = {
        nn.Tanh: ("tanh", ()), nn.ReLU: ("relu", ()), nn.Sigmoid: ("sigmoid", ()),
        nn.SiLU: ("silu", ()), nn.Softplus: ("softplus", ("beta",)),
        nn.ELU: ("elu", ("alpha",)), nn.SELU: ("selu", ()), nn.CELU: ("celu", ("alpha",)),
        nn.LeakyReLU: ("leaky_relu", ("negative_slope",)), nn.Mish: ("mish", ()),
        nn.Softsign: ("softsign", ()), nn.Hardtanh: ("hardtanh", ("min_val", "max_val")),
        nn.ReLU6: ("relu6", ()), nn.Hardsigmoid: ("hardsigmoid", ()), nn.Hardswish: ("hardswish", ()),
        nn.LogSigmoid: ("logsigmoid", ()), nn.Tanhshrink: ("tanhshrink", ()),
        nn.Softshrink: ("softshrink", ("lambd",)), nn.Hardshrink: ("hardshrink", ("lambd",)),
        nn.GELU: ("gelu", ()),  # approximate="tanh" handled below
        nn.PReLU: ("prelu", ()),
    }
    functions = {
        torch.tanh: "tanh", F.tanh: "tanh", torch.relu: "relu", F.relu: "relu",
        torch.sigmoid: "sigmoid", F.sigmoid: "sigmoid", F.silu: "silu", F.softplus: "softplus",
        F.elu: "elu", F.selu: "selu", torch.selu: "selu", F.celu: "celu", F.leaky_relu: "leaky_relu",
        F.mish: "mish", F.softsign: "softsign", F.hardtanh: "hardtanh", F.relu6: "relu6",
        F.hardsigmoid: "hardsigmoid", F.hardswish: "hardswish", F.logsigmoid: "logsigmoid",
        F.tanhshrink: "tanhshrink", F.softshrink: "softshrink", F.hardshrink: "hardshrink",
        F.gelu: "gelu", torch.erf: "erf", torch.special.erf: "erf", torch.sin: "sin", torch.cos: "cos",
        torch.atan: "arctan", torch.arctan: "arctan", torch.exp: "exponential", torch.abs: "abs",
    }
    methods = {"tanh": "tanh", "relu": "relu", "sigmoid": "sigmoid", "erf": "erf", "sin": "sin",
               "cos": "cos", "atan": "arctan", "arctan": "arctan", "exp": "exponential", "abs": "abs"}
    return modules, functions, methods


# Positional parameter names of functional activations that are C builtins (no signature).
_BUILTIN_POSITIONAL = {"softplus": ("beta", "threshold"), "softshrink": ("lambd",), "hardshrink": ("lambd",),
                       "gelu": (), "elu": ("alpha",), "celu": ("alpha",), "leaky_relu": ("negative_slope",),
                       "hardtanh": ("min_val", "max_val")}


def _function_params(fn: Any, name: str, args: tuple, kwargs: dict) -> dict[str, Any]:
    """Numeric/str parameters of a functional activation call (input and inplace dropped)."""
    try:
        arguments = dict(list(inspect.signature(fn).bind(*args, **kwargs).arguments.items())[1:])
    except (TypeError, ValueError):  # a builtin without a signature
        arguments = dict(zip(_BUILTIN_POSITIONAL.get(name, ()), args[1:]))
        arguments.update(kwargs)
    # "threshold" (softplus) is a numerical switch in torch, not a parameter of the formula.
    return {k: v for k, v in arguments.items()
            if k not in ("inplace", "threshold") and isinstance(v, (int, float, str)) and not isinstance(v, bool)}


def _prelu_slope(module: Any, where: str) -> float:
    """The one negative slope of an ``nn.PReLU``; per-channel slopes are several activations."""
    weights = module.weight.detach().flatten()
    if weights.numel() > 1 and not bool((weights == weights[0]).all()):
        raise InvalidGraphError(
            f"{where}: {module!r} has {weights.numel()} per-channel slopes that differ; per-channel PReLU is "
            f"not supported (one graph node carries one activation, and kernel shaping needs the same slope "
            f"on every channel): use nn.PReLU() with one parameter")
    return float(weights[0])


def _propagate_shapes(gm: Any, shape_prop: Any, inputs: tuple, model_name: str) -> None:
    """Run torch.fx's ShapeProp on the example input; a failure becomes an InvalidGraphError.

    ShapeProp prints the traceback of the failing op to stderr before re-raising a RuntimeError
    that names only the fx node; that output is captured and the cause reported instead.
    """
    import contextlib
    import io

    import torch

    bad = [type(t).__name__ for t in inputs if not isinstance(t, torch.Tensor)]
    if bad:
        raise InvalidGraphError(
            f"from_torch needs example_input to be a tensor (or a tuple of tensors) shaped like the input of "
            f"{model_name}.forward, got {', '.join(bad)}; e.g. torch.randn(2, in_features)")
    shapes = ", ".join(str(tuple(t.shape)) for t in inputs)
    current: list = []

    class _Prop(shape_prop):
        def run_node(self, n: Any) -> Any:
            current[:] = [n]
            return super().run_node(n)

    try:
        with torch.no_grad(), contextlib.redirect_stderr(io.StringIO()):
            _Prop(gm).propagate(*inputs)
    except Exception as exc:  # torch raises RuntimeError (and others) for shape mismatches
        cause = exc.__cause__ if exc.__cause__ is not None else exc
        at = f" at fx node {current[0].name!r} ({current[0].op} {current[0].target})" if current else ""
        raise InvalidGraphError(
            f"{model_name} cannot run on the example input of shape {shapes}{at}: "
            f"{str(cause).splitlines()[0]}; "
            f"pass an example_input with the shape {model_name}.forward expects (for a first "
            f"nn.Linear(in_features, ...), torch.randn(batch, in_features))") from exc


def from_torch(model: Any, example_input: Any) -> nx.DiGraph:
    """Trace ``model`` (an ``nn.Module``) on ``example_input`` into a validated network graph.

    Node names are the fx node names (``"fc1"``, ``"act"``, ``"add"``, ...); the input node is
    named after the forward argument, the output node ``"output"``.  Activation nodes carry the
    catalogue name (or the module's ``activation`` object) in ``activation`` and the torch
    hyper-parameters in ``activation_params``.

    >>> import torch, graphs
    >>> net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2))
    >>> g = graphs.from_torch(net, torch.randn(3, 4))
    >>> [g.nodes[n]["kind"] for n in nx.topological_sort(g)]
    ['input', 'linear', 'activation', 'linear', 'output']
    """
    import torch
    import torch.fx
    import torch.nn as nn
    import torch.nn.functional as F
    from torch.fx.passes.shape_prop import ShapeProp

    linear_types = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
    pool_types = (nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d,
                  nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d)
    pass_types = (nn.Flatten, nn.Identity, nn.Unflatten)
    act_modules, act_functions, act_methods = _activation_tables()

    def carries_activation(m: nn.Module) -> bool:
        act = getattr(m, "activation", None)
        return (act is not None and not isinstance(act, nn.Module)
                and not any(isinstance(sub, linear_types) for sub in m.modules()))

    class _Tracer(torch.fx.Tracer):
        def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
            return carries_activation(m) or super().is_leaf_module(m, qualname)

    if not isinstance(model, nn.Module):
        raise InvalidGraphError(f"from_torch needs an nn.Module, not {type(model).__name__}")
    tracer = _Tracer()
    try:
        fx_graph = tracer.trace(model)
    except Exception as exc:  # torch raises many types for untraceable control flow
        raise InvalidGraphError(f"torch.fx could not trace {type(model).__name__}: {exc}; "
                                f"from_torch needs a forward without data-dependent control flow") from exc
    gm = torch.fx.GraphModule(tracer.root, fx_graph)
    inputs = example_input if isinstance(example_input, tuple) else (example_input,)
    placeholders = [n for n in fx_graph.nodes if n.op == "placeholder"]
    required = [n for n in placeholders if not n.args]  # a placeholder's args hold its default, if any
    if not len(required) <= len(inputs) <= len(placeholders):
        names = ", ".join(n.target for n in placeholders)
        raise InvalidGraphError(
            f"{type(model).__name__}.forward takes {len(required)}"
            f"{'' if len(required) == len(placeholders) else f' to {len(placeholders)}'} input(s) ({names}), "
            f"but example_input holds {len(inputs)} tensor(s); pass one example tensor per forward argument "
            "(a tuple for several)")
    _propagate_shapes(gm, ShapeProp, inputs, type(model).__name__)

    g = new_graph(builder=f"from_torch({type(model).__name__})")
    env: dict[Any, Any] = {}

    def where(fx_node: Any) -> str:
        return f"fx node {fx_node.name!r} ({fx_node.op} {getattr(fx_node.target, '__name__', fx_node.target)})"

    def value_of(arg: Any) -> Any:
        if isinstance(arg, torch.fx.Node):
            return env[arg]
        if isinstance(arg, (int, float)) and not isinstance(arg, bool):
            return _Const(float(arg))
        return _Other()

    materialised: dict[int, Hashable] = {}

    def materialise(value: Any, consumer: Any) -> Hashable:
        # A combination used by several consumers becomes one weighted_sum node.
        if id(value) in materialised:
            return materialised[id(value)]
        node = _materialise(value, consumer)
        materialised[id(value)] = node
        return node

    def _materialise(value: Any, consumer: Any) -> Hashable:
        if not isinstance(value, _Combo):
            raise InvalidGraphError(f"{where(consumer)} takes {type(value).__name__} where a tensor from "
                                    f"the network was expected")
        if len(value.terms) == 1:
            node, coeff = value.terms[0]
            if coeff == 1:
                return node
            if coeff == -1:  # a sign flip leaves every kernel map unchanged
                return node
            raise InvalidGraphError(
                f"{value.origin!r} scales a tensor by the constant {coeff:g}, which changes q by "
                f"{coeff**2:g}; scaling is not a node kind: fold it into the next linear layer's "
                f"initialisation, or use it in a weighted sum w1*x + w2*y with w1**2 + w2**2 == 1")
        weights: dict[Hashable, float] = {}
        for node, coeff in value.terms:
            weights[node] = weights.get(node, 0.0) + coeff
        if all(c == 1 for c in weights.values()):
            norm = math.sqrt(len(weights))
            raise InvalidGraphError(
                f"{value.origin!r} adds {len(weights)} branches {list(weights)} without weights (a plain "
                f"x + y), which multiplies q by {len(weights)}; DKS/TAT need a normalised weighted sum: "
                f"write w1*x + w2*y with w1**2 + w2**2 == 1, e.g. weights "
                f"{', '.join(f'{1 / norm:.6g}' for _ in weights)}")
        name = value.origin
        if name in g:
            name = f"{name}/sum"
        return add_weighted_sum(g, name, weights, fx_node=value.origin)

    def tensor_arg(fx_node: Any) -> Any:
        return env[fx_node.args[0]] if isinstance(fx_node.args[0], torch.fx.Node) else _Other()

    def add_kind(fx_node: Any, kind: str, **attrs: Any) -> _Combo:
        pred = materialise(tensor_arg(fx_node), fx_node)
        add_node(g, fx_node.name, kind, pred, fx_node=fx_node.name, **attrs)
        return _Combo(((fx_node.name, 1.0),), fx_node.name)

    def activation(fx_node: Any, act: Any, params: dict[str, Any]) -> _Combo:
        return add_kind(fx_node, "activation", activation=act, activation_params=params)

    def arithmetic(fx_node: Any, op: str) -> Any:
        args = list(fx_node.args)
        vals = [value_of(a) for a in args[:2]]
        alpha = fx_node.kwargs.get("alpha", 1)
        if op in ("add", "sub"):
            a, b = vals
            sign = -1.0 if op == "sub" else 1.0
            if isinstance(a, _Const) and isinstance(b, _Const):
                return _Const(a.value + sign * alpha * b.value)
            if isinstance(a, _Combo) and isinstance(b, _Combo):
                return _Combo(a.terms + b.scaled(sign * alpha, fx_node.name).terms, fx_node.name)
            raise InvalidGraphError(f"{where(fx_node)} adds a constant to a tensor (a bias), which "
                                    f"changes the kernel; keep biases inside linear layers (zero at init)")
        if op == "mul":
            a, b = vals
            if isinstance(a, _Const) and isinstance(b, _Const):
                return _Const(a.value * b.value)
            if isinstance(a, _Combo) and isinstance(b, _Const):
                return a.scaled(b.value, fx_node.name)
            if isinstance(a, _Const) and isinstance(b, _Combo):
                return b.scaled(a.value, fx_node.name)
            raise InvalidGraphError(f"{where(fx_node)} multiplies two tensors elementwise; products of "
                                    f"branches (gating) are not a supported node kind")
        if op == "div":
            a, b = vals
            if isinstance(b, _Const) and isinstance(a, (_Combo, _Const)):
                return a.scaled(1.0 / b.value, fx_node.name) if isinstance(a, _Combo) else _Const(a.value / b.value)
            raise InvalidGraphError(f"{where(fx_node)} divides by a tensor; only constant divisors are supported")
        if op == "neg":
            a = vals[0]
            return a.scaled(-1.0, fx_node.name) if isinstance(a, _Combo) else _Const(-a.value)
        raise AssertionError(op)  # pragma: no cover

    arithmetic_ops = {operator.add: "add", torch.add: "add", operator.sub: "sub", torch.sub: "sub",
                      operator.mul: "mul", torch.mul: "mul", operator.truediv: "div", torch.div: "div",
                      operator.neg: "neg", torch.neg: "neg", operator.iadd: "add", operator.imul: "mul"}
    arithmetic_methods = {"add": "add", "sub": "sub", "mul": "mul", "div": "div", "neg": "neg",
                          "add_": "add", "mul_": "mul"}
    passthrough_functions = {torch.flatten, torch.reshape, torch.squeeze, torch.unsqueeze}
    passthrough_methods = {"flatten", "view", "reshape", "squeeze", "unsqueeze", "contiguous"}
    shape_functions = {getattr, len}
    shape_methods = {"size", "dim"}
    linear_functions = {F.linear, F.conv1d, F.conv2d, F.conv3d}
    pool_functions = {F.avg_pool1d, F.avg_pool2d, F.avg_pool3d,
                      F.adaptive_avg_pool1d, F.adaptive_avg_pool2d, F.adaptive_avg_pool3d}
    normalise_types = tuple(t for t in (getattr(nn, "RMSNorm", None),) if t is not None)

    def is_spatial_mean(fx_node: Any) -> bool:
        dims = fx_node.kwargs.get("dim", fx_node.args[1] if len(fx_node.args) > 1 else None)
        if dims is None:
            return False
        dims = (dims,) if isinstance(dims, int) else tuple(dims)
        rank = len(fx_node.args[0].meta["tensor_meta"].shape)
        dims = {d % rank for d in dims}
        return rank >= 3 and 0 not in dims and 1 not in dims

    placeholders = [n for n in fx_graph.nodes if n.op == "placeholder"]
    if len(placeholders) != 1:
        raise InvalidGraphError(f"from_torch supports models with one tensor input; "
                                f"{type(model).__name__}.forward takes {[p.name for p in placeholders]}")

    for fx_node in fx_graph.nodes:
        op, target = fx_node.op, fx_node.target
        if op == "placeholder":
            add_node(g, fx_node.name, "input", fx_node=fx_node.name)
            env[fx_node] = _Combo(((fx_node.name, 1.0),), fx_node.name)
        elif op == "get_attr":
            obj = gm
            for part in target.split("."):
                obj = getattr(obj, part)
            env[fx_node] = _Const(float(obj)) if isinstance(obj, torch.Tensor) and obj.numel() == 1 else _Other()
        elif op == "call_module":
            m = gm.get_submodule(target)
            if carries_activation(m):
                env[fx_node] = activation(fx_node, m.activation, {})
            elif isinstance(m, linear_types):
                env[fx_node] = add_kind(fx_node, "linear", module=type(m).__name__)
            elif isinstance(m, pool_types):
                env[fx_node] = add_kind(fx_node, "pool", module=type(m).__name__)
            elif isinstance(m, pass_types) or (isinstance(m, nn.Dropout) and m.p == 0):
                env[fx_node] = tensor_arg(fx_node)
            elif normalise_types and isinstance(m, normalise_types):
                env[fx_node] = add_kind(fx_node, "normalise", module=type(m).__name__)
            elif type(m) in act_modules:
                name, keys = act_modules[type(m)]
                if isinstance(m, nn.GELU) and m.approximate == "tanh":
                    name = "gelu_tanh"
                params = {k: getattr(m, k) for k in keys}
                if isinstance(m, nn.PReLU):  # the catalogue's prelu slope is called a
                    params = {"a": _prelu_slope(m, where(fx_node))}
                env[fx_node] = activation(fx_node, name, params)
            else:
                hint = {nn.BatchNorm1d: "batch statistics", nn.BatchNorm2d: "batch statistics",
                        nn.LayerNorm: "mean subtraction (use nn.RMSNorm for per-location normalisation)",
                        nn.MaxPool2d: "max pooling (use average pooling)",
                        nn.Dropout: "dropout with p > 0"}.get(type(m), "no known kernel rule")
                raise InvalidGraphError(
                    f"unsupported module {type(m).__name__} at {where(fx_node)} ({hint}); from_torch maps "
                    f"Linear/Conv, average pools, activations, weighted sums, cat and reshapes")
        elif op == "call_function":
            if target in arithmetic_ops:
                env[fx_node] = arithmetic(fx_node, arithmetic_ops[target])
            elif target in act_functions:
                name = act_functions[target]
                params = _function_params(target, name, fx_node.args, fx_node.kwargs)
                if name == "gelu" and params.pop("approximate", "none") == "tanh":
                    name = "gelu_tanh"
                env[fx_node] = activation(fx_node, name, params)
            elif target in linear_functions:
                env[fx_node] = add_kind(fx_node, "linear", function=target.__name__)
            elif target in pool_functions:
                env[fx_node] = add_kind(fx_node, "pool", function=target.__name__)
            elif target is F.normalize:
                env[fx_node] = add_kind(fx_node, "normalise", function="normalize")
            elif target in (torch.mean,) and is_spatial_mean(fx_node):
                env[fx_node] = add_kind(fx_node, "pool", function="mean")
            elif target in passthrough_functions:
                env[fx_node] = tensor_arg(fx_node)
            elif target in shape_functions:
                env[fx_node] = _Other()
            elif target in (torch.cat, torch.concat):
                tensors = fx_node.args[0]
                dim = fx_node.kwargs.get("dim", fx_node.args[1] if len(fx_node.args) > 1 else 0)
                rank = len(tensors[0].meta["tensor_meta"].shape)
                if dim % rank == 0:
                    raise InvalidGraphError(f"{where(fx_node)} concatenates along the batch dim 0; "
                                            f"only feature/channel concatenation has a kernel rule")
                channels: dict[Hashable, int] = {}
                for t in tensors:
                    node = materialise(env[t], fx_node)
                    if node in channels:
                        raise InvalidGraphError(f"{where(fx_node)} concatenates {node!r} with itself; "
                                                f"not supported")
                    channels[node] = int(t.meta["tensor_meta"].shape[dim])
                add_concat(g, fx_node.name, channels, fx_node=fx_node.name)
                env[fx_node] = _Combo(((fx_node.name, 1.0),), fx_node.name)
            else:
                raise InvalidGraphError(f"unsupported op {where(fx_node)}; from_torch maps Linear/Conv, "
                                        f"average pools, activations, weighted sums, cat and reshapes")
        elif op == "call_method":
            if target in arithmetic_methods:
                env[fx_node] = arithmetic(fx_node, arithmetic_methods[target])
            elif target in act_methods:
                env[fx_node] = activation(fx_node, act_methods[target], {})
            elif target in passthrough_methods:
                env[fx_node] = tensor_arg(fx_node)
            elif target in shape_methods:
                env[fx_node] = _Other()
            elif target == "mean" and is_spatial_mean(fx_node):
                env[fx_node] = add_kind(fx_node, "pool", function="mean")
            else:
                raise InvalidGraphError(f"unsupported tensor method {where(fx_node)}; from_torch maps "
                                        f"Linear/Conv, average pools, activations, weighted sums, cat and reshapes")
        elif op == "output":
            result = fx_node.args[0]
            if not isinstance(result, torch.fx.Node):
                raise InvalidGraphError(f"{type(model).__name__}.forward returns {type(result).__name__}; "
                                        f"from_torch needs a single output tensor")
            pred = materialise(env[result], fx_node)
            add_node(g, "output", "output", pred)
    validate(g)
    return g
