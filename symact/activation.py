"""The :class:`Activation` value and the :func:`activation` constructor.

An activation is an immutable SymPy expression in the input symbol ``x`` (and ``v``
for the two-input gated forms) together with named parameters that carry current
values.  Everything derived from it (derivatives, limits, properties, kinks) is
computed lazily on first use and cached, so constructing an activation never
simplifies anything.

Example
-------
>>> import symact
>>> act = symact.activation("leaky_relu", negative_slope=0.2)
>>> act
Activation('leaky_relu', Piecewise((x, x > 0), (negative_slope*x, True)), negative_slope=1/5)
>>> act.derivative().concrete_expr
Piecewise((1, x > 0), (1/5, True))
>>> symact.activation("x*tanh(log(1+exp(x)))").properties().monotone
False
"""

from __future__ import annotations

import difflib
import functools
import numbers
import re
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Iterable, Mapping

import sympy
from sympy.core.function import AppliedUndef
from sympy.parsing.sympy_parser import (
    TokenError,
    convert_xor,
    standard_transformations,
)

from ._safe_parse import (
    MAX_EXACT_ARGUMENT,
    check_exact_arguments,
    is_exactly_evaluated,
    safe_number,
    safe_parse,
    sympy_vocabulary,
)
from .primitives import Log1p, pytorch_kink_convention
from .errors import (
    DomainError,
    FormulaError,
    NoInverseError,
    NonRealExpressionError,
    UnknownActivationError,
    UnknownSymbolError,
    is_whole_number,
    python_number,
)

__all__ = ["x", "v", "Activation", "Properties", "activation", "parse_formula"]

#: The input symbol of every activation.
x = sympy.Symbol("x", real=True)
#: The second (gate) input of the two-input gated forms (glu, reglu, ...).
v = sympy.Symbol("v", real=True)

# Functions whose presence makes an expression only piecewise smooth.
_PIECEWISE_ATOMS = (
    sympy.Piecewise,
    sympy.Max,
    sympy.Min,
    sympy.Abs,
    sympy.Heaviside,
    sympy.sign,
    sympy.DiracDelta,
    sympy.floor,
    sympy.ceiling,
)

_TRANSFORMATIONS = standard_transformations + (convert_xor,)


def _sigmoid(u):
    return 1 / (1 + sympy.exp(-u))


def _softplus(u):
    return sympy.log(1 + sympy.exp(u))


#: Names a formula string may use besides SymPy's own functions.
FORMULA_NAMESPACE: Mapping[str, Any] = MappingProxyType(
    {
        "x": x,
        "v": v,
        "e": sympy.E,
        "E": sympy.E,
        "pi": sympy.pi,
        "sigmoid": _sigmoid,
        "softplus": _softplus,
        "relu": lambda u: sympy.Max(0, u),
        "heaviside": lambda u: sympy.Heaviside(u, 0),
        "step": lambda u: sympy.Heaviside(u, 0),
        "Heaviside": lambda u, h0=0: sympy.Heaviside(u, h0),
        "max": sympy.Max,
        "min": sympy.Min,
        "abs": sympy.Abs,
        "ln": sympy.log,
        "arctan": sympy.atan,
        "arcsinh": sympy.asinh,
        "arctanh": sympy.atanh,
        "Phi": lambda u: (1 + sympy.erf(u / sympy.sqrt(2))) / 2,
    }
)


def _exact_number(value: Any, name: str, label: str | None = None) -> sympy.Expr:
    """A parameter value as a SymPy number or expression, converted exactly.

    Python floats and decimal strings become the exact decimal typed (0.2 and "0.2" are both 1/5);
    a string must be a number ("1/3", "sqrt(2)", "pi/4"), never a formula or a name.  ``label``
    names the value in error messages (default: ``parameter 'name'``).
    """
    label = label or f"parameter {name!r}"
    if isinstance(value, bool):
        raise FormulaError(f"{label} got a bool ({value}); pass a number")
    # a NumPy scalar or 0-d tensor is its Python number: np.float64(1.5) raised a bare TypeError (its repr is
    # "np.float64(1.5)"), np.float32(1.5) became the 6-digit Float 1.50000
    value = python_number(value)
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise FormulaError(f"{label} is {value}; pass a finite number")
        return sympy.Rational(repr(float(value)))
    if isinstance(value, str):
        return safe_number(value, name, label)
    try:
        result = sympy.sympify(value, strict=True)
    except (sympy.SympifyError, TypeError):
        raise FormulaError(f"{label}: cannot read {value!r} ({type(value).__name__}) as a number; pass a number") from None
    if not isinstance(result, sympy.Expr):
        raise FormulaError(f"{label}: {value!r} is not a number or expression; pass a number")
    if result.has(sympy.nan, sympy.zoo) or (result.is_number and result.is_finite is False):
        raise FormulaError(f"{label} is {result}; pass a finite number")
    if result.is_number and result.is_real is False:
        # beta=1j was reported as the formula not being real at x = -5/2
        raise NonRealExpressionError(f"{label} is {result}, not a real number; pass a real number")
    return result


def _keywords_used_as_names(text: str) -> list[str]:
    """Python keywords in ``text`` that stand where a name would (lambda, in, is, ...), in order."""
    import io
    import keyword
    import tokenize

    found = []
    try:
        for token in tokenize.generate_tokens(io.StringIO(text).readline):
            if token.type == tokenize.NAME and keyword.iskeyword(token.string) and token.string not in (
                    "True", "False", "None") and token.string not in found:
                found.append(token.string)
    except (TokenError, SyntaxError):
        pass  # an unbalanced formula: the keywords before the error are what it has
    return found


def parse_formula(text: str, params: Iterable[sympy.Symbol] = ()) -> sympy.Expr:
    """Parse ``text`` into a SymPy expression in ``x`` (and ``v``) and ``params``.

    ``^`` means power.  Besides SymPy's functions the formula may use ``sigmoid``,
    ``softplus``, ``relu``, ``heaviside``/``step``, ``Phi`` (standard normal CDF),
    ``max``/``min``/``abs``/``ln``/``arctan``.

    The text is not run as Python code: it is evaluated with SymPy's expression names only (no
    builtins), and string literals, attribute access and dunder names are refused.

    Raises :class:`FormulaError` on a syntax error, a call of an unknown function, or a refused token.

    >>> parse_formula("x^2 + 1")
    x**2 + 1
    """
    namespace = dict(FORMULA_NAMESPACE)
    namespace.update({p.name: p for p in params})
    # A bare name that SymPy knows as a function (beta, gamma, zeta, ...) but that is not
    # called is meant as a symbol; without this it would parse as the function class.
    for name in _bare_names(text):
        namespace.setdefault(name, sympy.Symbol(name, real=True))
    try:
        expr = safe_parse(text, namespace, sympy_vocabulary(), _TRANSFORMATIONS)
    except (SyntaxError, TokenError, TypeError, AttributeError, NameError) as exc:
        reserved = _keywords_used_as_names(text)
        if reserved:
            # 'lambda*x' with lambda=2 said "Starred arguments in lambda not supported"
            raise FormulaError(
                f"cannot parse the formula {text!r}: {reserved[0]!r} is a Python keyword, so it cannot name a "
                f"parameter; rename it (e.g. {reserved[0][:3]!r} or {reserved[0] + '_'!r}) in the formula and its "
                "keyword argument") from None
        raise FormulaError(
            f"cannot parse the formula {text!r}: {exc}. Write it in Python/SymPy syntax in the "
            "input x, e.g. 'x*tanh(log(1+exp(x)))' ('^' also means power)."
        ) from None
    if isinstance(expr, sympy.Lambda):  # a Lambda is an Expr to SymPy, but not a value of x
        body = str(expr(x)) if len(expr.variables) == 1 else "x**2"
        raise FormulaError(
            f"the formula {text!r} is a lambda (a function object), not an expression in x; write only "
            f"its body in the input x, e.g. {body!r}"
        )
    if not isinstance(expr, sympy.Expr):
        raise FormulaError(
            f"the formula {text!r} is {type(expr).__name__}, not an expression; write a function of x"
        )
    undefined = sorted({type(f).__name__ for f in expr.atoms(AppliedUndef)})
    if undefined:
        raise FormulaError(
            f"the formula {text!r} calls unknown function(s) {', '.join(undefined)}; use SymPy "
            "functions (exp, log, tanh, erf, ...) or sigmoid/softplus/relu/heaviside/Phi"
        )
    return expr


_CONSTANTS = {"pi", "E", "I", "oo", "e", "nan", "zoo", "True", "False", "S"}


def _bare_names(text: str) -> set:
    """Identifiers in ``text`` that are not followed by a call parenthesis."""
    import io
    import keyword
    import tokenize

    names = set()
    try:
        tokens = [t for t in tokenize.generate_tokens(io.StringIO(text).readline) if t.type != tokenize.NL]
    except (tokenize.TokenError, SyntaxError, IndentationError):
        return names
    for i, token in enumerate(tokens):
        if token.type != tokenize.NAME or keyword.iskeyword(token.string) or token.string in _CONSTANTS:
            continue
        following = tokens[i + 1].string if i + 1 < len(tokens) else ""
        preceding = tokens[i - 1].string if i > 0 else ""
        if following != "(" and preceding != ".":
            names.add(token.string)
    return names


@dataclass(frozen=True)
class Properties:
    """Facts about an activation, derived from its formula (with parameters at their values).

    Each boolean is ``True``/``False`` when decided, ``None`` when undecided.
    ``evidence`` says how each fact was decided: ``"symbolic"`` (a SymPy proof),
    ``"counterexample at x=..."`` (exact evaluation at witness points), or
    ``"sampled"`` (no sign change or asymmetry at the sample points and at
    infinity, but no symbolic proof found).
    """

    bounded_above: bool | None
    bounded_below: bool | None
    monotone: bool | None
    direction: str | None  # "non-decreasing", "non-increasing", "constant" or None
    odd: bool | None
    even: bool | None
    smoothness: Any  # k of C^k (sympy.oo for C-infinity, -1 for discontinuous)
    differentiable_at_0: bool
    value_at_0: sympy.Expr
    slope_at_0: sympy.Expr
    limit_at_plus_infinity: sympy.Expr
    limit_at_minus_infinity: sympy.Expr
    kinks: tuple
    evidence: Mapping[str, str] = field(default_factory=dict, compare=False)

    @property
    def smooth(self) -> bool:
        """True when the activation is infinitely differentiable everywhere."""
        return self.smoothness == sympy.oo

    def as_dict(self) -> dict:
        """Plain-Python view, for JSON output: exact SymPy values as strings ("1/2", "sqrt(2)", "oo"),
        since a float would print sqrt(2) as 1.4142135623730951; a SymPy Float, which is itself
        approximate, as a float."""
        out = {}
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            if isinstance(value, sympy.Float):
                value = float(value)
            elif isinstance(value, sympy.Basic):
                value = str(value)
            elif isinstance(value, tuple):
                value = [str(v) for v in value]
            elif isinstance(value, Mapping):
                value = dict(value)
            out[name] = value
        return out


