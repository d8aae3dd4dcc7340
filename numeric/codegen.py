"""Generate PyTorch autograd Functions and nn.Modules from symbolic activations.

For an activation ``phi`` (a :class:`symact.Activation` or a SymPy expression in
``symact.x``, and ``symact.v`` for gated forms) this module writes Python source:

* ``_forward``: ``phi`` in safe form (:func:`symact.primitives.safe_form`), printed by
  :mod:`numeric.printer` with scratch buffers updated in place;
* ``_backward`` / ``_backward_graph``: ``g * dphi/dx`` (and ``dphi/dv``, ``dphi/dp`` for
  trainable parameters ``p``) from :func:`symact.primitives.safe_derivative`, common
  subexpressions eliminated; the first reuses buffers in place and is used when no
  graph is recorded, the second is out-of-place and differentiable, so double
  backward (``create_graph=True``, ``gradgradcheck``, ``torch.func``) works;
  ``_forward_graph``, the out-of-place forward, for inputs that broadcast against each
  other (``m(x, v)`` with a per-feature ``v``) and under functorch transforms (``vmap``
  over stacked parameters), where buffers made from one input cannot be updated in place
  with another (the backward takes ``_backward_graph`` there too);
* a ``torch.autograd.Function`` (``forward`` without ``ctx``, ``setup_context``,
  ``generate_vmap_rule = True``) that saves exactly the inputs (one tensor for a
  single-input activation without trainable parameters) -- or the output instead,
  when the derivative written in the output has fewer floating-point hazards
  (e.g. ``exp``: ``phi' = phi``);
* a subclass of it with ``jvp`` (forward-mode AD: ``torch.func.jvp``, ``jacfwd``,
  ``hessian``, ``torch.autograd.forward_ad``), which the module applies only when
  forward-mode AD may be active and never under torch.compile, whose Dynamo does not
  trace autograd Functions that define a ``jvp``;
* an ``nn.Module`` with the formula in its docstring and ``extra_repr``.

Any real dtype and device: float16 and bfloat16 are computed in float32 and rounded once
(as PyTorch's own kernels do), so intermediates cannot overflow the narrow formats;
integer and bool inputs give the default float dtype, as ``torch.exp`` does.

Each activation's source is executed separately under its own file name, so each
gets its own code objects: Dynamo caches at most 8 graphs per code object and
would otherwise reuse one activation's graph for another.  torch.compile traces the
whole Function on torch 2.12 and later; before that the backward is kept out of the
compiler (torch 2.11 compiled it into zero gradients), so the graph breaks at the
Function and its backward runs eagerly.

>>> import sympy, torch
>>> from numeric.codegen import torch_module
>>> x = sympy.Symbol("x", real=True)
>>> m = torch_module(sympy.log(1 + sympy.exp(x)), name="softplus")
>>> m(torch.tensor([0.0, 100.0], dtype=torch.float64))
tensor([  0.6931, 100.0000], dtype=torch.float64)
"""

from __future__ import annotations

import ast
import builtins
import functools
import hashlib
import keyword
import linecache
import re
import sys
import textwrap
import types
import unicodedata
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

import sympy
from sympy.core.function import AppliedUndef

from symact.activation import activation as symact_activation
from symact.errors import DomainError, FormulaError, UnknownSymbolError
from symact.primitives import FermiDirac, hazards, safe_derivative, safe_form

from .printer import (PRELUDE, SOFTPLUS_THRESHOLD, emit_function, fuse_builtins, number_literal, numpy_modules,
                      prepare)

if TYPE_CHECKING:  # torch is imported only when code is generated
    import torch

__all__ = [
    "CodegenSpec",
    "codegen_spec",
    "generated_source",
    "torch_function",
    "torch_module",
    "export_module",
]

_X = sympy.Symbol("x", real=True)
_V = sympy.Symbol("v", real=True)
_RESERVED = {"x", "v", "g", "y", "self", "torch", "F", "ctx", "grad", "saved"}


def _input_symbols(expr: sympy.Expr) -> tuple[sympy.Symbol, ...]:
    names = {s.name: s for s in expr.free_symbols}
    x = names.get("x", _X)
    return (x, names["v"]) if "v" in names else (x,)


def _identifier(name: str, taken: set[str]) -> str:
    """The Python name of a trainable parameter: its own name, or ``p_name`` where that is taken.

    Taken: keywords, the generated code's own names (arguments, scratch ``t0``/``_c0``, the module's
    helpers), builtins it calls (``float``, ``super``; not ``max``) and nn.Module's attributes (``forward``,
    ``to``, ``training``), which ``self.name = nn.Parameter(...)`` would replace or fail on."""
    candidate = re.sub(r"\W", "_", name)
    if not candidate or candidate[0].isdigit() or keyword.iskeyword(candidate) or _name_taken(candidate):
        candidate = f"p_{candidate}"
    while candidate in taken or _name_taken(candidate):
        candidate += "_"
    taken.add(candidate)
    return candidate


def _name_taken(candidate: str) -> bool:
    return (candidate in _RESERVED or re.fullmatch(r"t\d+|_c\d+", candidate) is not None
            or candidate.startswith("__")  # self.__name would be mangled to self._Class__name
            or candidate in _builtins_used() or candidate in _module_names()
            or candidate in _module_attribute_names())


# builtins the module template of _assemble calls (the prelude's are read from it)
_TEMPLATE_BUILTINS = ("float", "super", "format", "tuple", "list", "str", "staticmethod", "ValueError", "RuntimeError")


@functools.lru_cache(maxsize=1)
def _builtins_used() -> frozenset:
    """Builtins the generated code calls, which a parameter (a function argument) must not shadow."""
    used = {n.id for n in ast.walk(ast.parse(PRELUDE)) if isinstance(n, ast.Name) and hasattr(builtins, n.id)}
    return frozenset(used | set(_TEMPLATE_BUILTINS))


@functools.lru_cache(maxsize=1)
def _module_attribute_names() -> frozenset:
    """Attributes of an nn.Module, and those the generated module class sets itself."""
    import torch  # lazy: `import numeric` must not import torch

    return frozenset(dir(torch.nn.Module)) | frozenset(vars(torch.nn.Module())) | {
        "formula", "activation", "_symact_recipe", "forward", "extra_repr"}


def _class_name(name: str) -> str:
    words = re.split(r"[^0-9a-zA-Z]+", name)
    camel = "".join(w[:1].upper() + w[1:] for w in words if w)
    if not camel or camel[0].isdigit() or _class_name_problem(camel):  # e.g. "F", "None", "ValueError"
        camel = "Act" + camel
    return camel


# names the generated module binds itself (see _assemble), besides the prelude's and its two classes
_ASSEMBLED_NAMES = ("torch", "F", "_forward", "_forward_graph", "_backward", "_backward_graph")


@functools.lru_cache(maxsize=1)
def _module_names() -> frozenset:
    """Every name the generated module binds at top level, except its two classes."""
    names = set(_ASSEMBLED_NAMES)
    for node in ast.parse(PRELUDE).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((alias.asname or alias.name).split(".")[0] for alias in node.names)
        else:
            names.update(n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store))
    return frozenset(names)


