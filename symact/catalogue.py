"""The activation catalogue: each entry is data (formula, parameters, source, PyTorch built-in).

Formulas follow PyTorch's conventions where PyTorch has the function (e.g. ``leaky_relu``
uses the strict condition ``x > 0`` so its derivative at 0 is the negative slope, as
autograd computes it).  Formulas are parsed on first use and cached, so importing the
catalogue costs nothing.

>>> from symact import catalogue_names
>>> "gelu" in catalogue_names()
True
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any, Mapping

import sympy

from .activation import (
    Activation,
    _check_real_with_params,
    _check_requirements,
    _checked_value,
    _exact_number,
    parse_formula,
    v,
    x,
)
from ._safe_parse import safe_sympify
from .errors import UnknownSymbolError

__all__ = ["CatalogueEntry", "TorchBuiltin", "catalogue", "catalogue_names", "lookup", "SELU_ALPHA", "SELU_SCALE"]

_SQRT_E = sympy.sqrt(sympy.E)
_ERFC_1 = sympy.erfc(1 / sympy.sqrt(2))
#: SELU's alpha_01 in closed form (Klambauer et al. 2017): -sqrt(2/pi) / (erfc(1/sqrt 2) e^(1/2) - 1).
SELU_ALPHA = -sympy.sqrt(2 / sympy.pi) / (_ERFC_1 * _SQRT_E - 1)
#: SELU's lambda_01 in closed form (Klambauer et al. 2017).
SELU_SCALE = (
    (1 - _ERFC_1 * _SQRT_E)
    * sympy.sqrt(2 * sympy.pi)
    / sympy.sqrt(
        2 * sympy.erfc(sympy.sqrt(2)) * sympy.E**2
        + sympy.pi * _ERFC_1**2 * sympy.E
        - 2 * (2 + sympy.pi) * _ERFC_1 * _SQRT_E
        + sympy.pi
        + 2
    )
)


@dataclass(frozen=True)
class Param:
    """A parameter declaration: name, default value (exact), SymPy assumptions."""

    name: str
    default: str
    assumptions: Mapping[str, bool] = field(default_factory=lambda: {"real": True})

    @functools.cached_property
    def symbol(self) -> sympy.Symbol:
        return sympy.Symbol(self.name, **dict(self.assumptions))


def _p(name: str, default: Any, **assumptions: bool) -> Param:
    return Param(name, str(default), assumptions or {"real": True})


@dataclass(frozen=True)
class TorchBuiltin:
    """The PyTorch function an entry equals, and how its keyword arguments follow the parameters.

    ``kwargs`` maps a torch keyword to a parameter name (``"$name"``) or a literal value.
    ``tensor_kwargs`` names keywords torch wants as tensors.
    """

    function: str
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    tensor_kwargs: tuple = ()
    note: str = ""

    def resolve(self, params: Mapping[sympy.Symbol, sympy.Expr]):
        by_name = {p.name: value for p, value in params.items()}
        kwargs = {}
        for key, spec in self.kwargs.items():
            if isinstance(spec, str) and spec.startswith("$"):
                value = by_name.get(spec[1:])
                if value is None or not value.is_number:
                    return None
                kwargs[key] = float(value)
            else:
                kwargs[key] = spec
        return self.function, kwargs


def _t(function: str, note: str = "", tensor_kwargs: tuple = (), **kwargs: Any) -> TorchBuiltin:
    return TorchBuiltin(function, kwargs, tensor_kwargs, note)


F = "torch.nn.functional."


@dataclass(frozen=True)
class CatalogueEntry:
    """One catalogue entry. ``build(**params)`` gives the :class:`Activation`."""

    name: str
    formula: str
    params: tuple = ()
    source: str = ""
    torch: TorchBuiltin | None = None
    inputs: tuple = ("x",)
    aliases: tuple = ()
    note: str = ""
    surrogate: str = ""  # the gradient backpropagation uses instead of phi' (Activation.surrogate), if any
    requires: str = ""  # a condition on the parameters' values (e.g. "min_val <= max_val"), with its reason in note

    def check_requirements(self, values: Mapping[sympy.Symbol, sympy.Expr], given: str) -> None:
        """Refuse parameter ``values`` (symbol -> value; defaults fill the rest) that break :attr:`requires`;
        ``given`` names the values the user passed, for the message.  The check every Activation built
        from this entry makes in ``with_params``/``subs`` (:attr:`Activation.requires`)."""
        full = {p.symbol: values.get(p.symbol, sympy.sympify(p.default)) for p in self.params}
        _check_requirements(self.name, self.requirements, full, given)

    @functools.cached_property
    def requirements(self) -> tuple:
        """:attr:`requires` as :attr:`Activation.requires`: ((condition in the parameter symbols, note),) or ()."""
        if not self.requires:
            return ()
        return ((safe_sympify(self.requires, "requirement", {p.name: p.symbol for p in self.params}), self.note),)

    def __repr__(self) -> str:
        ps = ", ".join(f"{p.name}={p.default}" for p in self.params)
        return f"<{self.name}({', '.join(self.inputs)}{'; ' + ps if ps else ''}) = {self.formula}>"

    @functools.cached_property
    def expr(self) -> sympy.Expr:
        namespace_params = [p.symbol for p in self.params]
        expr = parse_formula(self.formula, namespace_params)
        constants = {"SELU_ALPHA": SELU_ALPHA, "SELU_SCALE": SELU_SCALE}
        return expr.xreplace({s: constants[s.name] for s in expr.free_symbols if s.name in constants})

    @functools.cached_property
    def surrogate_expr(self) -> sympy.Expr | None:
        return parse_formula(self.surrogate, [p.symbol for p in self.params]) if self.surrogate else None

    def build(self, **values: Any) -> Activation:
        params = {p.symbol: sympy.sympify(p.default) for p in self.params}
        by_name = {p.name: p.symbol for p in self.params}
        for name, value in values.items():
            if name not in by_name:
                raise UnknownSymbolError(
                    f"{self.name} has no parameter {name!r}; its parameters are {list(by_name) or 'none'}"
                )
            params[by_name[name]] = _checked_value(by_name[name], _exact_number(value, name), self.name)
        inputs = tuple({"x": x, "v": v}[s] for s in self.inputs)
        act = Activation(
            name=self.name, expr=self.expr, params=params, inputs=inputs, source=self.source, torch_spec=self.torch,
            surrogate=self.surrogate_expr, requires=self.requirements,
        )
        if values:
            self.check_requirements(params, ", ".join(f"{name}={params[by_name[name]]}" for name in values))
            # The defaults are real; a value the user gives may not be (softexponential with alpha < 0 is a
            # log, real only on a half-line): the check a formula string gets, with the entry's note.
            given = ", ".join(f"{name}={params[by_name[name]]}" for name in values)
            _check_real_with_params(act, given, self.note)
        return act


_POS = {"positive": True}
_NONNEG = {"nonnegative": True}

_ENTRIES = (
    CatalogueEntry("identity", "x", source="-"),
    CatalogueEntry("relu", "Max(0, x)", source="Nair & Hinton 2010", torch=_t(F + "relu")),
    CatalogueEntry(
        "leaky_relu", "Piecewise((x, x > 0), (negative_slope*x, True))", (_p("negative_slope", "1/100"),),
        "Maas et al. 2013", _t(F + "leaky_relu", negative_slope="$negative_slope"),
    ),
    CatalogueEntry(
        "prelu", "Piecewise((x, x > 0), (a*x, True))", (_p("a", "1/4"),), "He et al. 2015",
        _t(F + "prelu", tensor_kwargs=("weight",), weight="$a"),
    ),
    CatalogueEntry(
        "elu", "Piecewise((x, x > 0), (alpha*(exp(x) - 1), True))", (Param("alpha", "1", _POS),),
        "Clevert et al. 2016", _t(F + "elu", alpha="$alpha"),
    ),
    CatalogueEntry(
        "selu", "SELU_SCALE*Piecewise((x, x > 0), (SELU_ALPHA*(exp(x) - 1), True))", (),
        "Klambauer et al. 2017 (alpha_01, lambda_01 in closed form)", _t(F + "selu"),
    ),
    CatalogueEntry(
        # Written like elu, not as torch's Max(0, x) + Min(0, alpha*(exp(x/alpha) - 1)): each term's kink convention
        # is 0 at 0, where celu is C^1 with slope 1, which the derivative of that sum must recover by solving for
        # the point; one Piecewise has no kinks to reconcile.
        "celu", "Piecewise((x, x > 0), (alpha*(exp(x/alpha) - 1), True))", (Param("alpha", "1", _POS),),
        "Barron 2017", _t(F + "celu", alpha="$alpha"),
    ),
    CatalogueEntry("gelu", "x*(1 + erf(x/sqrt(2)))/2", (), "Hendrycks & Gimpel 2016", _t(F + "gelu")),
    CatalogueEntry(
        "gelu_tanh", "x*(1 + tanh(sqrt(2/pi)*(x + 44715/1000000*x**3)))/2", (),
        "Hendrycks & Gimpel 2016 (tanh approximation)", _t(F + "gelu", approximate="tanh"),
    ),
    CatalogueEntry("silu", "x/(1 + exp(-x))", (), "Elfwing et al. 2018; Ramachandran et al. 2017", _t(F + "silu")),
    CatalogueEntry("swish", "x/(1 + exp(-beta*x))", (Param("beta", "1", _POS),), "Ramachandran et al. 2017"),
    CatalogueEntry("mish", "x*tanh(log(1 + exp(x)))", (), "Misra 2019", _t(F + "mish")),
    CatalogueEntry(
        "softplus", "log(1 + exp(beta*x))/beta", (Param("beta", "1", _POS),), "Dugas et al. 2001",
        # torch switches to the identity for beta*x > threshold (default 20, an error of e^-20);
        # at 40 the switch error e^-40 is below float64 resolution.
        _t(F + "softplus", beta="$beta", threshold=40.0),
    ),
    CatalogueEntry("softsign", "x/(1 + Abs(x))", (), "Turian et al. 2009", _t(F + "softsign")),
    CatalogueEntry("tanh", "tanh(x)", (), "-", _t("torch.tanh")),
    CatalogueEntry("sigmoid", "1/(1 + exp(-x))", (), "-", _t("torch.sigmoid")),
    CatalogueEntry(
        "hardtanh", "Min(max_val, Max(min_val, x))", (_p("min_val", -1), _p("max_val", 1)), "Collobert 2004",
        _t(F + "hardtanh", min_val="$min_val", max_val="$max_val"), requires="min_val <= max_val",
        note="with min_val > max_val the formula is the constant max_val; torch.nn.functional.hardtanh refuses it",
    ),
    CatalogueEntry("hardsigmoid", "Min(1, Max(0, x/6 + 1/2))", (), "Courbariaux et al. 2015 (PyTorch form)", _t(F + "hardsigmoid")),
    CatalogueEntry("hardswish", "x*Min(1, Max(0, x/6 + 1/2))", (), "Howard et al. 2019", _t(F + "hardswish")),
    CatalogueEntry("relu6", "Min(6, Max(0, x))", (), "Krizhevsky 2010", _t(F + "relu6")),
    # HeLU's forward is relu's, so the PyTorch built-in would give the wrong gradient: none listed
    CatalogueEntry(
        "helu", "Max(0, x)", (Param("alpha", "1/20", _NONNEG),),
        "Kimhi, Kashani, Mendelson & Baskin 2024, Hysteresis Activation Function for Efficient Inference "
        "(arXiv:2411.10573): a ReLU trained with a gradient whose threshold is moved to -alpha",
        surrogate="Heaviside(x + alpha, 0)",
        note="forward relu; backward 1 for x > -alpha (surrogate gradient), 0 elsewhere",
    ),
    CatalogueEntry("logsigmoid", "-log(1 + exp(-x))", (), "-", _t(F + "logsigmoid")),
    CatalogueEntry("tanhshrink", "x - tanh(x)", (), "-", _t(F + "tanhshrink")),
    CatalogueEntry(
        "softshrink", "Piecewise((x - lambd, x > lambd), (x + lambd, x < -lambd), (0, True))",
        (Param("lambd", "1/2", _NONNEG),), "Donoho 1995 (soft thresholding)", _t(F + "softshrink", lambd="$lambd"),
    ),
    CatalogueEntry(
        "hardshrink", "Piecewise((x, x > lambd), (x, x < -lambd), (0, True))", (Param("lambd", "1/2", _NONNEG),),
        "hard thresholding", _t(F + "hardshrink", lambd="$lambd"),
    ),
    CatalogueEntry("relu_squared", "Max(0, x)**2", (), "So et al. 2021 (Primer)"),
    CatalogueEntry("squareplus", "(x + sqrt(x**2 + b))/2", (Param("b", "4", _NONNEG),), "Barron 2021"),
    CatalogueEntry("erf", "erf(x)", (), "-", _t("torch.erf")),
    CatalogueEntry("sin", "sin(x)", (), "Sitzmann et al. 2020 (SIREN)", _t("torch.sin")),
    CatalogueEntry("cos", "cos(x)", (), "-", _t("torch.cos")),
    CatalogueEntry("gaussian", "exp(-x**2)", (), "RBF networks"),
    CatalogueEntry("isru", "x/sqrt(1 + alpha*x**2)", (Param("alpha", "1", _POS),), "Carlile et al. 2017"),
    CatalogueEntry(
        "isrlu", "Piecewise((x, x >= 0), (x/sqrt(1 + alpha*x**2), True))", (Param("alpha", "1", _POS),),
        "Carlile et al. 2017",
    ),
    CatalogueEntry("bent_identity", "(sqrt(x**2 + 1) - 1)/2 + x", (), "-"),
    CatalogueEntry("sinc", "sinc(x)", (), "unnormalised sinc sin(x)/x; torch.sinc is sin(pi x)/(pi x)"),
    CatalogueEntry("arctan", "atan(x)", (), "-", _t("torch.atan"), aliases=("atan",)),
    CatalogueEntry("lisht", "x*tanh(x)", (), "Roy et al. 2019"),
    CatalogueEntry("serf", "x*erf(log(1 + exp(x)))", (), "Nag & Bhattacharyya 2021"),
    CatalogueEntry("exponential", "exp(x)", (), "-", _t("torch.exp"), aliases=("exp",)),
    CatalogueEntry(
        "heaviside", "Heaviside(x, 0)", (), "step function; value 0 at 0",
        _t("torch.heaviside", tensor_kwargs=("values",), values=0.0), aliases=("step",),
    ),
    CatalogueEntry("abs", "Abs(x)", (), "-", _t("torch.abs")),
    CatalogueEntry(
        "tempered_sigmoid", "s/(1 + exp(-T*x)) - o", (_p("s", 2), Param("T", "2", _POS), _p("o", 1)),
        "Papernot et al. 2021 (s=2, T=2, o=1 is tanh)",
    ),
    CatalogueEntry("snake", "x + sin(a*x)**2/a", (Param("a", "1", _POS),), "Ziyin et al. 2020 (x + sin^2 x at a=1)"),
    CatalogueEntry(
        "apa", "(lam*exp(-kappa*x) + 1)**(-1/lam)", (Param("kappa", "1", _POS), Param("lam", "1", _POS)),
        "Alexandridis et al. 2024, Adaptive Parametric Activation (kappa = lam = 1 is the sigmoid)",
    ),
    CatalogueEntry(
        "cauchy", "(lambda1*x + lambda2)/(x**2 + d**2)", (_p("lambda1", 1), _p("lambda2", 1), Param("d", "1", _POS)),
        "Li, Xia & Zhang 2024, Cauchy activation (XNet)",
    ),
    CatalogueEntry(
        "pade",
        "(a0 + a1*x + a2*x**2 + a3*x**3 + a4*x**4 + a5*x**5)"
        "/(1 + Abs(b1)*Abs(x) + Abs(b2)*Abs(x)**2 + Abs(b3)*Abs(x)**3 + Abs(b4)*Abs(x)**4)",
        (_p("a0", 0), _p("a1", 1), _p("a2", "1/2"), _p("a3", 0), _p("a4", 0), _p("a5", 0),
         _p("b1", 0), _p("b2", "1/2"), _p("b3", 0), _p("b4", 0)),
        "Molina et al. 2020, safe Pade activation unit (degrees 5/4)",
        note="defaults (x + x^2/2)/(1 + x^2/2) are a placeholder shape (x + O(x^2) near 0); set or train the coefficients",
    ),
    CatalogueEntry(
        "xatlu", "x*((1 + 2*alpha)*(atan(x)/pi + 1/2) - alpha)", (_p("alpha", 0),),
        "Huang 2024, expanded gating ranges (alpha = 0: the plain arctan gate)",
    ),
    CatalogueEntry("xgelu", "x*((1 + 2*alpha)*(1 + erf(x/sqrt(2)))/2 - alpha)", (_p("alpha", 0),), "Huang 2024"),
    CatalogueEntry("xsilu", "x*((1 + 2*alpha)/(1 + exp(-x)) - alpha)", (_p("alpha", 0),), "Huang 2024"),
    CatalogueEntry(
        "elephant", "1/(1 + Abs(x/a)**d)", (Param("a", "1", _POS), Param("d", "4", _POS)),
        "Lan & Mahmood 2023, elephant activation",
    ),
    CatalogueEntry(
        "sau",
        "(1 + alpha)*x/2 + (1 - alpha)*x*erf(x/(sqrt(2)*sigma))/2"
        " + (1 - alpha)*sigma*exp(-x**2/(2*sigma**2))/sqrt(2*pi)",
        (_p("alpha", "1/100"), Param("sigma", "1", _POS)),
        "Biswas et al. 2021, SAU: leaky ReLU convolved with a Gaussian of width sigma",
    ),
    CatalogueEntry(
        "smu", "((1 + alpha)*x + (1 - alpha)*x*erf(mu*(1 - alpha)*x))/2",
        (_p("alpha", "1/4"), Param("mu", "1", _POS)), "Biswas et al. 2021, smooth maximum unit",
    ),
    CatalogueEntry(
        "softexponential",
        "Piecewise((-log(1 - alpha*(x + alpha))/alpha, alpha < 0), (x, Eq(alpha, 0)), ((exp(alpha*x) - 1)/alpha + alpha, True))",
        (_p("alpha", 0),), "Godfrey & Gashler 2015",
        note="for alpha < 0 it is real only where 1 - alpha*(x + alpha) > 0",
    ),
    # Two-input gated forms: x is the value half, v the gate half (F.glu's first and second halves).
    CatalogueEntry("glu", "x/(1 + exp(-v))", (), "Dauphin et al. 2017", _t(F + "glu", note="input = cat([x, v], -1)"), ("x", "v")),
    CatalogueEntry("bilinear", "x*v", (), "Shazeer 2020 (GLU variants)", inputs=("x", "v")),
    CatalogueEntry("reglu", "x*Max(0, v)", (), "Shazeer 2020", inputs=("x", "v")),
    CatalogueEntry("geglu", "x*v*(1 + erf(v/sqrt(2)))/2", (), "Shazeer 2020", inputs=("x", "v")),
    CatalogueEntry("swiglu", "x*v/(1 + exp(-v))", (), "Shazeer 2020", inputs=("x", "v")),
)

_BY_NAME = {e.name: e for e in _ENTRIES}
_ALIASES = {a: e for e in _ENTRIES for a in e.aliases}


def catalogue() -> list:
    """All entries (name, formula, params, source, torch built-in).

    >>> [e.name for e in catalogue()][:3]
    ['identity', 'relu', 'leaky_relu']
    """
    return list(_ENTRIES)


def catalogue_names(include_gated: bool = True) -> list:
    """Names of the catalogue entries (aliases not included)."""
    return [e.name for e in _ENTRIES if include_gated or len(e.inputs) == 1]


def lookup(name: str) -> CatalogueEntry | None:
    """The entry called ``name`` (or one of its aliases), case-insensitive; None if absent."""
    key = name.strip().lower()
    return _BY_NAME.get(key) or _ALIASES.get(key)