@dataclass(frozen=True, eq=False)
class Activation:
    """An activation function: an exact SymPy expression with named parameters.

    Attributes
    ----------
    name:
        Catalogue name or a descriptive name.
    expr:
        The formula, in :data:`x` (and :data:`v` for gated forms) and the parameter symbols.
    params:
        Read-only mapping parameter symbol -> current value (a SymPy number or expression).
    inputs:
        ``(x,)`` or ``(x, v)``.
    source:
        Where the formula comes from (paper), if known.
    surrogate:
        For an activation trained with a surrogate gradient: the expression backpropagation
        multiplies the incoming gradient by in place of dphi/dx, in ``x`` and the parameters
        (HeLU: a ReLU forward whose gradient is ``Heaviside(x + alpha, 0)``, 1 already for
        x > -alpha).  ``None`` (the default): phi' itself.  :meth:`derivative` is always the
        derivative of ``expr``; :meth:`backward_derivative` is what a backward pass uses.
    requires:
        Conditions the parameters' values must meet, as ``((condition, reason), ...)`` with each
        condition a SymPy relation in the parameter symbols (hardtanh: ``min_val <= max_val``).
        :meth:`with_params` and :meth:`subs` refuse values that break one, whatever the activation
        was derived as (its derivative, its DKS transform, a partial substitution).

    Activations are values: every method returns a new object, derived facts are
    cached.  Equality compares formula, surrogate, parameters and inputs (not the name).
    """

    name: str
    expr: sympy.Expr
    params: Mapping[sympy.Symbol, sympy.Expr] = field(default_factory=dict)
    inputs: tuple = (x,)
    source: str | None = None
    torch_spec: Any = None  # catalogue's TorchBuiltin, or None
    surrogate: sympy.Expr | None = None
    requires: tuple = ()
    # (formula, n) of the activation this one is the n-th derivative of, kept only where a tie of a
    # Max/Min in it falls at points that move with the parameters (Min(Max(0, x), a*x**2) ties at
    # x = 1/a): such ties are settled with the parameters' values (concrete_expr), not in expr.
    derived_from: tuple | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "params", MappingProxyType(dict(self.params)))

    # A value: copies are the object itself (copy.deepcopy of a model that holds one, for an
    # EMA or a checkpoint, must work), and pickle stores the parameters as a dict, since it
    # cannot store the read-only view.
    def __reduce__(self):
        return (type(self), (self.name, self.expr, dict(self.params), self.inputs, self.source, self.torch_spec,
                             self.surrogate, self.requires, self.derived_from))

    def __copy__(self) -> "Activation":
        return self

    def __deepcopy__(self, memo: dict) -> "Activation":
        return self

    # ------------------------------------------------------------------ basics
    def __repr__(self) -> str:
        extra = "".join(f", {p.name}={val}" for p, val in self.params.items())
        if self.surrogate is not None:
            extra += f", surrogate={self.surrogate}"
        return f"Activation({self.name!r}, {self.expr}{extra})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Activation):
            return NotImplemented
        return (
            self.inputs == other.inputs
            and self.expr == other.expr
            and self.surrogate == other.surrogate
            and dict(self.params) == dict(other.params)
        )

    def __hash__(self) -> int:
        return hash((self.inputs, self.expr, self.surrogate,
                     tuple(sorted((p.name, str(v)) for p, v in self.params.items()))))

    def __call__(self, *args: Any) -> sympy.Expr:
        """Exact value at the given input(s) with parameters at their values.

        >>> activation("relu")(-3)
        0

        A float input gives a float with every digit of its precision correct (the float's exact value is
        evaluated, with the working precision raised where the formula cancels), and +-oo the limit there:

        >>> activation("gelu")(1.0), activation("gelu")(float("-inf"))
        (0.841344746068543, 0)
        >>> activation("softplus")(-40.0)
        4.24835425529159e-18

        A formula that cancels more than 20000 digits at the point raises :class:`FormulaError`.
        """
        if len(args) != len(self.inputs):
            raise TypeError(f"{self.name} takes {len(self.inputs)} input(s), got {len(args)}")
        values = [_input_value(a) for a in args]
        if any(v is sympy.nan for v in values):
            raise DomainError(f"{self.name} at NaN: an activation takes real numbers, or +-oo (its limits there)")
        if len(values) == 1 and values[0] in (sympy.oo, -sympy.oo):
            # the formula itself is often oo*0 there (gelu at -oo: -oo*(erf(-oo) + 1)/2 = nan);
            # its value at +-oo is its limit
            return self.limit(values[0])
        floats = [v for v in values if isinstance(v, sympy.Float)]
        if not floats:
            return self.concrete_expr.xreplace(dict(zip(self.inputs, values)))
        # a float input asks for a number (gelu(1.0) was left as 0.5*erf(0.5*sqrt(2)) + 0.5), correct to the
        # input's precision (15 digits for a Python float).  The float's exact binary value goes in as a
        # Rational: substituted as a Float, SymPy evaluated each node at the float's 53 bits, and a sum that
        # cancels lost every digit (softplus(-40.0) gave 0 for 4.25e-18, gelu(-30.0) +1.9e-124 for -1.5e-196)
        exact = [sympy.Rational(v) if isinstance(v, sympy.Float) else v for v in values]
        at_point = self.concrete_expr.xreplace(dict(zip(self.inputs, exact)))
        digits = max(15, int(max(f._prec for f in floats) * 0.30103))
        value = _evaluated(at_point, digits)
        if value is None:
            # the same number written without the cancellation: 1 + erf(-a) (GELU's left tail) is 1 - erf(a) at
            # the point, which SymPy writes as erfc(a) exactly; log(1 + t) is Log1p(t) (softplus(-1e6))
            rewritten = at_point.rewrite(sympy.erfc) if at_point.has(sympy.erf) else at_point
            rewritten = rewritten.replace(
                lambda e: isinstance(e, sympy.log) and isinstance(e.args[0], sympy.Add)
                and sympy.S.One in e.args[0].args,
                lambda e: Log1p(e.args[0] - 1))
            if rewritten != at_point:
                value = _evaluated(rewritten, digits)
        if value is None:
            point = ", ".join(str(a) for a in args)
            raise FormulaError(
                f"{self.name} at {point}: the formula as written cancels more than 20000 digits there (its value is "
                f"that much smaller than its terms), so no digit of it is known; write it without the cancellation "
                f"(erfc(-u) for 1 + erf(u), log1p(u) for log(1 + u)), or take .limit(-oo)/.limit(oo) for the tail")
        return value

    @property
    def x(self) -> sympy.Symbol:
        """The (first) input symbol."""
        return self.inputs[0]

    @property
    def parameter_names(self) -> tuple:
        return tuple(p.name for p in self.params)

    def _parameter(self, name: str) -> sympy.Symbol:
        for p in self.params:
            if p.name == name:
                return p
        raise UnknownSymbolError(
            f"{self.name} has no parameter {name!r}; its parameters are "
            f"{list(self.parameter_names) or 'none'}"
        )

    @functools.cached_property
    def concrete_expr(self) -> sympy.Expr:
        """The formula with every parameter replaced by its value.

        For a derivative of a formula with parameters it is the derivative of the original's concrete
        formula, so that each tie or kink the values make gets the kink convention there:

        >>> phi = activation("Min(Max(0, x), a*x**2)", a=1)
        >>> phi.derivative().concrete_expr.subs(x, 1)
        1
        """
        if self.derived_from is not None:
            original, n = self.derived_from
            return _differentiated(original.xreplace(dict(self.params)), self.x, n, self.name)
        return self.expr.xreplace(dict(self.params)) if self.params else self.expr

    def _replace(self, **changes: Any) -> "Activation":
        fields = dict(
            name=self.name,
            expr=self.expr,
            params=dict(self.params),
            inputs=self.inputs,
            source=self.source,
            torch_spec=self.torch_spec,
            surrogate=self.surrogate,
            requires=self.requires,
            derived_from=self.derived_from,
        )
        if "expr" in changes and "derived_from" not in changes:
            fields["derived_from"] = None  # a new formula is no longer that derivative
        fields.update(changes)
        return Activation(**fields)

    # ------------------------------------------------------------ derivations
    def with_params(self, **values: Any) -> "Activation":
        """New parameter values, keeping the parameters symbolic in ``expr``.

        >>> activation("softplus").with_params(beta=2).params
        mappingproxy({beta: 2})
        """
        params = dict(self.params)
        for name, value in values.items():
            symbol = self._parameter(name)
            params[symbol] = _checked_value(symbol, _exact_number(value, name), self.name)
        changed = self._replace(params=params)
        if values:
            given = ", ".join(f"{name}={changed.params[changed._parameter(name)]}" for name in values)
            _check_requirements(self.name, self.requires, params, given)
            check_exact_arguments(self.expr, params, f"{self.name} with {given}")
            _check_finite(changed.concrete_expr, f"{self.name} at {given}")
            if changed.surrogate is not None:
                _check_surrogate(changed, f"the surrogate gradient of {self.name} at {given}")
            _check_real_with_params(changed, given)
        return changed

    def subs(self, **values: Any) -> "Activation":
        """Substitute parameters by values in the formula (they stop being parameters).

        A parameter named without a value is substituted by its current value.

        >>> activation("leaky_relu").subs(negative_slope=0.2).expr
        Piecewise((x, x > 0), (x/5, True))
        """
        params = dict(self.params)
        replacements = {}
        for name, value in values.items():
            symbol = self._parameter(name)
            value = params[symbol] if value is None else _exact_number(value, name)
            replacements[symbol] = _checked_value(symbol, value, self.name)
            del params[symbol]
        for what in (self.expr, self.surrogate):
            check_exact_arguments(what, replacements, f"{self.name} with "
                                  + ", ".join(f"{p.name}={val}" for p, val in replacements.items()) + " substituted")
        expr = self.expr.xreplace(replacements)
        derived_from = self.derived_from
        if derived_from is not None:
            original, n = derived_from
            derived_from = (original.xreplace(replacements), n)
            if not params:
                # every parameter has its value now: the ties are settled in the formula itself
                expr, derived_from = _differentiated(derived_from[0], self.x, n, self.name), None
        surrogate = None if self.surrogate is None else self.surrogate.xreplace(replacements)
        # a condition on a substituted parameter holds its value from now on (min_val <= max_val becomes
        # 2 <= max_val), so that later values of the others are checked against it
        requires = tuple((condition.xreplace(replacements), reason) for condition, reason in self.requires)
        if replacements:
            given = ", ".join(f"{p.name}={val}" for p, val in replacements.items())
            values_now = {**params, **replacements}
            _check_requirements(self.name, self.requires, {p: values_now[p] for p in self.params}, given)
            requires = tuple((c, r) for c, r in requires if c is not sympy.true)
            _check_finite(expr, f"{self.name} with {given} substituted")
            substituted = self._replace(expr=expr, params=params, surrogate=surrogate, requires=requires,
                                        derived_from=derived_from)
            if surrogate is not None:
                _check_surrogate(substituted, f"the surrogate gradient of {self.name} with {given} substituted")
            _check_real_with_params(substituted, given)
            return substituted
        return self._replace(expr=expr, params=params, surrogate=surrogate, requires=requires,
                             derived_from=derived_from)

    def derivative(self, n: int = 1) -> "Activation":
        """The n-th derivative in the (first) input, as a new :class:`Activation`.

        Convention at kinks: the one-sided value PyTorch's autograd uses, e.g.
        relu'(0) = 0 (``Heaviside(0) = 0``), leaky_relu'(0) = negative_slope, abs'(0) = 0.
        At a tie of ``Max(a, b)``/``Min(a, b)`` it is the one-sided slope of least magnitude
        (a' or b' where they have the same sign, else 0): ``Max(x, x/4)`` has 1/4 at 0 as
        ``F.leaky_relu(x, 1/4)``, ``Max(0, x)`` and ``Min(1, Max(-1, x))`` 0 at their kinks as
        relu and hardtanh.  Slopes that depend on x are compared where the tie is (``Max(x, x**3)``
        at 1: slopes 1 and 3, so 1), as are slopes with steps of their own (``Min(Max(0, x), x**2)``
        at 1: x**2 with slope 2 on the left, x with slope 1 on the right, so 1).  Where such ties
        move with a parameter (``Min(Max(0, x), a*x**2)`` at 1/a) they are settled with the
        parameters' values: in :attr:`concrete_expr` and evaluation, while ``expr`` keeps 0 there.
        The second derivative of a kinked function contains ``DiracDelta`` terms,
        which vanish away from the kinks.

        >>> activation("tanh").derivative().expr
        1 - tanh(x)**2
        >>> activation("Max(x, x**3)").derivative()(1), activation("Min(Max(0, x), x**2)").derivative()(1)
        (1, 1)
        """
        # numpy integers (a loop over np.arange) are orders too; bool is not one
        if not is_whole_number(n):
            raise FormulaError(f"derivative order must be a non-negative integer, got {n!r}; e.g. derivative(2)")
        if n == 0:
            return self
        n = int(n)
        original, order = self.derived_from or (self.expr, 0)
        expr = _differentiated(original, self.x, order + n, self.name)
        # with parameters, the concrete derivative is that of the concrete formula: ties that move with them
        # get the kink convention at their values, and so do kinks their values make (squareplus at b = 0 is
        # (x + |x|)/2, slope 1/2 at 0 by abs'(0) = 0 as autograd has it; x/(2*|x|) + 1/2 at b = 0 gave nan)
        derived_from = (original, order + n) if self.params else None
        suffix = "'" * n if n <= 3 else f"^({n})"
        return self._replace(name=f"{self.name}{suffix}", expr=expr, torch_spec=None, surrogate=None,
                             derived_from=derived_from)

    def backward_derivative(self) -> "Activation":
        """What backpropagation multiplies the incoming gradient by: the :attr:`surrogate` where
        the activation declares one, else :meth:`derivative` (the same function then).

        >>> helu = activation("helu")
        >>> helu.derivative().concrete_expr, helu.backward_derivative().concrete_expr
        (Heaviside(x, 0), Heaviside(x + 1/20, 0))
        """
        if self.surrogate is None:
            return self.derivative()
        return self._replace(name=f"{self.name}_backward", expr=self.surrogate, torch_spec=None, surrogate=None)

    def with_surrogate(self, surrogate: Any) -> "Activation":
        """The same forward formula, trained with ``surrogate`` as its gradient (``None``: phi' again).

        ``surrogate`` is a formula string or a SymPy expression in ``x`` and this activation's
        parameters, finite and real for every real ``x``; single-input activations only.  A
        straight-through estimator for a step, for instance:

        >>> step = activation("heaviside").with_surrogate("Max(0, 1 - Abs(x))")
        >>> step.backward_derivative().expr
        Max(0, 1 - Abs(x))
        """
        if surrogate is None:
            return self._replace(surrogate=None)
        return self._replace(surrogate=_checked_surrogate(surrogate, self))

    def transformed(self, alpha: Any = None, beta: Any = None, gamma: Any = None, delta: Any = None) -> "Activation":
        """The DKS/TAT transform psi(x) = gamma * (phi(alpha*x + beta) + delta).

        Arguments are finite real numbers (floats and numeric strings become exact rationals, as
        parameter values do), SymPy expressions, or ``None``; a ``None`` argument
        becomes a new parameter symbol (``alpha``, ``beta``, ``gamma``, ``delta``,
        renamed with a ``_t`` suffix if the activation already has a parameter of that
        name) whose value is the identity transform's (1, 0, 1, 0).

        >>> activation("tanh").transformed(2, 0, 3, 0).expr
        3*tanh(2*x)
        >>> activation("tanh").transformed().expr
        gamma*(delta + tanh(alpha*x + beta))
        """
        params = dict(self.params)
        taken = {p.name for p in params} | {s.name for s in self.inputs}
        values = {}
        for name, given, identity in (("alpha", alpha, 1), ("beta", beta, 0), ("gamma", gamma, 1), ("delta", delta, 0)):
            if given is None:
                symbol_name = name if name not in taken else f"{name}_t"
                symbol = sympy.Symbol(symbol_name, real=True)
                params[symbol] = sympy.Integer(identity)
                values[name] = symbol
            else:
                values[name] = _transform_value(given, name)
        argument = values["alpha"] * self.x + values["beta"]
        inner = self.expr.xreplace({self.x: argument})
        expr = values["gamma"] * (inner + values["delta"])
        # psi' = gamma*alpha*phi'(alpha*x + beta): a surrogate for phi' transforms the same way
        surrogate = (None if self.surrogate is None
                     else values["gamma"] * values["alpha"] * self.surrogate.xreplace({self.x: argument}))
        return self._replace(name=f"{self.name}~", expr=expr, params=params, torch_spec=None, surrogate=surrogate)

    def taylor(self, x0: Any = 0, order: int = 5, side: str | None = None) -> sympy.Expr:
        """Taylor polynomial about ``x0`` up to and including ``(x - x0)**order`` (parameters symbolic).

        For a piecewise activation the expansion is that of the piece that holds around ``x0``
        (chosen with the parameters at their values).  At a kink the two-sided polynomial exists
        only where the pieces agree to the requested order; otherwise :class:`DomainError` is
        raised, and ``side="+"`` (right) or ``side="-"`` (left) gives the one-sided expansion.

        >>> activation("tanh").taylor(0, 5)
        2*x**5/15 - x**3/3 + x
        >>> activation("relu").taylor(0, 2, side="-")
        0
        """
        if side not in (None, "+", "-"):
            raise FormulaError(f"side={side!r}: use None (two-sided), '+' (from the right) or '-' (from the left)")
        if not is_whole_number(order):
            raise FormulaError(f"taylor order must be a non-negative integer, got {order!r}; e.g. taylor(0, 5)")
        x0 = _exact_number(x0, "x0", "the expansion point x0")
        expr = self.expr
        if expr.has(*_PIECEWISE_ATOMS):
            expr = self._piece_at(x0, int(order), side)
        return sympy.series(expr, self.x, x0, int(order) + 1).removeO()

    def _piece_at(self, x0: sympy.Expr, order: int, side: str | None) -> sympy.Expr:
        """``expr`` with each piecewise construct replaced by the piece that holds next to ``x0``."""
        if not (x0.is_number and x0.is_real):
            raise DomainError(
                f"{self.name} is piecewise; expand it about a real number, not x0 = {x0}"
            )
        kinks = self.kinks
        at_kink = next((k for k in kinks if sympy.simplify(k - x0) == 0), None)
        if at_kink is None:
            return _piece_near(self.expr, self.x, x0, self.params)
        others = [abs(k - x0) for k in kinks if k is not at_kink]
        h = min(others) / 2 if others else sympy.Integer(1)
        left = _piece_near(self.concrete_expr, self.x, x0 - h, {})
        right = _piece_near(self.concrete_expr, self.x, x0 + h, {})
        jump = None
        if self.concrete_expr.has(sympy.DiracDelta):
            jump = "has a Dirac delta"
        else:
            for k in range(order + 1):
                gap = sympy.diff(left - right, self.x, k).xreplace({self.x: x0})
                if sympy.simplify(gap) != 0:
                    jump = "jumps" if k == 0 else f"is only C^{k - 1} (its {_ordinal(k)} derivative jumps)"
                    break
        if jump is not None and side is None:
            raise DomainError(
                f"{self.name} {jump} at its kink x0 = {x0}, so it has no two-sided Taylor polynomial of "
                f"order {order} there; pass side='+' or side='-' for the one-sided expansion"
                + ("" if jump in ("jumps", "has a Dirac delta") else ", or a lower order")
            )
        probe = x0 - h if side == "-" else x0 + h
        return _piece_near(self.expr, self.x, probe, self.params)

    def limit(self, direction: Any = sympy.oo, side: str | None = None) -> sympy.Expr:
        """Limit as the input tends to ``+oo`` or ``-oo``, or to a real point (parameters at their values).

        Oscillating limits come back as ``AccumBounds``.  At a real point the limit is two-sided; where
        the sides differ (a jump) :class:`DomainError` is raised, and ``side="+"`` (from the right) or
        ``side="-"`` (from the left) gives the one-sided limit.

        >>> activation("sigmoid").limit(-sympy.oo)
        0
        >>> activation("sinc").limit(0), activation("heaviside").limit(0, side="-")
        (1, 0)
        """
        if side not in (None, "+", "-"):
            raise FormulaError(f"side={side!r}: use None (two-sided), '+' (from the right) or '-' (from the left)")
        direction = _input_value(direction)
        if direction in (sympy.oo, -sympy.oo):
            return _limit_at_infinity(self.concrete_expr, self.x, 1 if direction == sympy.oo else -1)
        from ._properties import one_sided_limit

        # SymPy's own limit is the right-hand one (heaviside.limit(0) was 1): take each side asked for
        expr = self.concrete_expr.rewrite(sympy.Piecewise)
        sides = {mark: one_sided_limit(expr, self.x, direction, sign)
                 for mark, sign in (("+", 1), ("-", -1)) if side in (None, mark)}
        if side is not None:
            return sides[side]
        right, left = sides["+"], sides["-"]
        if right == left or sympy.simplify(right - left) == 0:
            return right
        raise DomainError(
            f"{self.name} has no limit at {direction}: {right} from the right, {left} from the left; pass "
            "side='+' or side='-' for a one-sided limit"
        )

    @functools.cached_property
    def _kink_structure(self) -> tuple[tuple, tuple]:
        if len(self.inputs) != 1:
            return (), ()
        return _kink_structure(self.concrete_expr, self.x)

    @property
    def kinks(self) -> tuple:
        """Real points where the formula switches piece (Piecewise, Max, Min, Abs, Heaviside, sign).

        A point where a switching condition only touches 0 and the formula keeps its piece is none
        (``Max(x**2, 2*x - 1)`` is x**2 everywhere: no kinks).  A switch between pieces that join
        smoothly is one (relu_squared at 0).  These are the break-points to give a quadrature rule.
        Parameters at their values.  A periodic set of kinks (|sin x|: every n*pi) is infinite: its
        points with |x| <= ``KINK_RANGE`` (50) are listed, and :attr:`kink_families` gives the families.

        >>> activation("hardtanh").kinks
        (-1, 1)
        """
        return self._kink_structure[0]

    @property
    def kink_families(self) -> tuple:
        """Periodic families of kinks as ((offset, period), ...): kinks at offset + n*period for every
        integer n; () when the kinks are finitely many.

        >>> activation("Abs(sin(x))").kink_families
        ((0, 2*pi), (pi, 2*pi))
        """
        return self._kink_structure[1]

    def properties(self) -> Properties:
        """Bounded, monotone, odd/even, smoothness, values at 0 and infinity (cached).

        >>> p = activation("gelu").properties()
        >>> p.monotone, p.bounded_below, p.smooth
        (False, True, True)
        """
        return self._properties

    @functools.cached_property
    def _properties(self) -> Properties:
        if len(self.inputs) != 1:
            raise FormulaError(f"properties() is defined for single-input activations; {self.name} takes {self.inputs}")
        from ._properties import derive_properties

        return derive_properties(self.concrete_expr, self.x, self.kinks, self.name)

    def inverse(self) -> "Activation":
        """The inverse function (input renamed to ``x``), where the activation is injective.

        Raises :class:`NoInverseError` for non-injective activations (relu, gelu, ...).

        >>> activation("sigmoid").inverse().expr
        log(-x/(x - 1))
        """
        from ._properties import invert

        expr = invert(self.concrete_expr, self.x, self.properties())
        return Activation(name=f"{self.name}^-1", expr=expr, inputs=(self.x,), source=self.source)

    @property
    def torch_builtin(self):
        """``(dotted torch function, kwargs)`` of the equivalent PyTorch built-in, or None.

        kwargs values are Python floats; names listed in the catalogue entry's
        ``tensor_kwargs`` must be passed as tensors (e.g. PReLU's weight).  None for an activation
        with a :attr:`surrogate`: the built-in computes the forward but back-propagates phi'.

        >>> activation("relu").with_surrogate("Heaviside(x + 1/20, 0)").torch_builtin is None
        True
        """
        if self.torch_spec is None or self.surrogate is not None:
            return None
        return self.torch_spec.resolve(self.params)

    # ----------------------------------------------------------------- output
    def latex(self) -> str:
        r"""LaTeX of ``name(x) = formula``; ``\varphi`` names an activation built from a formula.

        >>> activation("gelu").derivative().latex()[:23]
        "\\operatorname{gelu}'(x)"
        >>> activation("x*tanh(x)").latex()
        '\\varphi(x) = x \\tanh{\\left(x \\right)}'
        """
        args = ", ".join(sympy.latex(s) for s in self.inputs)
        return rf"{_latex_name(self.name)}({args}) = {sympy.latex(self.expr)}"

    def _repr_latex_(self) -> str:
        """The notebook display: :meth:`latex`, and the surrogate gradient where one is declared
        (helu and relu have the same formula; they differ in what backpropagation uses)."""
        if self.surrogate is None:
            return f"${self.latex()}$"
        return rf"${self.latex()} \quad (\text{{backward uses }} {sympy.latex(self.surrogate)})$"