def _class_name_problem(class_name: str) -> str | None:
    """Why ``class_name`` cannot name the generated class, or None when it can."""
    if not class_name.isidentifier():
        return "is not a Python identifier (letters, digits and underscores, not starting with a digit)"
    if unicodedata.normalize("NFKC", class_name) != class_name:  # Python would read it as another name
        return f"is read by Python as {unicodedata.normalize('NFKC', class_name)!r} (NFKC normalisation)"
    if keyword.iskeyword(class_name):
        return "is a Python keyword"
    if class_name.startswith("__") and class_name.endswith("__"):
        return "is a special (dunder) name"
    if hasattr(builtins, class_name):
        return "is a Python builtin, which the generated code may use"
    for name in (class_name, _function_class_name(class_name)):
        if name in _module_names():
            return f"would replace {name!r}, which the generated module defines or imports itself"
    return None


def _function_class_name(class_name: str) -> str:
    """The autograd Function's class: _NameFunction, but never with two leading underscores, which
    Python would mangle inside the module class's body (class _Act would call __ActFunction)."""
    return f"{'' if class_name.startswith('_') else '_'}{class_name}Function"


def _checked_class_name(class_name: Any) -> str | None:
    if class_name is None:
        return None
    if not isinstance(class_name, str):
        raise DomainError(f"class_name={class_name!r} must be a string naming the generated class, e.g. 'MyGELU'")
    problem = _class_name_problem(class_name)
    if problem:
        normalised = unicodedata.normalize("NFKC", class_name)
        example = normalised if _class_name_problem(normalised) is None else _class_name(class_name)
        raise DomainError(
            f"class_name={class_name!r} {problem}; choose another name for the generated class, e.g. {example!r}")
    return class_name


@dataclass(frozen=True)
class CodegenSpec:
    """Everything the generator decided about one activation (inspectable, e.g. in tests).

    ``forward``: the safe form printed for ``phi``; ``derivatives``: ``dphi/ds`` for
    each input then each trainable parameter, in that order (for the input, the
    activation's surrogate gradient where it declares one); ``saves``: ``"input"``
    or ``"output"`` (what ``setup_context`` keeps for backward); ``surrogate``: the
    declared surrogate gradient (in the parameters, like ``formula``), or None.
    """

    name: str
    class_name: str
    formula: str
    inputs: tuple[sympy.Symbol, ...]
    trainable: tuple[tuple[sympy.Symbol, str, float], ...]  # (symbol, python name, initial value)
    # (parameter name, python name, value) baked into the code, shown as a read-only attribute
    constants: tuple[tuple[str, str, str], ...]
    forward: sympy.Expr
    derivatives: tuple[sympy.Expr, ...]
    saves: str
    derivative_in_output: sympy.Expr | None
    builtin: tuple[str, str] | None = None  # (forward, backward) sources with prefer_builtins
    surrogate: sympy.Expr | None = None


def codegen_spec(act: Any, trainable: Iterable = (), name: str | None = None,
                 class_name: str | None = None, prefer_builtins: bool = False, *,
                 real_line: bool = True) -> CodegenSpec:
    """Resolve an activation into a :class:`CodegenSpec`.

    ``act``: a :class:`symact.Activation`, a catalogue name (``"gelu"``), a formula
    string in ``x`` (read by :func:`symact.activation`), or a SymPy expression.

    ``prefer_builtins``: when the whole activation is a PyTorch built-in (GELU, SiLU,
    Mish, tanh, sigmoid), call it and its fused backward kernel instead of the
    generated code -- one pass each way, but with the built-ins' accuracy (F.gelu is
    0 for x < -5.9 in float32 and loses relative accuracy left of 0; the tanh and
    sigmoid backward kernels lose it where the derivative is tiny).

    An activation with a surrogate gradient (``act.surrogate``) back-propagates the surrogate for the
    input, and forward-mode AD (``torch.func.jvp``, ``jacfwd``) multiplies the tangent by it too, so
    that ``jacfwd`` and ``jacrev`` agree; a trainable parameter gets the derivative of the forward
    formula, and one inside the surrogate's argument (the DKS transform's alpha and beta), whose
    gradient would then disagree with the input's, is refused with :class:`~symact.errors.DomainError`.

    ``class_name``: a Python identifier that is not a keyword, a builtin or a name the generated
    module uses itself (torch, F, its helpers); :class:`~symact.errors.DomainError` otherwise.

    ``real_line``: a SymPy expression must be real for every real input, as :func:`symact.activation`
    requires of a formula (``sqrt(x)`` would give NaN for x < 0); ``real_line=False`` accepts a function
    that is real only where it will be evaluated, e.g. ``log(x)`` as the inverse of ``exp`` applied to
    positive values (a parametrisation's ``right_inverse``), and leaves NaN outside it to the caller.
    """
    class_name = _checked_class_name(class_name)
    if name is not None and not isinstance(name, str):
        raise DomainError(f"name={name!r} must be a string (the activation's name in docstrings and the "
                          "default class name), e.g. 'my_gelu'")
    if isinstance(act, str):
        act = symact_activation(act)
    surrogate = getattr(act, "surrogate", None)
    if hasattr(act, "expr") and hasattr(act, "params"):
        expr = sympy.sympify(act.expr)
        params = dict(act.params)
        inputs = tuple(getattr(act, "inputs", None) or _input_symbols(expr))
        act_name = name or getattr(act, "name", None) or "activation"
    else:
        if not isinstance(act, (sympy.Expr, int, float)) or isinstance(act, bool):
            raise FormulaError(
                f"cannot generate code from {type(act).__name__} {act!r}; pass a symact.Activation, a catalogue "
                "name ('gelu'), a formula string in x ('x*sigmoid(x)') or a SymPy expression in symact.x")
        expr = sympy.sympify(act)
        if not isinstance(expr, sympy.Expr) or isinstance(expr, sympy.Lambda):
            raise FormulaError(
                f"cannot generate code from {type(act).__name__} {act!r}; pass a symact.Activation, a catalogue "
                "name, a formula string in x, or a SymPy expression in x (and v for gated forms)")
        undefined = sorted({str(f.func) for f in expr.atoms(AppliedUndef)})
        if undefined:
            raise FormulaError(
                f"the formula {expr} uses the undefined function(s) {undefined}, which have no values to compute; "
                "write each out in x (e.g. x*tanh(x)) or use a function SymPy knows")
        if real_line:
            _check_formula(expr)
        params = {}
        inputs = _input_symbols(expr)
        act_name = name or "activation"
    by_name = {p.name: p for p in params}
    chosen = []
    for item in _trainable_names(trainable):
        key = item.name if isinstance(item, sympy.Symbol) else str(item)
        undeclared = {s.name for s in expr.free_symbols} - {s.name for s in inputs} - set(by_name)
        if key not in by_name and key in undeclared:
            raise UnknownSymbolError(
                f"{key!r} appears in the formula {expr} but has no value, so it cannot start as an nn.Parameter; "
                f"give it one with symact.activation(expr, {key}=1.0) and pass that Activation with "
                f"trainable=({key!r},)", symbols=(key,))
        if key not in by_name:
            raise UnknownSymbolError(
                f"{key!r} is not a parameter of {act_name}; trainable parameters must be among "
                f"{sorted(by_name) or 'none (this activation has no parameters)'}"
            )
        if surrogate is not None and by_name[key] not in expr.free_symbols:
            raise DomainError(
                f"{key!r} appears only in the surrogate gradient of {act_name}, not in its forward formula "
                f"{expr}: the output does not depend on it, so training it would give it no gradient; "
                f"leave it fixed (trainable=() ) or set its value with symact.activation({act_name!r}, {key}=...)"
            )
        if surrogate is not None and _inside_surrogate_argument(surrogate, by_name[key], inputs[0]):
            raise DomainError(
                f"{key!r} sits inside the argument of the surrogate gradient {surrogate} of {act_name} (a shift or "
                f"scale of the input, as the DKS transform's alpha and beta are): backpropagation would give x the "
                f"surrogate but {key!r} the derivative of the forward formula {expr}, two gradients that disagree "
                f"(HeLU's beta would get relu's gradient, 0 for x in (-alpha, 0)); leave {key!r} fixed, or put the "
                f"shift or scale into a layer before the activation (nn.Linear's bias), which the surrogate reaches"
            )
        chosen.append(by_name[key])
    return _resolve(expr, tuple(params.items()), inputs, tuple(chosen), act_name, class_name, prefer_builtins,
                    surrogate)