# a catalogue-style name, then the marks derived activations append: ' (derivative), ~ (DKS transform)
_NAME_WITH_MARKS = re.compile(r"([A-Za-z][A-Za-z0-9_]*)([~']*)")


def _latex_name(name: str) -> str:
    """\\operatorname{name} with primes and tildes as LaTeX marks; \\varphi for a formula used as a name."""
    match = _NAME_WITH_MARKS.fullmatch(name)
    if match is None:
        return r"\varphi"
    latex = r"\operatorname{%s}" % match.group(1).replace("_", r"\_")
    for mark in match.group(2):
        latex = latex + "'" if mark == "'" else r"\widetilde{%s}" % latex
    return latex


# the spellings of infinity Python's float() accepts, which SymPy would read as a symbol named inf
_INFINITY_WORDS = {"inf": sympy.oo, "infinity": sympy.oo}


def _evaluated(value: sympy.Expr, digits: int, most: int = 20000) -> sympy.Expr:
    """``value`` (exact numbers only) to ``digits`` correct digits, as a Float, or exactly where SymPy finds an
    exact number (relu(-3.0) = 0).

    Evaluated at ever more digits (doubling from digits + 10) until two evaluations agree to digits + 3: SymPy's
    evalf takes the cancellation of a sum into account, but not a log near 1 (it gave log(1 + exp(-50)) = 0, so
    mish(-50.0) = 0 for -9.6e-21).  A 0 is not taken as agreement before ``most`` digits (1 + exp(-1000) is 1
    to 434 digits).  None where no two evaluations agree by then: a cancellation of more than ``most`` digits
    (gelu at -1e5, whose 1 + erf(x/sqrt(2)) is ~1e-2171472409), where evalf's last value has no correct digit."""
    if value.is_Rational or not value.is_number:
        return value
    precision = digits + 10
    previous = value.evalf(precision)
    if not previous.is_Number:
        return previous  # SymPy has no numeric value for it (erfcinv(1/3)): as evalf leaves it
    while precision < most:
        precision = min(2 * precision, most)
        current = value.evalf(precision)
        if (isinstance(current, sympy.Float) and isinstance(previous, sympy.Float) and current != 0
                and abs(current - previous) <= sympy.Float(10, precision) ** -(digits + 3) * abs(current)):
            return current.evalf(digits)
        previous = current
    return None


def _input_value(value: Any) -> sympy.Expr:
    """An input point: a string is parsed as a formula (never run as code), anything else sympified.

    ``"inf"``, ``"-inf"``, ``"infinity"`` (any case) are SymPy's ``oo``/``-oo``, as ``float("inf")`` is.
    """
    if isinstance(value, str):
        word = value.strip().lower()
        sign = -1 if word[:1] == "-" else 1
        word = word[1:] if word[:1] in "+-" else word
        if word in _INFINITY_WORDS:
            return sign * _INFINITY_WORDS[word]
        return _real_input(parse_formula(value), value)
    value = python_number(value)  # a 0-d numpy array or tensor is one number
    result = None
    # sympify(None) raised a bare SympifyError; a numpy array or True an AttributeError deep in SymPy
    if not isinstance(value, bool) and (isinstance(value, (numbers.Number, sympy.Basic)) or hasattr(value, "_sympy_")):
        try:
            result = sympy.sympify(value, strict=True)
        except (sympy.SympifyError, TypeError):
            pass  # result stays None, and the refusal below names the value and what to pass instead
    if not isinstance(result, sympy.Expr):
        raise FormulaError(
            f"cannot evaluate an activation at {value!r} ({type(value).__name__}): pass one real number, +-oo, a "
            "SymPy expression or a formula string (for arrays, numeric.torch_function(act) or "
            "sympy.lambdify(act.x, act.concrete_expr))")
    return _real_input(result, value)


def _real_input(value: sympy.Expr, given: Any) -> sympy.Expr:
    """Refuse a non-real number as an input point (1j gave a complex 'value' of a real activation)."""
    if value.is_number and value is not sympy.nan and (value.is_extended_real is False or value.has(sympy.I, sympy.zoo)):
        raise DomainError(
            f"an activation takes real inputs (or +-oo), not {given!r} ({value}); pass a real number"
        )
    return value


def _transform_value(value: Any, name: str) -> sympy.Expr:
    """A transform argument, converted like a parameter value (0.1 and '1/10' are both 1/10)."""
    label = f"transform argument {name}"
    result = _exact_number(value, name, label)
    if result.is_number and (result.is_real is False or result.has(sympy.I)):
        raise NonRealExpressionError(f"{label} = {result} is not real; pass a finite real number")
    return result