def _inside_surrogate_argument(surrogate: sympy.Expr, symbol: sympy.Symbol, x: sympy.Symbol) -> bool:
    """Whether ``symbol`` enters the surrogate together with ``x`` inside a nonlinear function, a power
    or a condition (``Heaviside(alpha_t*x + beta, 0)``), rather than only as a factor or term
    (the DKS transform's gamma in ``gamma*alpha_t*s(...)``)."""
    for node in sympy.preorder_traversal(surrogate):
        if isinstance(node, (sympy.Add, sympy.Mul, sympy.Symbol)) or node.is_number:
            continue
        if any(x in arg.free_symbols and symbol in arg.free_symbols for arg in node.args):
            return True
    return False


def _trainable_names(trainable: Any) -> tuple:
    """``trainable`` as a tuple of names/symbols: one name (``"alpha"``) or one Symbol is a
    single parameter, not a sequence of one-letter names."""
    if isinstance(trainable, (str, sympy.Symbol)):
        return (trainable,)
    example = "e.g. trainable=('alpha',), or trainable=() for none"
    try:
        names = tuple(trainable)
    except TypeError:
        raise DomainError(f"trainable={trainable!r} must be a parameter name or a sequence of names, "
                          f"{example}") from None
    keys = []
    for item in names:
        if not isinstance(item, (str, sympy.Symbol)):
            raise DomainError(f"trainable={trainable!r} holds {item!r}, which is not a parameter name; {example}")
        key = item.name if isinstance(item, sympy.Symbol) else item
        if key in keys:
            raise DomainError(f"trainable={trainable!r} names {key!r} twice, which would make two nn.Parameters "
                              f"for one parameter; name each parameter once")
        keys.append(key)
    return names


@functools.lru_cache(maxsize=256)
def _check_formula(expr: sympy.Expr) -> None:
    """The checks :func:`symact.activation` makes of a formula (finite, real at real inputs), for a
    SymPy expression given directly: without them sqrt(x) or log(x) became code returning NaN for
    every x < 0.  Symbols other than x and v are left to the parameter check of :func:`_resolve`."""
    if {s.name for s in expr.free_symbols} <= {"x", "v"}:
        symact_activation(expr)


_SIGN_PROBES = tuple(sympy.Rational(n, 4) for n in (-10, -4, -2, -1, 0, 1, 3, 4, 10))


def _real_at_the_other_sign(expr: sympy.Expr, p: sympy.Symbol, value: sympy.Expr, inputs: tuple) -> bool:
    """Whether ``expr`` and its derivative in ``p``, with ``p`` at -value (1 at value 0), are real, finite numbers
    at every probe input (the derivative too: elephant's 1/(1 + |x|**d) is 0 at x = 0 for d < 0, its d-slope
    not)."""
    other = -value if value != 0 else sympy.S.One
    plain = sympy.Symbol(p.name, real=True)
    free = expr.xreplace({p: plain})
    for form in (free, sympy.diff(free, plain)):
        mirrored = form.xreplace({plain: other})
        for point in _SIGN_PROBES:
            try:
                number = sympy.N(mirrored.xreplace({u: point for u in inputs}), 15)
            except (TypeError, ValueError, ZeroDivisionError, ArithmeticError):
                return False
            if not (number.is_number and number.is_real and number.is_finite):
                return False
    return True


@functools.lru_cache(maxsize=256)
def _resolve(expr, param_items, inputs, chosen, act_name, class_name, prefer_builtins,
             surrogate=None) -> CodegenSpec:
    """The symbolic work of codegen_spec (safe forms, derivatives), cached: it takes
    SymPy a good fraction of a second, and modules are made repeatedly from one act."""
    params = dict(param_items)
    fixed = {p: v for p, v in params.items() if p not in chosen}
    concrete = expr.xreplace(fixed) if fixed else expr
    # A trainable parameter is an nn.Parameter that training moves anywhere: where the formula is real and finite
    # at the other sign too, its symbol keeps no assumption but realness, so no form is chosen that holds only
    # inside the declared range (celu's alpha > 0 wrote Abs(x/alpha) as Abs(x)/alpha, and the alpha-gradient took
    # its Taylor branch for every x once alpha < 0: -7.2e10 for -3.0e7 at alpha = -0.5, x = -7.3).  Where it is
    # not (squareplus's b, elephant's d), the declared sign stays: the code needs it (limits at x = 0).
    free = {p: sympy.Symbol(p.name, real=True) for p in chosen
            if p.assumptions0 != {"real": True} and _real_at_the_other_sign(concrete, p, params[p], inputs)}
    if free:
        concrete = concrete.xreplace(free)
        params = {free.get(p, p): v for p, v in params.items()}
        chosen = tuple(free.get(p, p) for p in chosen)
    unknown = concrete.free_symbols - set(inputs) - set(chosen)
    if unknown:
        names = sorted(map(str, unknown))
        example = ", ".join(f"{n}=1.0" for n in names)
        raise UnknownSymbolError(
            f"the formula of {act_name} uses {names} which are neither inputs "
            f"{[str(s) for s in inputs]} nor parameters with values; give them values, "
            f"e.g. symact.activation(expr, {example}), and pass that Activation (with trainable=... to train them)",
            symbols=tuple(names),
        )
    taken: set[str] = set()
    trainable_spec = tuple(
        (p, _identifier(p.name, taken), float(sympy.N(params[p], 20))) for p in chosen
    )
    constants = tuple((p.name, _identifier(p.name, taken), number_literal(v))
                      for p, v in sorted(fixed.items(), key=lambda i: i[0].name))
    forward = safe_form(concrete, inputs)
    symbols = list(inputs) + list(chosen)
    derivatives = tuple(safe_derivative(concrete, s, inputs) for s in symbols)
    if surrogate is not None:
        # backpropagation multiplies by the surrogate, not phi' (which the output may encode)
        derivatives = (safe_form(surrogate.xreplace(fixed).xreplace(free), inputs),) + derivatives[1:]
    saves, in_output = "input", None
    if len(inputs) == 1 and not chosen and surrogate is None:
        y = sympy.Dummy("y", real=True)
        candidate = derivatives[0].xreplace({forward: y})
        if not candidate.has(inputs[0]) and (
            hazards(candidate, (y,)).key() < hazards(derivatives[0], inputs).key()
        ):
            saves, in_output = "output", candidate
        else:
            in_output = _derivative_through_inverse(concrete, inputs[0], derivatives[0])
            saves = "input" if in_output is None else "output"
    builtin = None
    if prefer_builtins and len(inputs) == 1 and not chosen and surrogate is None:
        builtin = _BUILTINS.get(_builtin_key(forward, inputs[0]))
        if builtin is not None:
            saves, in_output = builtin[2], None
            builtin = builtin[:2]
    return CodegenSpec(
        builtin=builtin,
        name=act_name,
        class_name=class_name or _class_name(act_name),
        formula=str(expr),
        inputs=inputs,
        trainable=trainable_spec,
        constants=constants,
        forward=forward,
        derivatives=derivatives,
        saves=saves,
        derivative_in_output=in_output,
        surrogate=surrogate,
    )