def _checked_value(symbol: sympy.Symbol, value: sympy.Expr, owner: str) -> sympy.Expr:
    inputs = sorted(s.name for s in value.free_symbols & {x, v})
    if inputs:
        # softplus with beta = x is log(1 + exp(x**2))/x: another function, not a parameter value
        raise FormulaError(
            f"parameter {symbol.name} of {owner} got {value}, which depends on the input {', '.join(inputs)}; a "
            "parameter value is a number (or an expression in other symbols): write a new formula instead"
        )
    if value.is_number:
        if value.is_real is False:
            raise NonRealExpressionError(f"parameter {symbol.name} of {owner} must be real, got {value}")
        if symbol.is_positive and value.is_positive is False:
            raise FormulaError(f"parameter {symbol.name} of {owner} must be positive, got {value}")
        if symbol.is_nonnegative and value.is_nonnegative is False:
            raise FormulaError(f"parameter {symbol.name} of {owner} must be non-negative, got {value}")
    return value


def _ordinal(k: int) -> str:
    return {1: "1st", 2: "2nd", 3: "3rd"}.get(k, f"{k}th")


def _piece_near(expr: sympy.Expr, symbol: sympy.Symbol, point: sympy.Expr, values: Mapping) -> sympy.Expr:
    """Replace each piecewise construct in ``symbol`` by its piece at ``point`` (parameters at ``values``).

    ``point`` must not be a piece boundary: the piece then holds on a neighbourhood of it.
    """
    if not expr.has(*_PIECEWISE_ATOMS):
        return expr
    at = {symbol: point, **values}

    def choose(pw):
        for value, cond in pw.args:
            decided = cond.xreplace(at) if isinstance(cond, sympy.Basic) else cond
            if decided is sympy.true or decided is True:
                return value
            if decided is not sympy.false and decided is not False:
                raise DomainError(
                    f"cannot decide which piece of {pw} holds at {symbol} = {point} (condition {cond})"
                )
        return pw

    probe = expr.rewrite(sympy.Piecewise)
    return probe.replace(
        lambda e: isinstance(e, sympy.Piecewise) and any(
            isinstance(c, sympy.Basic) and c.has(symbol) for _, c in e.args
        ),
        choose,
    )


def _differentiated(expr: sympy.Expr, symbol: sympy.Symbol, n: int, name: str) -> sympy.Expr:
    """d^n expr / d symbol^n with PyTorch's kink convention; a clear error where SymPy cannot
    differentiate (it would leave an unevaluated Derivative that breaks everything downstream).
    Where it is differentiable, it takes its one-sided limit, decided on the (n-1)-th derivative (with its own
    convention) for n > 1: x**2/2 written Max(x, 0)**2/2 + Min(x, 0)**2/2 has the second derivative 1 at 0."""
    lower = None if n == 1 else _differentiated(expr, symbol, n - 1, name)
    derivative = pytorch_kink_convention(sympy.diff(expr, symbol, n), expr, symbol, antiderivative=lower)
    if derivative.has(sympy.Derivative):
        stuck = sorted({str(d.expr) for d in derivative.atoms(sympy.Derivative)})
        raise FormulaError(
            f"SymPy cannot differentiate {', '.join(stuck)} in {name}; write the formula with functions "
            "it can differentiate (steps as Heaviside or Piecewise, not floor/ceiling/frac)")
    return derivative


def _relational_atoms(expr: sympy.Expr):
    for pw in expr.atoms(sympy.Piecewise):
        for _, cond in pw.args:
            if isinstance(cond, sympy.Basic):
                yield from cond.atoms(sympy.core.relational.Relational)


#: Kinks of a periodic family (|sin x|: x = n*pi) are listed for |x| <= KINK_RANGE: a standard Gaussian
#: has mass below 1e-500 beyond 48, so quadrature split there is exact for variances q up to about
#: (KINK_RANGE/14)**2 ~ 12 at 40 digits.  ``Activation.kink_families`` gives the whole families.
KINK_RANGE = 50

_PERIODIC = (sympy.sin, sympy.cos, sympy.tan, sympy.cot, sympy.sec, sympy.csc)


def _periodic_family_points(difference: sympy.Expr, symbol: sympy.Symbol) -> tuple | None:
    """(points with |x| <= KINK_RANGE, ((offset, period), ...)) of the zeros of a periodic ``difference``,
    or None when SymPy gives no enumerable solution set (then the caller falls back to ``solve``)."""
    try:
        solset = sympy.solveset(difference, symbol, sympy.S.Reals)
    except (NotImplementedError, ValueError, TypeError):
        return None
    parts = solset.args if isinstance(solset, sympy.Union) else (solset,)
    points, families = set(), []
    for part in parts:
        if isinstance(part, sympy.FiniteSet):
            points.update(s for s in part if s.is_real and s.is_finite and abs(s) <= KINK_RANGE)
            continue
        if not (isinstance(part, sympy.ImageSet) and part.base_sets == (sympy.S.Integers,)):
            return None
        (n,), value = part.lamda.variables, part.lamda.expr
        period, offset = sympy.diff(value, n), value.subs(n, 0)
        if period.has(n) or not period.is_number or period == 0:
            return None  # not an arithmetic progression (sin(x**2): x = sqrt(n*pi))
        period = abs(period)
        offset = offset - period * sympy.floor(offset / period)  # into [0, period)
        families.append((offset, period))
        lo = sympy.ceiling((-KINK_RANGE - offset) / period)
        hi = sympy.floor((KINK_RANGE - offset) / period)
        points.update(offset + k * period for k in range(int(lo), int(hi) + 1))
    return points, tuple(families)


def _numeric_crossings(difference: sympy.Expr, symbol: sympy.Symbol, cells: int = 6400, known: tuple = ()) -> set:
    """The real points with |x| <= KINK_RANGE where ``difference`` changes sign, for an equation SymPy cannot
    solve: a scan of ``cells`` equal cells (width 1/64 by default) in float64, each sign change refined by
    ``sympy.nsolve`` (bisection, 30 digits) and a grid point where it is 0 kept exactly when it is an exact
    zero.  Two crossings inside one cell, and zeros where ``difference`` touches 0 without changing sign, are
    not found (a touching zero is no kink: Max(x**2, 2*x - 1) is smooth).  A sign change in a cell that holds one
    of the ``known`` roots (floats, solved in closed form) is that root: it is not refined again."""
    import math

    try:
        # named, sech, csch and coth are printed as calls, not as exp-rewrites of the whole difference
        # (which turn x**3 into exp(3*log(x)), a ValueError for every x < 0)
        reciprocals = {"sech": lambda u: 1 / math.cosh(u), "csch": lambda u: 1 / math.sinh(u),
                       "coth": lambda u: 1 / math.tanh(u)}
        f = sympy.lambdify(symbol, difference, modules=[reciprocals, "math"])
    except Exception:  # noqa: BLE001 - a function without a math-module equivalent: nothing found, as before
        return set()

    def value(t: float) -> float:
        try:
            v = float(f(t))
        except (ArithmeticError, ValueError, TypeError, NameError):
            return math.nan
        return v if math.isfinite(v) else math.nan

    found = set()
    grid = [sympy.Rational(-KINK_RANGE) + sympy.Rational(2 * KINK_RANGE * i, cells) for i in range(cells + 1)]
    values = [value(float(t)) for t in grid]
    for a, b, fa, fb in zip(grid, grid[1:], values, values[1:]):
        if fa == 0 and sympy.simplify(difference.subs(symbol, a)) == 0:
            found.add(a)
        elif fa * fb < 0:
            if any(float(a) <= t <= float(b) for t in known):
                continue
            try:
                root = sympy.nsolve(difference, symbol, (a, b), solver="bisect", prec=30)
            except (ValueError, ZeroDivisionError, TypeError):
                continue
            if sympy.re(root) == root and a <= root <= b:
                found.add(sympy.Float(root, 30))
    if values[-1] == 0 and sympy.simplify(difference.subs(symbol, grid[-1])) == 0:
        found.add(grid[-1])
    return found


def _kink_structure(expr: sympy.Expr, symbol: sympy.Symbol) -> tuple[tuple, tuple]:
    """(kinks, families): the real points where ``expr`` switches piece, sorted, and the periodic
    families ((offset, period), ...) among them; a family's points are listed for |x| <= KINK_RANGE.
    A zero of a switching condition where the formula keeps its piece (:func:`_switches_piece`) is
    dropped, except in a family."""
    if not expr.has(*_PIECEWISE_ATOMS):
        return (), ()
    rewritten = expr.rewrite(sympy.Piecewise)
    points, families = set(), []
    for rel in _relational_atoms(rewritten):
        difference = rel.lhs - rel.rhs
        if not difference.has(symbol):
            continue
        if any(f.has(symbol) for f in difference.atoms(*_PERIODIC)):
            found = _periodic_family_points(difference, symbol)
            if found is not None:
                points.update(found[0])
                families.extend(f for f in found[1] if f not in families)
                continue
        try:
            solutions = sympy.solve(difference, symbol)
        except (NotImplementedError, ValueError):
            # sin(x) = x/2 has no closed-form roots: its kinks 0 and +-1.8955 were dropped (kinks == ()),
            # so quadrature and the derivative convention treated Max(sin(x), x/2) as smooth there
            points.update(_numeric_crossings(difference, symbol))
            continue
        solved = [s for s in solutions if s.is_real and s.is_finite]
        points.update(solved)
        if not difference.is_rational_function(symbol):
            # solve can miss the roots of an equation it cannot solve in closed form and say nothing:
            # x - 1 = (x - 1)*x/3 + cos(x) gave [] (its kinks 1.3689 and 3.8242 were dropped, and the
            # kernel maps integrated over them); the scan's crossings that no solution accounts for join them
            near = tuple(float(s) for s in solved)
            points.update(r for r in _numeric_crossings(difference, symbol, known=near)
                          if all(abs(float(r) - t) > 1e-12 * max(1.0, abs(t)) for t in near))
    in_families = {p for offset, period in families for p in points if ((p - offset) / period).is_integer}
    kinks = sorted(points, key=lambda s: float(s))
    kinks = [p for i, p in enumerate(kinks) if p in in_families or _switches_piece(rewritten, symbol, kinks, i)]
    return tuple(kinks), tuple(families)