def _derivative_through_inverse(expr: sympy.Expr, x: sympy.Symbol, input_derivative: sympy.Expr):
    """phi'(x) written in y = phi(x), through phi's inverse, or None.

    Only for an algebraic, strictly monotone phi with a closed-form inverse, and only where the
    result is shorter than the derivative in x and as accurate: at 67 points on
    [-1e4, 1e4], evaluated exactly at y rounded to float32 and to float64, it must
    agree with phi'(x) to 8 units of that format's epsilon -- which rules out forms
    such as y*(1 - y) for the sigmoid, exact in y but not in a rounded y near 1.
    Squareplus: phi' = y**2/(y**2 + b/4), no square root, no branch.
    """
    # Algebraic activations only: their inverses are algebraic and SymPy finds and simplifies
    # them quickly. Inverses of transcendental ones (log, atanh, erfinv ...) give the classical
    # forms (y*(1 - y), 1 - y**2), inaccurate in a rounded y, and simplify can take minutes
    # on the float constants of a DKS-transformed activation.
    if expr.atoms(sympy.Function) or not expr.has(x) or not _inverse_is_at_most_quadratic(expr, x):
        return None
    try:
        import symact

        activation = symact.activation(expr.xreplace({x: symact.x}))
        properties = activation.properties()
        if properties.monotone is not True:
            return None
        inverse = activation.inverse().expr.xreplace({symact.x: x})
    except (symact.SymactError, NotImplementedError, TypeError, ValueError):
        return None  # not monotone, or no closed-form inverse: the backward reads the input
    # the output range (low, high); a limit the properties could not find is taken as unbounded
    limits = [sympy.sympify(lim) if lim is not None else sign * sympy.oo
              for lim, sign in ((properties.limit_at_minus_infinity, -1), (properties.limit_at_plus_infinity, 1))]
    low, high = sorted(limits, key=float)
    # the output's sign, where the range has one, lets simplify drop |y|: x - sqrt(x**2 + 1) (y < 0) gave
    # (y + |y| + y**3 - y**2*|y|)/(y*(y**2 + 1)), whose y + |y| = 0 the in-place code summed after y**3 - y**2*|y|
    # (the slope 7% off at x = 1e3 in float32, 0 at 1e5), for 2*y**2/(y**2 + 1)
    y = (sympy.Symbol("y", positive=True) if low.is_extended_nonnegative else
         sympy.Symbol("y", negative=True) if high.is_extended_nonpositive else sympy.Symbol("y", real=True))
    slope = sympy.diff(expr, x)
    candidate = slope.xreplace({x: inverse.xreplace({x: y})})
    # sqrt((y**2 + 1)**2) must become y**2 + 1 before simplify can cancel it
    candidate = candidate.replace(
        lambda e: isinstance(e, sympy.Pow) and e.exp in (sympy.S.Half, -sympy.S.Half),
        lambda e: sympy.Pow(sympy.factor(e.base), e.exp))
    candidate = sympy.simplify(candidate)
    if candidate.has(x) or not candidate.has(y) or candidate.has(sympy.Piecewise):
        return None
    if sympy.count_ops(candidate) >= sympy.count_ops(input_derivative):
        return None
    if not _accurate_in_rounded_output(expr, slope, x, candidate, y):
        return None
    real_y = sympy.Dummy("y", real=True)
    # y**2/(y**2 + 1) is inf/inf once y**2 overflows (the printer then adds a large-|y| branch);
    # 1/(1 + y**-2) is finite as it is.  The first finite form the printer leaves without a branch is
    # taken, else the first finite one.
    from .printer import _Select

    finite = []
    for form in (candidate, 1 / sympy.expand(1 / candidate)):
        form = safe_form(form.xreplace({y: real_y}), (real_y,))
        if _finite_over_the_range(form, real_y, float(low), float(high)):
            if not prepare(form, (real_y,)).has(_Select):
                return form
            finite.append(form)
    return finite[0] if finite else None


def _inverse_is_at_most_quadratic(expr: sympy.Expr, x: sympy.Symbol) -> bool:
    """Whether y = phi(x), its radicals removed, is a polynomial equation of degree <= 2 in x.  A cubic or
    quartic inverse (Cardano, Ferrari) is never shorter than phi' in x, and SymPy took 150 s to solve
    y = x + 2x/sqrt(x**2 + 1) (a quartic) before the form was refused."""
    from sympy.solvers.solvers import unrad

    y = sympy.Dummy("y", real=True)
    try:
        numerator = sympy.numer(sympy.together(y - expr))
        removed = unrad(numerator, x)
        polynomial = sympy.expand(removed[0] if removed else numerator)
        return polynomial.is_polynomial(x) and sympy.degree(polynomial, x) <= 2
    except (NotImplementedError, ValueError, TypeError, sympy.PolynomialError):
        return False


def _finite_over_the_range(form, y, low: float, high: float) -> bool:
    """form, as the printer prepares it (its large-|y| branches included), evaluated in float32 and
    float64 is finite for outputs y across (low, high).

    Evaluated with the printer's own helpers (:func:`numeric.printer.numpy_modules`): a NameError is a
    real missing name and is raised, not read as "not finite" (which silently passed over every form
    the printer gives a branch)."""
    import numpy as np

    function = sympy.lambdify(y, prepare(form, (y,)), modules=numpy_modules())
    for dtype in (np.float32, np.float64):
        info = np.finfo(dtype)
        probes = [float(info.tiny), 1e-30, 1e-10, 1e-3, 0.5, 1.0, 2.0, 1e3, 1e10, 1e30, float(info.max)]
        values = np.array([v for p in probes for v in (p, -p) if low < v < high], dtype=dtype)
        with np.errstate(all="ignore"):
            result = np.asarray(function(values), dtype=dtype)
        if not np.all(np.isfinite(result)):
            return False
    return True