def _switches_piece(expr: sympy.Expr, symbol: sympy.Symbol, candidates: list, i: int) -> bool:
    """Whether the formula changes piece at ``candidates[i]``, a zero of one of its switching conditions:
    the pieces that hold just left of it, at it and just right of it are not all one function.  A touching
    zero is none (Max(x**2, 2*x - 1) is x**2 on both sides of x = 1 and at it), nor is a switch of a
    sub-formula the whole does not follow there.  A piece that holds at the point alone is one, even with
    the neighbours' value (softshrink at lambd = 0, Max(-2, x**3 - 3*x) at 1, which SymPy writes with the
    piece -2 there): derivative() and taylor() read that piece at the point unless it is a kink.
    Undecided cases count as a switch."""
    point = candidates[i]
    gaps = [abs(float(q) - float(point)) for j, q in enumerate(candidates) if j != i]
    h = sympy.Rational(min(gaps)) / 2 if gaps else sympy.Integer(1)
    h = min(h, sympy.Integer(1))
    left, at, right = (_piece_top_down(expr, symbol, point + d) for d in (-h, 0, h))
    if None in (left, at, right):
        return True
    return not (_same_function(left, right, symbol, point, h) and _same_function(left, at, symbol, point, h))


def _piece_top_down(expr: sympy.Expr, symbol: sympy.Symbol, point: sympy.Expr) -> sympy.Expr | None:
    """``expr`` (rewritten in Piecewise) with each Piecewise replaced by its piece at ``point``, chosen from the
    outside in (what :func:`_piece_near` does from the inside out, rebuilding every enclosing Piecewise: 10 s
    a point for nested Max/Min); None where a condition is undecided there."""
    if isinstance(expr, sympy.Piecewise):
        for value, cond in expr.args:
            decided = cond.xreplace({symbol: point}) if isinstance(cond, sympy.Basic) else cond
            if decided in (sympy.true, True):
                return _piece_top_down(value, symbol, point)
            if decided not in (sympy.false, False):
                return None
        return None
    if not expr.args or not expr.has(sympy.Piecewise):
        return expr
    args = [_piece_top_down(a, symbol, point) for a in expr.args]
    return None if None in args else expr.func(*args)


def _same_function(f: sympy.Expr, g: sympy.Expr, symbol: sympy.Symbol, point: sympy.Expr, h: sympy.Expr) -> bool:
    """Whether two pieces are one function: identical, or their difference differs from 0 nowhere SymPy
    can tell (a numeric probe near the point first, so that distinct pieces cost no simplify)."""
    if f == g:
        return True
    difference = f - g
    for probe in (point + h / 3, point - h / 3):
        try:
            value = sympy.N(difference.xreplace({symbol: probe}), 30)
        except (TypeError, ValueError, ZeroDivisionError):
            continue
        if value.is_number and value.is_finite and abs(value) > sympy.Float("1e-20"):
            return False
    try:
        return sympy.simplify(difference) == 0
    except (TypeError, ValueError, NotImplementedError):
        return False


def _limit_at_infinity(expr: sympy.Expr, symbol: sympy.Symbol, sign: int) -> sympy.Expr:
    return _limit_by_parts(_branch_at_infinity(expr, symbol, sign), symbol, sign)


def _limit_by_parts(expr: sympy.Expr, symbol: sympy.Symbol, sign: int) -> sympy.Expr:
    """The limit of a sum (product) as the sum (product) of its parts' limits, where that is determinate.

    Gruntz on the whole expression multiplies out the parts' series: 19 tanh terms took ~18 s per side,
    against ~0.1 s per term.  Where the parts' limits do not determine the limit (nan, an oscillation,
    oo - oo, 0*oo), the whole expression goes to Gruntz.
    """
    if isinstance(expr, (sympy.Add, sympy.Mul)) and expr.has(symbol):
        limits = [_limit_by_parts(part, symbol, sign) for part in expr.args]
        infinite = [lim for lim in limits if lim in (sympy.oo, -sympy.oo)]
        # an oscillation (AccumBounds) is left to Gruntz: sin(x) + cos(x) is not AccumBounds(-2, 2)
        if all((lim.is_finite and not isinstance(lim, sympy.AccumBounds)) or lim in infinite for lim in limits):
            if isinstance(expr, sympy.Add) and not (sympy.oo in infinite and -sympy.oo in infinite):
                return sympy.Add(*limits)
            if isinstance(expr, sympy.Mul) and not (infinite and any(lim.is_zero for lim in limits)):
                return sympy.Mul(*limits)
    return _limit_of_term(expr, symbol, sign)


def _polynomial_limit_sign(u: sympy.Expr, symbol: sympy.Symbol, sign: int) -> int | None:
    """+1 or -1 when the polynomial ``u`` of positive degree in ``symbol`` tends to +oo or -oo as
    ``symbol -> sign*oo`` (its leading coefficient's sign known), else None."""
    if not (u.has(symbol) and u.is_polynomial(symbol)):
        return None
    try:
        poly = sympy.Poly(u, symbol)
    except sympy.PolynomialError:
        return None
    lead = poly.LC()
    if lead.is_positive:
        return sign ** poly.degree()
    if lead.is_negative:
        return -(sign ** poly.degree())
    return None


def _saturating_limits() -> dict:
    """f -> (lim f(t) at t -> -oo, at t -> +oo) for the functions whose limit a term f(u), u a
    polynomial going to +-oo, takes without Gruntz."""
    return {sympy.tanh: (sympy.S.NegativeOne, sympy.S.One), sympy.erf: (sympy.S.NegativeOne, sympy.S.One),
            sympy.atan: (-sympy.pi / 2, sympy.pi / 2), sympy.exp: (sympy.S.Zero, sympy.oo)}


def _limit_of_term(expr: sympy.Expr, symbol: sympy.Symbol, sign: int) -> sympy.Expr:
    if not expr.has(symbol):
        return expr
    # tanh(x - k) -> 1: f(u) with u a polynomial that tends to +-oo has f's limit there.  Gruntz on
    # the exp rewrite took ~0.2 s a term (19 tanh terms: 8 s for both sides)
    limits = _saturating_limits().get(type(expr))
    if limits is not None and len(expr.args) == 1:
        direction = _polynomial_limit_sign(expr.args[0], symbol, sign)
        if direction is not None:
            return limits[direction > 0]
    if expr.has(sympy.tanh, sympy.sinh, sympy.cosh, sympy.erfc, sympy.sech):
        # Gruntz works on exp/log; rewriting first is several times faster.
        expr = expr.rewrite(sympy.exp)
    try:
        return _sign_of_bounds_resolved(sympy.limit(expr, symbol, sign * sympy.oo))
    except (NotImplementedError, ValueError, TypeError):
        return sympy.nan


def _sign_of_bounds_resolved(value: sympy.Expr) -> sympy.Expr:
    """SymPy's limit of a growing factor times an oscillating one is left as oo*sign(AccumBounds(a, b)):
    x*(2 + sin(x)) gave oo*sign(AccumBounds(1, 3)), which is oo, and x*sin(x) oo*sign(AccumBounds(-1, 1)),
    which is no number (properties() read both as bounded "undecided").  sign(AccumBounds(a, b)) is 1 for
    a > 0, -1 for b < 0 and AccumBounds(-1, 1) for a < 0 < b (the factor takes both signs arbitrarily far
    out, so oo times it is AccumBounds(-oo, oo)); with a or b = 0 it is left as it is."""
    def resolve(node: sympy.Expr) -> sympy.Expr:
        bounds = node.args[0]
        if bounds.min.is_positive:
            return sympy.S.One
        if bounds.max.is_negative:
            return sympy.S.NegativeOne
        if bounds.min.is_negative and bounds.max.is_positive:
            return sympy.AccumBounds(-1, 1)
        return node

    if not value.has(sympy.AccumBounds):
        return value
    return value.replace(lambda e: isinstance(e, sympy.sign) and isinstance(e.args[0], sympy.AccumBounds), resolve)


def _branch_at_infinity(expr: sympy.Expr, symbol: sympy.Symbol, sign: int) -> sympy.Expr:
    """Replace piecewise constructs by the branch that holds for large ``sign*x``."""
    if not expr.has(*_PIECEWISE_ATOMS[:-3]):
        return expr
    probe = expr.rewrite(sympy.Piecewise)

    def choose(pw):
        # Conditions such as x > 6 are decided by substituting x = +-oo.
        for value, cond in pw.args:
            decided = cond.subs(symbol, sign * sympy.oo) if isinstance(cond, sympy.Basic) else cond
            if decided is sympy.true or decided is True:
                return value
        return pw

    return probe.replace(lambda e: isinstance(e, sympy.Piecewise), choose)


# --------------------------------------------------------------- constructor
def activation(spec: Any, *, surrogate: Any = None, **params: Any) -> Activation:
    """Build an :class:`Activation` from a catalogue name, a formula string, or a SymPy expression.

    Parameters
    ----------
    spec:
        ``"gelu"`` (see :func:`symact.catalogue`), a formula in ``x`` such as
        ``"x*tanh(log(1+exp(x)))"``, or a SymPy expression in :data:`symact.x`.
        An :class:`Activation` is returned with ``params`` applied.
    surrogate:
        A surrogate gradient that backpropagation uses in place of phi' (a formula string or
        SymPy expression in ``x`` and the parameters; see :attr:`Activation.surrogate`), e.g.
        ``activation("Max(0, x)", surrogate="Heaviside(x + a, 0)", a=0.05)``.  ``None`` keeps the
        catalogue entry's own (HeLU has one) or, for a formula, phi'.
    **params:
        For a catalogue name: new values of its parameters.  For a formula: the
        declaration of its parameters with their default values
        (``activation("x*sigmoid(beta*x)", beta=1)``), including those that only the
        surrogate uses.

    Raises
    ------
    UnknownActivationError
        An unknown catalogue name (the message suggests close names).
    UnknownSymbolError
        A formula with symbols that are neither ``x`` nor declared parameters.
    FormulaError
        A formula that does not parse.
    NonRealExpressionError
        A formula that takes non-real values at real inputs.

    >>> activation("gelu").concrete_expr
    x*(erf(sqrt(2)*x/2) + 1)/2
    >>> activation("x*sigmoid(beta*x)", beta=2).params
    mappingproxy({beta: 2})
    """
    from .catalogue import catalogue_names, lookup

    if isinstance(spec, Activation):
        act = spec.with_params(**params) if params else spec
        return act if surrogate is None else act.with_surrogate(surrogate)
    if isinstance(spec, str):
        name = spec.strip()
        entry = lookup(name)
        if entry is not None:
            act = entry.build(**params)
            return act if surrogate is None else act.with_surrogate(surrogate)
        if name.isidentifier() and name not in ("x", "v"):
            raise UnknownActivationError(_unknown_name_message(name, catalogue_names()))
        declared = [sympy.Symbol(p, real=True) for p in params]
        return _from_formula(name, parse_formula(name, declared), params, name, surrogate)
    if isinstance(spec, sympy.Expr):
        return _from_formula(str(spec), spec, params, str(spec), surrogate)
    raise FormulaError(
        f"cannot build an activation from {type(spec).__name__} {spec!r}; pass a catalogue name, "
        "a formula string in x, or a SymPy expression in symact.x"
    )