def _accurate_in_rounded_output(expr, derivative, x, candidate, y) -> bool:
    import mpmath
    import numpy as np

    from numeric.lambdify_modules import MPMATH_MODULES

    value = sympy.lambdify(x, expr, modules=MPMATH_MODULES)
    slope = sympy.lambdify(x, derivative, modules=MPMATH_MODULES)
    in_output = sympy.lambdify(y, candidate, modules=MPMATH_MODULES)
    points = [*np.linspace(-30.0, 30.0, 61).tolist(), -1e2, 1e2, -1e3, 1e3, -1e4, 1e4]
    with mpmath.workdps(40):
        for p in points:
            try:
                exact_value = value(mpmath.mpf(p))
                exact_slope = slope(mpmath.mpf(p))
            except (ZeroDivisionError, ValueError):  # a pole of phi or phi': no claim there
                continue
            if isinstance(exact_value, mpmath.mpc) or isinstance(exact_slope, mpmath.mpc):
                continue  # outside phi's real domain
            if not (mpmath.isfinite(exact_value) and mpmath.isfinite(exact_slope)):
                continue
            for dtype in (np.float32, np.float64):
                info = np.finfo(dtype)
                rounded = dtype(float(exact_value))
                if not np.isfinite(rounded) or abs(exact_slope) < info.tiny:
                    continue
                try:
                    got = in_output(mpmath.mpf(float(rounded)))
                except (ZeroDivisionError, ValueError):
                    return False
                if abs(got - exact_slope) > 8 * float(info.eps) * abs(exact_slope):
                    return False
    return True


# Whole activations whose PyTorch backward kernel is one fused pass and meets the same
# accuracy bound as the symbolic derivative (tests/test_codegen.py checks it against
# mpmath).  Not tanh/sigmoid: their kernels use 1 - y**2 and y*(1 - y), which lose all
# relative accuracy where the derivative is tiny; not silu/mish: measured 13 and 10
# ulps in float64 near x = 20-30 (the symbolic form stays within 4).
_FUSED_BACKWARD = {
    "Softplus": f"torch.ops.aten.softplus_backward(g, x, 1.0, {SOFTPLUS_THRESHOLD})",
}


# whole-activation built-ins for prefer_builtins: key -> (forward, backward, saved tensor)
_BUILTINS = {
    "silu": ("F.silu(x)", "torch.ops.aten.silu_backward(g, x)", "input"),
    "mish": ("F.mish(x)", "torch.ops.aten.mish_backward(g, x)", "input"),
    "gelu": ("F.gelu(x)", "torch.ops.aten.gelu_backward(g, x)", "input"),
    "tanh": ("torch.tanh(x)", "torch.ops.aten.tanh_backward(g, y)", "output"),
    "sigmoid": ("torch.sigmoid(x)", "torch.ops.aten.sigmoid_backward(g, y)", "output"),
}


def _builtin_key(forward: sympy.Expr, x: sympy.Symbol) -> str | None:
    from symact.primitives import NormalCdf, Sigmoid

    fused = fuse_builtins(forward)
    if fused == x * NormalCdf(x):
        return "gelu"
    if fused == sympy.tanh(x):
        return "tanh"
    if fused == Sigmoid(x):
        return "sigmoid"
    if isinstance(fused, sympy.Function) and fused.args == (x,):
        return {"_Silu": "silu", "_Mish": "mish"}.get(type(fused).__name__)
    return None


def _fused_backward(spec: CodegenSpec) -> str | None:
    """Source of a fused built-in backward for g*phi'(x), if phi is one built-in of x."""
    if len(spec.inputs) != 1 or spec.trainable or spec.saves != "input" or spec.surrogate is not None:
        return None
    fused = fuse_builtins(spec.forward)
    if isinstance(fused, sympy.Function) and fused.args == (spec.inputs[0],) and spec.inputs[0].name == "x":
        return _FUSED_BACKWARD.get(type(fused).__name__)
    return None


@functools.lru_cache(maxsize=256)
def _source(spec: CodegenSpec) -> str:
    """The module source of ``spec``, cached: printing it takes SymPy ~25 ms, and a shaped network
    asks for one module per layer, mostly of one activation (100 layers: 2.4 s, now once).  Equal
    specs print the same source (a frozen dataclass; SymPy's == tells Floats of other precisions apart)."""
    g = sympy.Dummy("g", real=True)
    input_names = [s.name if s.name in ("x", "v") else f"u{i}" for i, s in enumerate(spec.inputs)]
    input_args = [(s, n, True) for s, n in zip(spec.inputs, input_names)]
    param_args = [(p, n, False) for p, n, _ in spec.trainable]
    args = input_args + param_args
    if spec.builtin is not None:
        fwd, bwd = spec.builtin
        arg = "y" if spec.saves == "output" else "x"
        forward_src = f"def _forward(x):\n    return ({fwd},)\n\n\n_forward_graph = _forward\n"
        backward_src = f"def _backward(g, {arg}):\n    return ({bwd},)\n"
        if spec.saves == "output":  # tanh_backward / sigmoid_backward are differentiable
            graph_src = f"def _backward_graph(g, y):\n    return ({bwd},)\n"
        else:  # silu/mish/gelu_backward kernels have no derivative: symbolic code
            g = sympy.Dummy("g", real=True)
            graph_src = emit_function("_backward_graph", [(g, "g", True)] + args,
                                      [g * d for d in spec.derivatives], spec.inputs, inplace=False)
        return _assemble(spec, input_names, args, forward_src, backward_src, graph_src)
    # a FermiDirac form's derivatives hold sums of Softplus and Sigmoid whose growing parts cancel (printer.prepare)
    fermi = spec.forward.has(FermiDirac)
    forward_src = emit_function("_forward", args, [spec.forward], spec.inputs, inplace=True, fermi_dirac_form=fermi)
    # out-of-place twin, for broadcasting inputs and functorch transforms (see _needs_graph_code)
    forward_src += "\n\n" + emit_function("_forward_graph", args, [spec.forward], spec.inputs, inplace=False,
                                            fermi_dirac_form=fermi)
    if spec.saves == "output":
        y = next(iter(spec.derivative_in_output.free_symbols - {g}))
        backward_args = [(g, "g", True), (y, "y", True)]
        grads = [g * spec.derivative_in_output]
        grad_inputs = (y,)
    else:
        backward_args = [(g, "g", True)] + args
        grads = [_gradient_over_intervals(g, d, spec.inputs) for d in spec.derivatives]
        grad_inputs = spec.inputs
    fused = _fused_backward(spec)
    if fused is not None:
        backward_src = f"def _backward(g, x):\n    return ({fused},)\n"
    else:
        backward_src = emit_function("_backward", backward_args, grads, grad_inputs, inplace=True,
                                     fermi_dirac_form=fermi)
    graph_src = emit_function("_backward_graph", backward_args, grads, grad_inputs, inplace=False,
                              fermi_dirac_form=fermi)
    return _assemble(spec, input_names, args, forward_src, backward_src, graph_src)


def _gradient_over_intervals(g: sympy.Symbol, derivative: sympy.Expr, inputs: tuple) -> sympy.Expr:
    """g*derivative, or, for a derivative piecewise polynomial in one input with a branch that is not a constant
    (steps of Max/Min times polynomials: hardswish's x*H(1 - Max(0, (x + 3)/6))*H((x + 3)/6)/6 + Min(1, ...)),
    one Piecewise over its intervals from the left, g inside each branch: Piecewise((0, x <= -3),
    (g*(x/3 + 1/2), x < 3), (g, True)), F.hardswish's backward kernel.  The product of steps gave 0*inf = NaN
    at x = +-inf (the kernel: g, 0) and for an infinite g where a step is 0 (x = -3: 0), and NaN at a NaN
    input, which takes no comparison's branch: the kernel's scalar path and torch._decomp give g there, as
    the rightmost branch does.  Derivatives with constant branches only keep their form (the steps are
    folded into one where() by the printer)."""
    product = g * derivative
    if len(inputs) != 1 or derivative.free_symbols != set(inputs) or not derivative.has(sympy.Heaviside):
        return product
    (x,) = inputs

    def polynomial_steps(e) -> bool:
        if e.is_number or e == x:
            return True
        if isinstance(e, (sympy.Add, sympy.Mul, sympy.Max, sympy.Min)):
            return all(polynomial_steps(a) for a in e.args)
        if isinstance(e, sympy.Pow):
            return e.exp.is_Integer and e.exp >= 0 and polynomial_steps(e.base)
        if isinstance(e, sympy.Heaviside):
            return len(e.args) == 2 and e.args[1].is_number and polynomial_steps(e.args[0])
        return False

    if not polynomial_steps(derivative):
        return product
    try:
        folded = sympy.piecewise_fold(derivative.rewrite(sympy.Piecewise))
        pairs = folded.as_expr_set_pairs() if isinstance(folded, sympy.Piecewise) else None
    except (NotImplementedError, TypeError, ValueError):
        return product
    if not pairs or all(value.is_number for value, _ in pairs):
        return product
    pieces = []
    for value, where in pairs:
        if not value.is_polynomial(x):
            return product
        for part in (where.args if isinstance(where, sympy.Union) else (where,)):
            if isinstance(part, sympy.FiniteSet):
                pieces += [(point, point, False, False, value) for point in part.args]
            elif isinstance(part, sympy.Interval):
                pieces.append((part.start, part.end, part.left_open, part.right_open, value))
            else:
                return product
    # bool(): SymPy's true/false do not order (two pieces starting at one kink raised a bare TypeError:
    # "A Boolean argument can only be used in Eq and Ne", uniform-smoothed hardtanh at width 1)
    pieces.sort(key=lambda p: (p[0], bool(p[2])))
    # the pieces tile the real line from -oo: each is taken where x is at most its right end
    if pieces[0][0] != -sympy.oo or pieces[-1][1] != sympy.oo:
        return product
    for (_, end, _, right_open, _), (start, _, left_open, _, _) in zip(pieces, pieces[1:]):
        if start != end or left_open == right_open:
            return product
    branches = [(g * value, x < end if right_open else x <= end) for _, end, _, right_open, value in pieces[:-1]]
    return sympy.Piecewise(*branches, (g * pieces[-1][4], True))


def _passes(function_source: str) -> int:
    """Tensor operations (roughly: statements and a call in the return) of a generated function."""
    *body, returned = function_source.strip().splitlines()[1:]
    return len(body) + (1 if re.search(r"\w\(", returned) else 0)


# where _assemble's template puts the prelude's helpers, before they are cut down to those the code uses
_PRELUDE_MARK = "# symact: prelude"