def _checked_surrogate(surrogate: Any, act: Activation) -> sympy.Expr:
    """``surrogate`` (a formula string or SymPy expression) as an expression in ``x`` and the
    parameters of ``act``, refused with the reason if it cannot be a gradient of ``act``."""
    if len(act.inputs) != 1:
        raise FormulaError(
            f"{act.name} takes the inputs {act.inputs}; a surrogate gradient replaces dphi/dx of a "
            "single-input activation only"
        )
    if isinstance(surrogate, str):
        text = surrogate
        expr = parse_formula(surrogate, list(act.params))
    elif isinstance(surrogate, sympy.Expr):
        text = str(surrogate)
        expr = surrogate
    else:
        raise FormulaError(
            f"surrogate={surrogate!r} ({type(surrogate).__name__}): give the surrogate gradient as a formula "
            "string in x (e.g. 'Heaviside(x + 1/20, 0)') or a SymPy expression in symact.x"
        )
    by_name = {p.name: p for p in act.params}
    by_name["x"] = act.x
    expr = expr.xreplace({s: by_name[s.name] for s in expr.free_symbols if s.name in by_name})
    unknown = sorted(s.name for s in expr.free_symbols if s not in act.params and s != act.x)
    if unknown:
        raise UnknownSymbolError(
            f"the surrogate gradient {text!r} of {act.name} uses {', '.join(unknown)}, which are neither x "
            f"nor parameters of {act.name} ({list(act.parameter_names) or 'none'}); declare them as parameters "
            "of the activation, e.g. activation(formula, surrogate=..., name=value)",
            symbols=tuple(unknown),
        )
    _check_surrogate(act._replace(surrogate=expr), f"the surrogate gradient {text!r} of {act.name}")
    return expr


def _unknown_name_message(name: str, names: list) -> str:
    close = difflib.get_close_matches(name.lower(), names, n=3, cutoff=0.5)
    hint = f"did you mean {', '.join(repr(c) for c in close)}? " if close else ""
    return (
        f"unknown activation {name!r}: {hint}symact.catalogue_names() lists the {len(names)} known names; "
        "or pass a formula in x such as 'x*sigmoid(x)'"
    )


def _from_formula(name: str, expr: sympy.Expr, params: Mapping[str, Any], text: str,
                  surrogate: Any = None) -> Activation:
    # Symbols parsed from a SymPy expression may lack real=True; map them onto ours by name.
    by_name = {"x": x, "v": v}
    declared = {}
    if "x" in params:
        raise FormulaError(
            f"x is the input of every activation and cannot be a parameter of {text!r}; give the "
            "parameter another name (e.g. x0) in the formula and in the declaration"
        )
    for pname, value in params.items():
        symbol = sympy.Symbol(pname, real=True)
        declared[symbol] = _exact_number(value, pname)
        by_name[pname] = symbol
    expr = expr.xreplace({s: by_name[s.name] for s in expr.free_symbols if s.name in by_name})
    _check_finite(expr, f"the formula {text!r}")
    if expr.has(sympy.I):
        raise NonRealExpressionError(
            f"the formula {text!r} contains the imaginary unit; activations must be real-valued for real x"
        )
    unknown = sorted(s.name for s in expr.free_symbols if s not in declared and s not in (x, v))
    if unknown:
        example = ", ".join(f"{u}=1.0" for u in unknown)
        raise UnknownSymbolError(
            f"the formula {text!r} uses symbol(s) {', '.join(unknown)} that are neither the input x "
            f"nor declared parameters; declare them with default values, e.g. activation({text!r}, {example})",
            symbols=tuple(unknown),
        )
    used = {s.name for s in expr.free_symbols}
    if isinstance(surrogate, str):
        used |= {s.name for s in parse_formula(surrogate, list(declared)).free_symbols}
    elif isinstance(surrogate, sympy.Expr):
        used |= {s.name for s in surrogate.free_symbols}
    unused = sorted(s.name for s in declared if s.name not in used)
    if unused:
        raise UnknownSymbolError(
            f"parameter(s) {', '.join(unused)} do not appear in the formula {text!r}; remove them or use them"
        )
    # v is the gate of the two-input forms only when it is not a declared parameter: a parameter
    # named v (activation("x*sigmoid(v*x)", v=1.5)) keeps the activation single-input
    inputs = (x, v) if v in expr.free_symbols and v not in declared else (x,)
    if x not in expr.free_symbols and v in inputs:
        raise FormulaError(f"the formula {text!r} uses the gate v but not the input x")
    check_exact_arguments(expr, declared, f"the formula {text!r} at "
                          + ", ".join(f"{p.name}={val}" for p, val in declared.items()))
    act = Activation(name=name, expr=expr, params=declared, inputs=inputs)
    if surrogate is not None:
        act = act.with_surrogate(surrogate)
    if declared:
        values = ", ".join(f"{p.name}={val}" for p, val in declared.items())
        _check_finite(act.concrete_expr, f"the formula {text!r} at {values}")
    _check_real(act, text)
    return act


_NON_FINITE = {sympy.nan: "nan", sympy.zoo: "zoo (complex infinity, e.g. 1/0 or log(0))",
               sympy.oo: "oo (infinity)", -sympy.oo: "-oo (minus infinity)"}


def _check_finite(expr: sympy.Expr, what: str) -> None:
    """Refuse nan, zoo, oo and -oo in a formula: an activation is a finite real function."""
    found = [label for constant, label in _NON_FINITE.items() if expr.has(constant)]
    if found:
        raise FormulaError(
            f"{what} contains {' and '.join(found)} (SymPy reads it as {expr}); an activation must be a "
            "finite real function: remove the division by zero, log(0), oo or nan, or give parameters "
            "values that keep every term finite"
        )


_PROBE_POINTS = (sympy.Rational(-5, 2), -1, sympy.Rational(-1, 2), sympy.Rational(1, 3), 1, sympy.Rational(5, 2),
                 0) + tuple(s * sympy.Integer(10) ** -k for k in (1, 3, 10) for s in (-1, 1))


# Parameter values can move the real domain of a formula far out (softexponential with alpha = -1/10 is
# real only for x > -9.9): checks of parameter values also probe large |x| (evaluated at 20 digits).
_WIDE_PROBE_POINTS = _PROBE_POINTS + tuple(s * sympy.Integer(10) ** k for k in (1, 2, 3, 6, 10, 20, 30) for s in (-1, 1))


# SymPy evaluates these exactly at an integer (gamma(n) = (n-1)!, zeta(2n) through Bernoulli numbers,
# Legendre polynomials of degree n): probes of a formula that applies them to x stay at |x| <= this, the
# size of exact argument a formula may give them (_safe_parse.MAX_EXACT_ARGUMENT).
_LARGEST_EXACT_ARGUMENT = MAX_EXACT_ARGUMENT


def _has_exactly_evaluated_function(expr: sympy.Expr, inputs: tuple) -> bool:
    return any(is_exactly_evaluated(type(f)) and f.has(*inputs) for f in expr.atoms(sympy.Function))


_GROWTH_FUNCTIONS = (sympy.exp, sympy.sinh, sympy.cosh)
_LARGEST_NESTED_GROWTH_ARGUMENT = 1000


# How far out a tower of growth functions is probed (by its height, see _growth_tower): exp(exp(exp(x))) at
# x = 10 is exp(10**9566), which mpmath worked on for minutes; tanh(exp(exp(x))) at 1000 and sinh(sinh(sinh(x)))
# at 10 raised a bare OverflowError ("too many digits in integer").  At each reach the tower stays below
# exp(4e6): e**e**e**(5/2) = exp(195000), e**e**e**e**1 = exp(3.8e6).
_TOWER_REACH = {0: _LARGEST_NESTED_GROWTH_ARGUMENT, 1: _LARGEST_NESTED_GROWTH_ARGUMENT,
                2: _LARGEST_NESTED_GROWTH_ARGUMENT, 3: sympy.Rational(5, 2), 4: 1}
_LARGEST_TOWER_REACH = sympy.Rational(1, 1000)


@functools.lru_cache(maxsize=512)
def _tower_reach(expr: sympy.Expr, inputs: tuple):
    """How far out ``expr`` may be evaluated at an exact point (see _TOWER_REACH), or None: no limit."""
    if not _grows_too_fast_to_probe(expr, inputs):
        return None
    return _TOWER_REACH.get(_growth_tower(expr, inputs), _LARGEST_TOWER_REACH)


def _growth_tower(expr: sympy.Expr, inputs: tuple) -> int:
    """The most growth functions of the inputs (exp, sinh, cosh, a power with an input in its exponent) nested in
    one another, plus one where another function is applied to such a nest: exp(-exp(x)) and tanh(exp(x)) 2,
    tanh(exp(exp(x))) and exp(exp(exp(x))) 3."""
    def height(e) -> tuple[int, int]:  # (growth functions nested, that plus one for a function around them)
        if e.is_Atom or not e.has(*inputs):
            return 0, 0
        below = [height(a) for a in e.args]
        nest = max((h for h, _ in below), default=0)
        tower = max((t for _, t in below), default=0)
        if isinstance(e, _GROWTH_FUNCTIONS) or (isinstance(e, sympy.Pow) and e.exp.has(*inputs)):
            nest += 1
        elif isinstance(e, sympy.Function) and nest:
            return nest, max(tower, nest + 1)
        return nest, max(tower, nest)

    return height(expr)[1]