@functools.lru_cache(maxsize=1)
def _prelude_statements() -> tuple[tuple[str, frozenset, frozenset], ...]:
    """PRELUDE cut into its top-level statements, each with the comments above it: (text, the names it binds,
    the names it reads)."""
    lines = PRELUDE.splitlines(keepends=True)
    statements, start = [], 0
    for node in ast.parse(PRELUDE).body:
        text = "".join(lines[start:node.end_lineno])
        start = node.end_lineno
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            binds = {node.name}
        else:
            binds = {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
        statements.append((text, frozenset(binds), frozenset(_names_read(node))))
    return tuple(statements)


def _names_read(tree: ast.AST) -> set:
    return {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}


def _with_prelude(source: str) -> str:
    """``source`` with the prelude's statements that it uses, directly or through each other, in place of
    :data:`_PRELUDE_MARK`: an exported relu need not carry the Fermi-Dirac or erf helpers (the whole prelude
    is about 400 lines)."""
    needed = _names_read(ast.parse(source))
    statements = _prelude_statements()
    kept = [False] * len(statements)
    changed = True
    while changed:
        changed = False
        for i, (_, binds, reads) in enumerate(statements):
            if not kept[i] and binds & needed:
                kept[i], changed = True, True
                needed |= reads
    used = "".join(text for keep, (text, _, _) in zip(kept, statements) if keep)
    return source.replace(_PRELUDE_MARK, used.strip("\n") + "\n", 1)


def _assemble(spec: CodegenSpec, input_names, args, forward_src: str, backward_src: str,
              graph_src: str) -> str:
    cls = spec.class_name
    fn_cls = _function_class_name(cls)
    all_names = [n for _, n, _ in args]
    n_inputs = len(spec.inputs)
    saved = "output," if spec.saves == "output" else ", ".join(all_names) + ","
    reduce_lines = []
    for i, (_, pname, _) in enumerate(spec.trainable):
        k = n_inputs + i
        reduce_lines.append(f"        grads[{k}] = grads[{k}].sum_to_size({pname}.shape)")
    backward_unpack = "        (y,) = ctx.saved_tensors" if spec.saves == "output" else (
        f"        {', '.join(all_names)}, = ctx.saved_tensors"
    )
    call_args = "y" if spec.saves == "output" else ", ".join(all_names)
    jvp_body = ("        (y,) = ctx.saved_tensors\n"
                "        return _in_compute_dtype(_backward_graph, tangents[0], y)[0]") if spec.saves == "output" else (
        "        return _jvp(_backward_graph, tangents, *ctx.saved_tensors)")

    def docstring_text(text) -> str:  # any text inside a """docstring""" (symbol names may hold \ or ")
        return str(text).replace("\\", "\\\\").replace('"', '\\"')

    params_doc = "".join(f"\n    {n} = {v} (constant{'' if n == p else f'; {p} in phi'})" for p, n, v in spec.constants)
    params_doc += "".join(f"\n    {n} = {v!r} (trainable nn.Parameter{'' if n == p.name else f'; {p.name} in phi'})"
                          for p, n, v in spec.trainable)
    params_doc = docstring_text(params_doc)
    formula_doc = docstring_text(textwrap.fill(spec.formula, 88, subsequent_indent="        "))
    gated = n_inputs == 2
    init_sig = ", ".join(f"{n}: float = {v!r}" for _, n, v in spec.trainable)
    init_body = "".join(
        f"\n        self.{n} = torch.nn.Parameter(torch.tensor(float({n})))" for _, n, _ in spec.trainable
    )
    const_repr = ", ".join(f"{n}={v}" for _, n, v in spec.constants)
    # constants as read-only attributes, like nn.ELU's alpha; a setter that only stored the value
    # would change nothing the module computes, so setting one is refused with the way to do it
    constant_properties = "".join(textwrap.indent(textwrap.dedent(f'''\

        @property
        def {n}(self) -> float:
            """{docstring_text(p)} = {v}, baked into the generated code."""
            return float({v!r})

        @{n}.setter
        def {n}(self, value: float) -> None:
            raise AttributeError({(f"{n} = {v} is baked into the generated code of {cls}; to change it, "
                                   f"generate a new module from the activation with the new value "
                                   f"(torch_module(act.with_params({p}=...))), or make it trainable "
                                   f"(torch_module(act, trainable=({p!r},)))")!r})
        '''), "    ") for p, n, v in spec.constants)
    jit_unused = (f"\n    __jit_unused_properties__ = {[n for _, n, _ in spec.constants]!r}"
                  if spec.constants else "")
    # trainable values are read only where they can be (not on meta/fake tensors): see extra_repr below
    # string literals written with repr: a symbol name may hold a quote (sympy.Symbol("a'"))
    train_repr = " + ".join(f"{', ' + n + '='!r} + _shown(self.{n})" for _, n, _ in spec.trainable)
    extra = repr(f"phi({', '.join(input_names)}) = {spec.formula}")
    shown_def = textwrap.indent(textwrap.dedent('''\
        def _shown(t):
            # the number where it can be read; meta tensors (and fake ones while torch.compile
            # traces) have no value, and a reshaped parameter is no scalar: show shape and device
            if t.numel() == 1 and t.device.type != "meta":
                try:
                    return format(t.item(), "g")
                except RuntimeError:
                    pass
            return f"tensor(shape={tuple(t.shape)}, dtype={t.dtype}, device={t.device})"

        '''), "        ") if spec.trainable else ""
    if spec.surrogate is not None:
        extra += " + " + repr(f", backward: {spec.surrogate}")
    if const_repr:
        extra += " + " + repr(f", {const_repr}")
    if train_repr:
        extra += " + " + train_repr
    apply_args = ", ".join(input_names + [f"self.{n}" for _, n, _ in spec.trainable])
    if gated:
        forward_sig = "def forward(self, x: torch.Tensor, v: torch.Tensor | None = None) -> torch.Tensor:"
        # the class name as a literal: TorchScript has no type(self).__name__
        split = textwrap.indent(textwrap.dedent('''\
            """phi(x, v); with one tensor, its last dimension is split in half like F.glu (x first)."""
            if v is None:
                if x.dim() == 0:
                    raise ValueError(
                        "CLS splits the last dimension in half (x, v) like F.glu, but the input is "
                        "0-dimensional; pass a tensor whose last dimension has even size or call it as (x, v)"
                    )
                if x.shape[-1] % 2:
                    raise ValueError(
                        "CLS splits the last dimension in half (x, v) like F.glu, "
                        f"but it has odd size {x.shape[-1]}; pass an even size or call it as (x, v)"
                    )
                x, v = x.chunk(2, dim=-1)
            '''), "        ").replace("CLS", cls)
    else:
        forward_sig = "def forward(self, x: torch.Tensor) -> torch.Tensor:"
        split = '        """phi(x), elementwise."""\n'
    init_def = f"    def __init__(self{', ' + init_sig if init_sig else ''}) -> None:"
    # one statement is one op already writing its result once: blocks would only add a copy
    forward_call = f"_blockwise(_forward, {', '.join(all_names)})" if _passes(forward_src) > 1 else (
        f"_in_compute_dtype(_forward, {', '.join(all_names)})")
    backward_call = f"_blockwise(_backward, g, {call_args})" if _passes(backward_src) > 1 else (
        f"_in_compute_dtype(_backward, g, {call_args})")
    doc_name = docstring_text(spec.name)
    surrogate_doc = "" if spec.surrogate is None else (
        "\nBackward multiplies by the surrogate gradient " + docstring_text(spec.surrogate) + ", not by phi'.")
    return _with_prelude(f'''"""{cls}: the {doc_name} activation, generated by symact (numeric.codegen).

    phi({", ".join(input_names)}) = {formula_doc}
{params_doc.lstrip(chr(10)) and "Parameters:" + params_doc}

Forward (safe form): {docstring_text(spec.forward)}{" -- computed by PyTorch built-ins (prefer_builtins)" if spec.builtin else ""}
Backward saves the {spec.saves} ({"one tensor" if n_inputs == 1 and not spec.trainable else "the inputs"}).{surrogate_doc}
This file imports only torch.
"""
import torch
import torch.nn.functional as F
{_PRELUDE_MARK}

{forward_src}

{backward_src}

{graph_src}

class {fn_cls}(torch.autograd.Function):
    """autograd Function for phi: the backward recomputes {"phi'" if spec.surrogate is None else "the surrogate gradient"} from the saved {spec.saves}."""

    generate_vmap_rule = True

    @staticmethod
    def forward({", ".join(all_names)}):
        if _needs_graph_code({n_inputs}, ({", ".join(all_names)},)):  # broadcasting, vmap: out of place
            return _in_compute_dtype(_forward_graph, {", ".join(all_names)})[0]
        return {forward_call}[0]

    @staticmethod
    def setup_context(ctx, inputs, output):
        {", ".join(all_names)}, = inputs
        ctx.save_for_backward({saved})

    @staticmethod
    @_backward_for_this_torch
    def backward(ctx, g):
{backward_unpack}
        # create_graph: differentiable, out-of-place code; so too for broadcasting inputs and vmap
        if torch.is_grad_enabled() or _needs_graph_code({1 if spec.saves == "output" else 1 + n_inputs}, (g, {call_args})):
            grads = list(_in_compute_dtype(_backward_graph, g, {call_args}))
        else:  # plain backward: scratch buffers reused in place
            grads = list({backward_call})
{chr(10).join(reduce_lines)}
        return tuple(grads)


class {fn_cls}WithJvp({fn_cls}):
    """{fn_cls} with forward-mode AD (torch.func.jvp, jacfwd, hessian), used only outside
    torch.compile: Dynamo does not trace autograd Functions that define a jvp."""

    @staticmethod
    def setup_context(ctx, inputs, output):
        {", ".join(all_names)}, = inputs
        ctx.save_for_backward({saved})
        ctx.save_for_forward({saved})

    @staticmethod
    def jvp(ctx, *tangents):
{jvp_body}


class {cls}(torch.nn.Module):
    """The {doc_name} activation as an nn.Module.

    phi({", ".join(input_names)}) = {formula_doc}
    """

    formula = {spec.formula!r}{jit_unused}

{init_def}
        super().__init__(){init_body}

    {forward_sig}
{split}        if not torch.jit.is_scripting():  # TorchScript compiles no code under this test
            if _forward_ad_active({apply_args}):
                return {fn_cls}WithJvp.apply({apply_args})
        return {fn_cls}.apply({apply_args})

    def extra_repr(self) -> str:
{shown_def}        return {extra}
{constant_properties}''')


def generated_source(act: Any, trainable: Iterable = (), class_name: str | None = None,
                     name: str | None = None, prefer_builtins: bool = False) -> str:
    """The Python source generated for ``act`` (what :func:`export_module` writes)."""
    return _source(codegen_spec(act, trainable, name=name, class_name=class_name,
                                prefer_builtins=prefer_builtins))


_NAMESPACES: dict[str, dict] = {}


def _load(source: str, class_name: str) -> dict:
    """Execute generated source under a file name of its own (its own code objects)."""
    digest = hashlib.sha1(source.encode()).hexdigest()[:16]
    if digest in _NAMESPACES:
        return _NAMESPACES[digest]
    filename = f"<symact-codegen {class_name} {digest}>"
    # linecache lets tracebacks, inspect and torch.compile read the generated code
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    # a module in sys.modules with that file name: inspect.getsource finds the classes' source
    # through it (torch.jit.script needs it; without it: "<class ...> is a built-in class")
    module = types.ModuleType(f"symact_generated_{class_name}_{digest}")
    module.__file__ = filename
    sys.modules[module.__name__] = module
    namespace = module.__dict__
    exec(compile(source, filename, "exec"), namespace)
    _NAMESPACES[digest] = namespace
    return namespace


def torch_function(act: Any, trainable: Iterable = (), name: str | None = None,
                   prefer_builtins: bool = False, forward_ad: bool = False, *,
                   real_line: bool = True) -> type[torch.autograd.Function]:
    """A ``torch.autograd.Function`` subclass computing ``act`` elementwise.

    Call it as ``F.apply(x)`` (``F.apply(x, v)`` for gated forms; trainable
    parameters follow as tensors in the order given).  Backward saves one tensor for
    a single-input activation and supports double backward and ``torch.func``'s
    reverse-mode transforms (``grad``, ``vmap``).

    ``forward_ad=True`` returns the subclass that also defines ``jvp``, for forward-mode
    AD (``torch.func.jvp``, ``jacfwd``, ``hessian``, ``torch.autograd.forward_ad``).  It is
    not the default because torch.compile's Dynamo does not trace autograd Functions
    that define a ``jvp``; :func:`torch_module` picks between the two at call time.
    ``real_line``: as for :func:`codegen_spec`.

    >>> import sympy, torch
    >>> x = sympy.Symbol("x", real=True)
    >>> fn = torch_function(x / (1 + sympy.exp(-x)), name="silu")
    >>> t = torch.tensor([-100.0, 1.0], requires_grad=True)
    >>> fn.apply(t).sum().backward(); t.grad
    tensor([-0.0000, 0.9277])
    """
    spec = codegen_spec(act, trainable, name=name, prefer_builtins=prefer_builtins, real_line=real_line)
    namespace = _load(_source(spec), spec.class_name)
    function_class = _function_class_name(spec.class_name)
    return namespace[function_class + "WithJvp" if forward_ad else function_class]


def torch_module(act: Any, trainable: Iterable = (), compile: bool = False, name: str | None = None,
                 class_name: str | None = None, prefer_builtins: bool = False,
                 **compile_kwargs) -> torch.nn.Module:
    """An ``nn.Module`` applying ``act`` elementwise (gated forms: ``m(x, v)`` or ``m(xv)``).

    ``act``: an Activation, a catalogue name, a formula string or a SymPy expression
    (as for :func:`codegen_spec`).

    ``trainable``: names of parameters of ``act`` to register as ``nn.Parameter``, or one name
    (initialised at their current values; the others are baked in as constants).  Each is
    registered under its own name, or as ``p_name`` where the generated code or nn.Module
    already uses that name (``forward``, ``training``, ``float``).
    ``compile=True`` returns ``torch.compile(module, **compile_kwargs)``; other keyword arguments
    (``mode=``, ``backend=``) are taken only with it, and only those torch.compile has (TypeError otherwise).
    ``prefer_builtins=True`` trades accuracy for eager speed (see :func:`codegen_spec`).
    The module carries ``activation`` (the Activation or expression it was generated from).

    >>> import torch
    >>> torch_module("squareplus", trainable=("b",))(torch.tensor([0.0, 3.0]))
    tensor([1.0000, 3.3028], grad_fn=<_SquareplusFunctionBackward>)
    """
    if compile_kwargs:
        _check_compile_kwargs(compile, compile_kwargs)
    if isinstance(act, str):
        act = symact_activation(act)
    trainable = _trainable_names(trainable)  # once: a generator would be empty for the pickling recipe
    spec = codegen_spec(act, trainable, name=name, class_name=class_name, prefer_builtins=prefer_builtins)
    namespace = _load(_source(spec), spec.class_name)
    cls = namespace[spec.class_name]
    cls.__reduce_ex__ = _reduce_generated_module
    recipe = (act, trainable, name, class_name, prefer_builtins)
    if "_symact_recipe" not in cls.__dict__:
        # on the class too, for modules made by calling it (type(m)(alpha=0.5)): they deepcopy and
        # pickle as well (any recipe of this class regenerates the same source, so the same class)
        cls._symact_recipe, cls.activation = recipe, act
    module = cls()
    module.activation = act
    module._symact_recipe = recipe
    if compile:
        import torch  # lazy: `import numeric` must not import torch

        if not namespace["_COMPILER_TRACES_BACKWARD"]:
            warnings.warn(f"torch {torch.__version__}: the compiled {spec.name} module runs its backward eagerly "
                          "(torch 2.11 compiled it into zero gradients); torch >= 2.12 compiles it too",
                          RuntimeWarning, stacklevel=2)
        return torch.compile(module, **compile_kwargs)
    return module


def _check_compile_kwargs(compile: bool, compile_kwargs: dict) -> None:
    """Options for torch.compile are taken only with compile=True, and only those it has: a misspelt
    argument (``trainables=...``) was otherwise swallowed silently."""
    import inspect

    import torch  # lazy: `import numeric` must not import torch

    options = [n for n in inspect.signature(torch.compile).parameters if n != "model"]
    unknown = sorted(set(compile_kwargs) - set(options))
    if unknown:
        raise TypeError(
            f"torch_module() got unexpected keyword argument(s) {unknown}; its own are act, trainable, compile, "
            f"name, class_name, prefer_builtins, and with compile=True it passes on torch.compile's {options}; "
            f"to set a parameter of the activation, pass symact.activation(act, {unknown[0]}=...)")
    if not compile:
        raise TypeError(
            f"{sorted(compile_kwargs)} are options of torch.compile, used only with compile=True; "
            "pass compile=True as well, or leave them out")


def _reduce_generated_module(module, protocol):
    """Pickle support (torch.save(model)): the class lives in a module made at run time,
    which pickle cannot import by name, so unpickling regenerates it from the activation
    (the same source, so the same class) and then restores the module's state.

    Only for the generated class itself: a subclass (a user's, or the one
    nn.utils.parametrize swaps in) is pickled as Python pickles it -- by its own name, or
    with torch's error for parametrized modules -- since regenerating would give the base
    class, without the subclass's methods or the parametrization its state refers to."""
    if type(module).__dict__.get("__reduce_ex__") is not _reduce_generated_module:
        return object.__reduce_ex__(module, protocol)
    return (_rebuild_generated_module, module._symact_recipe, module.__dict__.copy())


def _rebuild_generated_module(act, trainable, name, class_name, prefer_builtins):
    return torch_module(act, trainable, name=name, class_name=class_name, prefer_builtins=prefer_builtins)


def export_module(act: Any, path: str | Path, class_name: str | None = None, trainable: Iterable = (),
                  name: str | None = None, prefer_builtins: bool = False) -> Path:
    """Write a standalone ``.py`` file (imports only torch) defining the module class.

    The file holds the same source :func:`torch_module` executes, so the imported
    class computes the same values and gradients.  Returns the path written.

    >>> import importlib.util, pathlib, tempfile, torch
    >>> path = export_module("mish", pathlib.Path(tempfile.mkdtemp()) / "mish.py", class_name="Mish")
    >>> spec = importlib.util.spec_from_file_location("mish", path)
    >>> mish = importlib.util.module_from_spec(spec); spec.loader.exec_module(mish)
    >>> mish.Mish()(torch.tensor([1.0]))    # x * tanh(softplus(x)), as torch.nn.Mish
    tensor([0.8651])
    """
    spec = codegen_spec(act, trainable, name=name, class_name=class_name, prefer_builtins=prefer_builtins)
    path = Path(path)
    path.write_text(_source(spec))
    return path