def _grows_too_fast_to_probe(expr: sympy.Expr, inputs: tuple) -> bool:
    """Whether ``expr`` has a power with the input in its exponent (|x|**x at the integer 10**30 is
    evaluated exactly), or any function of an exponential of the input (exp(-exp(x)) at x = 10**6 asks
    mpmath for exp(-10**434294); sin(exp(x)) and cos(exp(x)/3) did not return in a minute, reducing
    exp(10**6) modulo pi to all its digits; tanh(exp(x)) raised a bare OverflowError from mpmath):
    they take minutes, for ever, or fail at the wide probe points."""
    return any(isinstance(e, sympy.Pow) and e.exp.has(*inputs) for e in sympy.preorder_traversal(expr)) \
        or function_of_an_exponential(expr, inputs)


def function_of_an_exponential(expr: sympy.Expr, inputs: tuple, passes: tuple = ()) -> bool:
    """Whether a function takes an exponential of the inputs (exp, sinh, cosh, or a power with an input in its
    exponent) in its argument: exp(-exp(x)), tanh(exp(x)), sin(exp(x)).  Functions of the classes in ``passes``
    neither count nor hide an exponential inside them from the functions around (analysis.kernel passes log and
    the selectors: log(1 + exp(x)) ~ x, and mish's tanh(log(1 + exp(x))) is cheap at any x)."""
    def grows(e) -> bool:
        if isinstance(e, passes):
            return False
        if (isinstance(e, _GROWTH_FUNCTIONS) or (isinstance(e, sympy.Pow) and e.exp.has(*inputs))) and e.has(*inputs):
            return True
        return any(grows(a) for a in e.args)

    return any(isinstance(node, sympy.Function) and not isinstance(node, passes) and any(grows(a) for a in node.args)
               for node in sympy.preorder_traversal(expr))


_LARGEST_EXACT_EXPONENT = 1000


def _substituted(expr: sympy.Expr, subs: Mapping, inputs: tuple) -> sympy.Expr:
    """``expr.xreplace(subs)``, except that a power of the inputs with an exact exponent above
    _LARGEST_EXACT_EXPONENT becomes its 20-digit value: substituted exactly, x**(10**6) at x = 5/2 is a
    fraction of millions of digits (the realness probe of 'x**1000000' never returned)."""
    powers = {p: sympy.Dummy() for p in expr.atoms(sympy.Pow)
              if p.exp.is_Rational and abs(p.exp) > _LARGEST_EXACT_EXPONENT and p.base.has(*inputs)}
    if not powers:
        return expr.xreplace(subs)
    values = {d: sympy.N(sympy.Pow(_substituted(p.base, subs, inputs), p.exp, evaluate=False), 20)
              for p, d in powers.items()}
    return expr.xreplace(powers).xreplace(subs).xreplace(values)


def _first_non_real(act: Activation, points: tuple) -> tuple | None:
    """(x, value) at the first probe point where ``act`` has a non-real value, or None."""
    expr = act.concrete_expr
    if _has_exactly_evaluated_function(expr, act.inputs):
        # gamma(10**20), zeta(10**20), factorial(10**30) are computed exactly (for ever) when substituted
        points = tuple(p for p in points if abs(p) <= _LARGEST_EXACT_ARGUMENT)
    elif _tower_reach(expr, act.inputs) is not None:
        points = tuple(p for p in points if abs(p) <= _tower_reach(expr, act.inputs))
    for point in points:
        subs = {s: point for s in act.inputs}
        try:  # chop: a sum that cancels to 1e-8692 (x*erf(x) + x at x = -100) took evalf half a minute
            value = sympy.N(_substituted(expr, subs, act.inputs), 20, chop=True)
        except ValueError:
            # Max/Min of a non-real argument is no number ("The argument ... is not comparable"):
            # Min(1, Max(0, sqrt(x))) was accepted, and its generated code was NaN for every x < 0
            value = next((v for v in (_non_real_min_max_argument(m, subs, act.inputs)
                                      for m in expr.atoms(sympy.Max, sympy.Min)) if v is not None), None)
            if value is None:
                continue
            return point, value
        except (TypeError, ZeroDivisionError):
            continue
        if value.has(sympy.zoo, sympy.nan) or not value.is_number:
            continue
        if _not_real(value):
            return point, value
    return None


def _not_real(value: sympy.Expr) -> bool:
    """Whether a number has an imaginary part beyond rounding (1e-15 relative)."""
    re_part, im_part = value.as_real_imag()
    return im_part != 0 and abs(im_part) > 1e-15 * (1 + abs(re_part))


def _non_real_min_max_argument(min_max: sympy.Expr, subs: dict, inputs) -> sympy.Expr | None:
    """The value of an argument of ``min_max`` at ``subs`` that is not real, or None."""
    for argument in min_max.args:
        try:
            value = sympy.N(_substituted(argument, subs, inputs), 20, chop=True)
        except (TypeError, ValueError, ZeroDivisionError):
            continue
        if value.is_number and not value.has(sympy.zoo, sympy.nan) and _not_real(value):
            return value
    return None


def _check_surrogate(act: Activation, what: str) -> None:
    """Refuse a surrogate gradient of ``act`` (described by ``what``) that is not finite, or not real at
    some real x, with its parameters at their values: it is backpropagation's factor, and NaN
    gradients would follow.  The one check for with_surrogate, with_params and subs."""
    _check_finite(act.surrogate, what)
    check_exact_arguments(act.surrogate, act.params, what)
    probe = act.backward_derivative()
    _check_finite(probe.concrete_expr, f"{what} at the parameter values")
    # a pole is no gradient either: tanh with surrogate 1/x was accepted, and its module back-propagated inf
    from ._properties import real_singularities, singular_points_near_0  # noqa: PLC0415

    if len(probe.inputs) == 1:
        poles = (singular_points_near_0(real_singularities(probe.concrete_expr, probe.x), per_family=0)
                 or _poles_at_zeros_of_denominators(probe.concrete_expr, probe.x))
        if poles:
            raise NonRealExpressionError(
                f"{what} is not finite for every real x: it has a singularity at x = {poles[0]}, where "
                "backpropagation would multiply by an infinite or undefined factor. Choose a surrogate that is "
                "finite on the whole real line (e.g. a clipped or smoothed one)")
    found = None if probe.concrete_expr.has(sympy.I) else _first_non_real(probe, _WIDE_PROBE_POINTS)
    if found is not None or probe.concrete_expr.has(sympy.I):
        where = f": at x = {found[0]} its value is {sympy.N(found[1], 6)}" if found else ""
        raise NonRealExpressionError(
            f"{what} is not real for every real x{where}; a gradient must be real. Choose parameter values for "
            "which it is real on the whole real line"
        )


def _poles_at_zeros_of_denominators(expr: sympy.Expr, x: sympy.Symbol) -> list:
    """Real zeros of the bases of negative powers in ``expr`` where a one-sided limit of ``expr`` is not finite:
    the poles SymPy's continuity domain misses behind sign, Heaviside or a Piecewise (sign(x)/x at 0)."""
    from ._properties import one_sided_limit, zeros_of_denominators  # noqa: PLC0415

    poles = []
    for b in sorted(zeros_of_denominators(expr, x), key=lambda p: (abs(float(p)), float(p))):
        try:
            limits = [one_sided_limit(expr, x, b, side) for side in (1, -1)]
        except (NotImplementedError, TypeError, ValueError):
            continue
        if any(not (lim.is_finite and lim.is_real) for lim in limits):
            poles.append(b)
    return poles


def _check_requirements(name: str, requires: tuple, values: Mapping[sympy.Symbol, sympy.Expr],
                        given: str) -> None:
    """Refuse parameter ``values`` (symbol -> value, every parameter) that break one of ``requires``
    (``act.requires`` before a substitution: ((condition, reason), ...)); ``given`` names the values the
    user passed.  A condition that the values leave undecided (a symbolic value) is accepted."""
    for condition, reason in requires:
        decided = condition.xreplace(dict(values))
        if decided is sympy.false:
            at = ", ".join(f"{p.name}={values[p]}" for p in values if p in condition.free_symbols)
            because = f" ({reason})" if reason else ""
            raise FormulaError(
                f"{name} with {given} breaks {condition} ({at}){because}; pass values with {condition}"
            )


def _check_real_with_params(act: Activation, given: str, note: str = "") -> None:
    """Refuse parameter values (``given``, e.g. "alpha=-1/2") that make ``act`` non-real at some real x.

    Catalogue entries and with_params/subs skip the formula-string check of :func:`_check_real`; this is
    the same check, at more points (large |x| too), with a message naming the entry's note on its real
    range, if any."""
    found = _first_non_real(act, _WIDE_PROBE_POINTS)
    if found is not None:
        point, value = found
        from .catalogue import lookup  # noqa: PLC0415 (catalogue imports this module)

        entry = lookup(act.name) if isinstance(act.name, str) else None
        if entry is not None and sympy.simplify(entry.expr - act.expr) != 0:
            entry = None  # a formula of its own that shares the name
        note = note or (entry.note if entry is not None else "")
        range_note = f" ({note})" if note else ""
        defaults = (f" (the defaults {', '.join(f'{p.name}={p.default}' for p in entry.params)} are)"
                    if entry is not None and entry.params else "")
        raise NonRealExpressionError(
            f"{act.name} with {given} is not real for every real input: at x = {point} its value is "
            f"{sympy.N(value, 6)}{range_note}. Choose parameter values for which it is real on the whole "
            f"real line{defaults}, or write your own formula with an explicit domain guard (e.g. a Piecewise)"
        )


def _check_real(act: Activation, text: str) -> None:
    """Evaluate at a few real points, large |x| included (log(x + 3) is real down to -3 only); a value
    with a non-zero imaginary part is an error."""
    found = _first_non_real(act, _WIDE_PROBE_POINTS)
    if found is not None:
        point, value = found
        raise NonRealExpressionError(
            f"the formula {text!r} is not real at x = {point} (value {value}); an activation must be "
            "real for every real input: e.g. use sqrt(x**2 + 1) or sqrt(Max(x, 0)) instead of sqrt(x), "
            "log(1 + exp(x)) instead of log(x)"
        )
