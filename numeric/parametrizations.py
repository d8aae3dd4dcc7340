"""Parameter activations as ``torch.nn.utils.parametrize`` parametrisations.

A layer's ``weight`` becomes A = g(W): the module keeps the unconstrained W (``parametrizations.weight.original``)
and recomputes A on access.  ``right_inverse`` is g^{-1} from :func:`symact.parameter_activation`, so
registering a parametrisation on an existing layer keeps its weights (exactly, up to float rounding).

Signed weights (the seed's remedies for its positive-only assumption):

* :class:`DifferenceParametrization`  A = g(W+) - g(W-)
* :class:`SoftSignParametrization`    A = tanh(k*S) * g(W)
* :class:`SecondLayerParametrization` A = V @ g(W) (a second, signed linear layer over positive weights)

>>> import torch, numeric
>>> layer = numeric.parametrize_model(torch.nn.Linear(3, 2), "exp", signed="difference")
>>> layer.weight.shape
torch.Size([2, 3])
"""

from __future__ import annotations

import functools
import math
import warnings
from typing import Any, Callable, Iterable, Sequence

import sympy as sp
import torch
from torch import nn
from torch.nn.utils import parametrize as torch_parametrize

import symact
from symact.errors import DomainError, FormulaError
from symact.parametrize import ParameterActivation, _cache_key, _domain_argument
from symact.primitives import Expm1, Log1p

__all__ = [
    "ParameterActivationParametrization",
    "DifferenceParametrization",
    "SoftSignParametrization",
    "SecondLayerParametrization",
    "parametrization",
    "parametrize_model",
    "sympy_to_torch",
]


def sympy_to_torch(expr: sp.Expr, symbol: sp.Symbol) -> Callable[[torch.Tensor], torch.Tensor]:
    """Elementwise torch function of one tensor computing ``expr`` (a SymPy expression in ``symbol``).

    The single place where this module turns SymPy into torch: it delegates to the project's code
    generator :func:`numeric.torch_function` (safe forms, hand-written backward), writing ``expr`` in the
    generator's input symbol ``x``.

    >>> f = sympy_to_torch(sp.exp(symact.parametrize.W), symact.parametrize.W)
    >>> f(torch.zeros(2))
    tensor([1., 1.])
    """
    from .codegen import torch_function

    # real only where it is applied (log(A) on exp's range A > 0): the real-line check is not for it
    fn = torch_function(expr.subs(symbol, _CODEGEN_INPUT), real_line=False)
    return fn.apply


# The code generator's input symbol (symact.x).
_CODEGEN_INPUT = sp.Symbol("x", real=True)


def _as_parameter_activation(g: str | sp.Expr | ParameterActivation, params: dict[str, Any]) -> ParameterActivation:
    # domain= is parameter_activation's keyword (the interval of W to invert on), not a parameter of g;
    # passed on to it, it used to collide there with parameter_activation's own and raise a raw TypeError
    params = dict(params)
    domain = params.pop("domain", None)
    if isinstance(g, ParameterActivation):
        if domain is not None:
            raise DomainError(
                f"domain={domain!r} was given with a ParameterActivation, which has its domain already "
                f"({g.requested_domain!r}); build it with symact.parameter_activation({str(g.g)!r}, "
                f"domain={domain!r}) instead, or pass the formula string with domain=.")
        return g.with_params(**params) if params else g
    return _cached_parameter_activation(g, _cache_key(params), _domain_argument(domain))


@functools.lru_cache(maxsize=128)
def _cached_parameter_activation(g: str | sp.Expr, params: tuple, domain: str | None) -> ParameterActivation:
    # Deriving an inverse costs SymPy time; a model has many layers with the same g.  The objects are
    # immutable (their derived attributes are cached values of fixed inputs), so sharing them is safe.
    return symact.parameter_activation(g, domain=domain, **{k: v for k, _, v in params})


def _is_log_of_exp_less_one(e: sp.Basic) -> bool:
    """Whether ``e`` is log(exp(u) - 1) (the inverse of softplus)."""
    if not isinstance(e, sp.log) or not e.args[0].is_Add:
        return False
    terms = e.args[0].args
    return len(terms) == 2 and sp.S.NegativeOne in terms and any(isinstance(t, sp.exp) for t in terms)


def _log_of_exp_less_one(e: sp.log) -> sp.Expr:
    u = next(t for t in e.args[0].args if isinstance(t, sp.exp)).args[0]
    return u + sp.log(-Expm1(-u))


def _accurate_form(inverse: sp.Expr) -> sp.Expr:
    """``inverse`` with the forms that lose all digits in floating point replaced by exact identities:

    * atanh(u) = (log1p(u) - log1p(-u))/2 (through plain logs, log(1 - u) is 0 for |u| < eps/2, so
      right_inverse of A = tanh(W) was off by a factor 2 at A = 1e-9 in float32);
    * log(exp(u) - 1) = u + log(-expm1(-u)) (softplus's inverse: exp(u) overflows for u > 88 in float32,
      709 in float64, where the inverse is about u itself)."""
    inverse = inverse.replace(sp.atanh, lambda u: (Log1p(u) - Log1p(-u)) / 2)
    # asin and acos (sin(W) on (-pi/2, pi/2), cos(W) on (0, pi)) have no rule in the code generator and
    # rewrite(log) makes them complex; through atan they are real on [-1, 1] (1 - u and 1 + u are exact
    # near u = +-1, where 1 - u**2 would cancel)
    inverse = inverse.replace(sp.asin, lambda u: sp.atan(u / sp.sqrt((1 - u) * (1 + u))))
    inverse = inverse.replace(sp.acos, lambda u: 2 * sp.atan(sp.sqrt((1 - u) / (1 + u))))
    # acosh (the real root of a cubic, 2*cosh(acosh(u)/3), u >= 1) has no rule either, and rewrite(log) of
    # the whole inverse also rewrites its cos into complex exponentials: log(u) + log1p(sqrt(1 - 1/u**2)),
    # which neither overflows for large u nor cancels near u = 1
    inverse = inverse.replace(sp.acosh, lambda u: sp.log(u) + Log1p(sp.sqrt((1 - 1 / u) * (1 + 1 / u))))
    return inverse.replace(_is_log_of_exp_less_one, _log_of_exp_less_one)


def _torch_inverse(pa: ParameterActivation) -> Callable[[torch.Tensor], torch.Tensor]:
    """g^{-1} as a torch function (for ``right_inverse``).  Inverse hyperbolic functions the code generator
    has no rule for (atanh for A = tanh(W), acosh, acoth) are written through logs, which it has (atanh
    through log1p, see :func:`_accurate_form`); an inverse with no torch form (LambertW, erfinv) is a
    FormulaError that says so."""
    inverse = _accurate_form(pa.concrete(pa.inverse))
    try:
        return sympy_to_torch(inverse, pa.A)
    except FormulaError as err:
        through_logs = inverse.rewrite(sp.log)
        translated = None
        if through_logs != inverse:
            try:
                translated = sympy_to_torch(through_logs, pa.A)
            except FormulaError:  # neither form translates: the error below names the inverse
                translated = None
        if translated is not None:
            return translated
        raise FormulaError(
            f"A = {pa.concrete(pa.g)} cannot be a parametrisation: right_inverse needs g^-1(A) = {inverse}, "
            f"which has no PyTorch translation ({err}). Choose a g whose inverse is elementary "
            "(exp, log, powers, tanh, sigmoid, softplus, ...).") from err


def _interval_bounds(interval: sp.Set) -> tuple[float, float, bool, bool] | None:
    """(lo, hi, lo_open, hi_open) of an interval of W; None for another set (a union)."""
    if not isinstance(interval, sp.Interval):
        return None
    return float(interval.inf), float(interval.sup), bool(interval.left_open), bool(interval.right_open)


def _range_bounds(pa: ParameterActivation) -> list[tuple[float, float, bool, bool]] | None:
    """g's range as (lo, hi, lo_open, hi_open) per interval (a union, such as 1/W's A != 0, gives several);
    None where it is not known."""
    rng = pa.concrete(pa.range) if pa.range is not None else None
    pieces = rng.args if isinstance(rng, sp.Union) else (rng,)
    if not pieces or not all(isinstance(r, sp.Interval) for r in pieces):
        return None
    return [(float(r.inf), float(r.sup), bool(r.left_open), bool(r.right_open)) for r in pieces]


class ParameterActivationParametrization(nn.Module):
    """A = g(W) elementwise; ``right_inverse`` = g^{-1} on the domain stated by the symbolic object.

    ``g``: a name, a formula in W or a :class:`~symact.parametrize.ParameterActivation`; keywords are g's
    parameter values and ``domain=`` (the interval of W to invert on, as for
    :func:`symact.parameter_activation`: ``domain=(-sympy.oo, 0)`` takes W = -sqrt(A) for A = W**2).
    ``right_inverse`` refuses values outside g's range, and gives W with g(W) = A to rounding.  An open end
    of the range that the forward gives by rounding (tanh(W) = 1.0 in float32 for W >= 9.01) becomes the
    least saturated W giving it, with a RuntimeWarning; it is refused where g' is 0 there (exp(W) = 0.0:
    such a weight could never train).

    >>> p = ParameterActivationParametrization("exp")
    >>> p
    ParameterActivationParametrization(A = exp(W), W in Reals)
    >>> torch.allclose(p(p.right_inverse(torch.tensor([0.5, 2.0]))), torch.tensor([0.5, 2.0]))
    True
    """

    def __init__(self, g: str | sp.Expr | ParameterActivation = "exp", **params: Any) -> None:
        super().__init__()
        self.activation = _as_parameter_activation(g, params)
        # Numbers need the parameters' values; re-derive with them substituted (same function, same domain).
        pa = self.activation
        if pa.params:
            pa = _cached_parameter_activation(pa.concrete(pa.g), (), pa.requested_domain)
        self._concrete = pa
        self._g = sympy_to_torch(pa.concrete(pa.g), pa.W)
        self._g_inverse = _torch_inverse(pa)
        try:
            self._dg = sympy_to_torch(sp.diff(pa.concrete(pa.g), pa.W), pa.W)
        except FormulaError:  # no torch form for g': right_inverse is g^-1 as it stands
            self._dg = None
        self._bounds = _range_bounds(pa)
        self._domain_bounds = _interval_bounds(pa.domain)

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return self._g(weight)

    def in_range(self, value: torch.Tensor) -> torch.Tensor:
        """Boolean mask: entries of ``value`` that g can produce (so g^{-1} is defined there)."""
        ok = torch.isfinite(value)
        if self._bounds is not None:
            inside = torch.zeros_like(ok)
            for lo, hi, lo_open, hi_open in self._bounds:
                inside |= ((value > lo) if lo_open else (value >= lo)) & ((value < hi) if hi_open else (value <= hi))
            ok &= inside
        return ok

    def right_inverse(self, value: torch.Tensor) -> torch.Tensor:
        return self._inverse(value, lambda problem: (
            f"{problem}. Use a signed parametrisation (signed='difference', 'soft_sign' or 'second_layer') "
            "for weights outside that range."))

    def _inverse(self, value: torch.Tensor, message: Callable[[str], str]) -> torch.Tensor:
        """g^{-1}(value); entries outside g's range raise DomainError(message(what is wrong)).

        An open end of g's range (-1 for A = exp(W) - 1, 1 for tanh(W)) is outside it, yet the forward
        gives it in floating point (exp(W) - 1 = -1 in float32 for W <= -17.33): such a value becomes the
        W nearest the inside whose g(W) rounds to it (with a RuntimeWarning: the weight is saturated),
        so that every value the forward produces round-trips; it is refused only where g reaches it
        nowhere in the domain or only where g'(W) is 0 or subnormal (exp(W) = 0 in float32 for W <= -104:
        such a weight could never train)."""
        ok = self.in_range(value)
        toward = self._open_end_direction(value)
        ends = ~ok & (toward != 0)
        if not bool((ok | ends).all()):
            outside = ~(ok | ends)
            bad = value[outside].flatten()[:3].tolist()
            raise DomainError(message(
                f"A = {self.activation.g} cannot take the value(s) {bad} ({int(outside.sum())} of {value.numel()} "
                f"entries; its range is {self.activation.range})"))
        weight = self._refine(self._g_inverse(value), value)
        if bool(ends.any()):
            weight = torch.where(ends, torch.zeros_like(weight), weight)
            weight[ends] = self._end_weights(value[ends], toward[ends], message)
        if not bool(torch.isfinite(weight).all()):
            raise DomainError(f"g^-1 = {self.activation.inverse} produced non-finite values; rescale the weights.")
        self._check_round_trip(weight, value, message)
        self._check_forward_is_finite(weight, value)
        return weight

    @torch.no_grad()
    def _check_forward_is_finite(self, weight: torch.Tensor, value: torch.Tensor) -> None:
        """g(weight) computed as the forward does, in weight's dtype, must be finite where ``value`` is: the
        round-trip check runs in float64, where exp(11.0938) = 65535.6 is fine, yet in float16 it is inf, so
        A = 65504 (float16's largest) became an infinite weight (exp at float32's largest, and 1/W near the
        largest value of a dtype, where W is subnormal, alike)."""
        if weight.numel() == 0:
            return
        lost = torch.isfinite(value) & ~torch.isfinite(self._g(weight))
        if bool(lost.any()):
            shown, ws = value[lost].flatten()[:3].tolist(), weight[lost].flatten()[:3].tolist()
            raise DomainError(
                f"A = {self.activation.g} cannot hold the value(s) {shown} in {value.dtype} ({int(lost.sum())} of "
                f"{value.numel()} entries): the nearest {value.dtype} W = {ws} gives g(W) = inf there, so the layer's "
                f"weight would be infinite. Scale these weights down, or parametrise in a wider dtype "
                f"({'float64' if value.dtype == torch.float32 else 'float32 or float64'}).")

    def _open_end_direction(self, value: torch.Tensor) -> torch.Tensor:
        """+1 where ``value`` is a finite open lower end of g's range, -1 at an open upper end, else 0
        (compared in value's dtype, in which the forward rounds to it)."""
        toward = torch.zeros_like(value)
        if self._bounds is None:
            return toward
        for lo, hi, lo_open, hi_open in self._bounds:
            if lo_open and math.isfinite(lo):
                toward = torch.where(value == lo, torch.ones_like(value), toward)
            if hi_open and math.isfinite(hi):
                toward = torch.where(value == hi, -torch.ones_like(value), toward)
        return toward

    def _in_domain(self, weight: torch.Tensor) -> torch.Tensor:
        ok = torch.isfinite(weight)
        if self._domain_bounds is not None:
            lo, hi, lo_open, hi_open = self._domain_bounds
            ok &= ((weight > lo) if lo_open else (weight >= lo)) & ((weight < hi) if hi_open else (weight <= hi))
        return ok

    @torch.no_grad()
    def _end_weights(self, value: torch.Tensor, toward: torch.Tensor, message: Callable[[str], str]) -> torch.Tensor:
        """For values at an open end of g's range (1-D, ``toward`` = +1 at a lower end, -1 at an upper): the
        W of g's domain nearest the inside whose g(W), computed in value's dtype, is that value, found
        from g^{-1} of the next representable value inside (then stepping outward, doubling, and
        bisecting to the last W that rounds to the end).  DomainError where there is none, or where g'
        is 0 or subnormal there (the weight could never move)."""
        dtype = value.dtype
        g_text = f"A = {self.activation.g}"

        def refuse(why: str, where: torch.Tensor) -> DomainError:
            shown, count = value[where].flatten()[:3].tolist(), int(where.sum())
            return DomainError(message(
                f"{g_text} cannot take the value(s) {shown} ({count} entr{'y' if count == 1 else 'ies'}): an end "
                "of its open range "
                f"{self.activation.range}, which g reaches in {dtype} {why}"))

        if self._dg is None:
            raise refuse("only by rounding, and g' has no torch form to find such a W",
                         torch.ones_like(value, dtype=torch.bool))
        inward = torch.nextafter(value, toward * math.inf).double()
        w = self._refine(self._g_inverse(inward), inward)
        # The closed-form inverse can round to the end itself at the next value inside: tanh(W)**3 in float64
        # takes the cube root of 1 - 1.1e-16, which is 1.0, and atanh(1) = inf; with no finite start the
        # search below never ran and -1.0, which the forward gives for every W <= -19.1, was refused as
        # reached "at no W of its domain".  Start further inside (doubling the distance) where that happens.
        gap = torch.finfo(dtype).eps * value.double().abs().clamp(min=1.0)
        for _ in range(60):
            lost = ~(torch.isfinite(w) & self._in_domain(w))
            if not bool(lost.any()):
                break
            gap = torch.where(lost, gap * 2, gap)
            further = value.double() + toward.double() * gap
            w = torch.where(lost, self._refine(self._g_inverse(further), further), w)
        slope = self._dg(w)
        # the direction of W in which g moves toward the end: down to a lower end, up to an upper one
        outward = -torch.sign(slope) * toward.double()

        def reaches(candidate: torch.Tensor) -> torch.Tensor:
            rounded = candidate.to(dtype)
            return (self._g(rounded) == value) & self._in_domain(rounded)

        near, far = w.clone(), torch.where(reaches(w), w, torch.full_like(w, math.nan))
        # where g' underflows to 0 at w (softplus' = sigmoid there) its sign cannot tell the way: try both
        for direction in (outward, torch.ones_like(w), -torch.ones_like(w)):
            step = torch.finfo(dtype).eps * w.abs().clamp(min=1.0)
            alive = torch.isnan(far) & (direction != 0) & torch.isfinite(w)
            for _ in range(200):
                if not bool(alive.any()):
                    break
                trial = w + direction * step
                hit = alive & reaches(trial)
                far = torch.where(hit, trial, far)
                near = torch.where(alive & ~hit, trial, near)
                alive &= ~hit & self._in_domain(trial.to(dtype)) & torch.isfinite(trial)
                step = step * 2
            near = torch.where(torch.isnan(far), w, near)
        found = torch.isfinite(far)
        if not bool(found.all()):
            raise refuse(f"at no W of its domain {self.activation.domain}", ~found)
        for _ in range(200):   # far rounds to the end, near does not: shrink [near, far]
            mid = near + (far - near) / 2
            moving = (mid != near) & (mid != far)
            if not bool(moving.any()):
                break
            hit = reaches(mid)
            far = torch.where(moving & hit, mid, far)
            near = torch.where(moving & ~hit, mid, near)
        weight = far.to(dtype)
        gradient = self._dg(weight)
        tiny = torch.finfo(dtype).tiny
        # g' subnormal as well as 0: rounding is not monotone there (softplus(-745.0) = 0.0 in float64 with
        # softplus'(-745.0) = 4.9e-324, where the least saturated W found has g' = 0)
        dead = ~(torch.isfinite(gradient) & (gradient.abs() >= tiny))
        if bool(dead.any()):
            where = weight[dead].flatten()[:1].tolist()
            raise refuse(f"only where g'(W) is 0 or below the smallest normal number {tiny:.3g} (W = "
                         f"{where[0]:.6g} and beyond), so such a weight could never train", dead)
        warnings.warn(
            f"{g_text}: {value.numel()} value(s) {value.flatten()[:3].tolist()} are an end of g's open range "
            f"{self.activation.range}, which g gives in {dtype} only by rounding; they become W = "
            f"{weight.flatten()[:3].tolist()}, where g'(W) = {gradient.flatten()[:3].tolist()}: saturated "
            "weights, which train slowly.", RuntimeWarning, stacklevel=4)
        return weight

    @torch.no_grad()
    def _check_round_trip(self, weight: torch.Tensor, value: torch.Tensor, message: Callable[[str], str]) -> None:
        """g(weight) must give ``value`` back to within rounding (64 units of the dtype's precision of
        |A| + |W g'(W)|, what rounding A and W moves g by): a value outside g's range that the range check
        could not see (a range SymPy did not find) must not become a weight with another g(W)."""
        if self._dg is None or weight.numel() == 0:
            return
        w, a = weight.double(), value.double()
        residual = (self._g(w) - a).abs()
        scale = a.abs() + (w * self._dg(w)).abs()
        finfo = torch.finfo(weight.dtype)
        # residual 0 passes even where the scale is NaN (W*g'(W) = 0*inf at powerprop alpha < 1's W = 0)
        bad = ~((residual <= 64 * finfo.eps * scale + finfo.tiny) | (residual == 0))
        if bool(bad.any()):
            given, back = value[bad].flatten()[:3].tolist(), self._g(w)[bad].flatten()[:3].tolist()
            raise DomainError(message(
                f"A = {self.activation.g} does not give the value(s) {given} back through W = "
                f"{self.activation.inverse} (g(W) = {back}): they are outside g's range"))

    @torch.no_grad()
    def _refine(self, weight: torch.Tensor, value: torch.Tensor, steps: int = 3) -> torch.Tensor:
        """Newton steps on g(W) = A in float64, each kept only where it makes |g(W) - A| smaller.

        A closed-form inverse can be exact and still lose every digit in floating point: Cardano's
        formula for A = W + W**3 cancels for small |A| (W = 8e-8 for A = 1e-9 in float32, and
        W = -3e-8 for A = 0).  Where the formula is accurate the steps change nothing."""
        if self._dg is None or weight.numel() == 0:
            return weight
        w, a = weight.double(), value.double()
        residual = self._g(w) - a
        for _ in range(steps):
            candidate = w - residual / self._dg(w)
            new_residual = self._g(candidate) - a
            better = torch.isfinite(candidate) & (new_residual.abs() < residual.abs())
            if not bool(better.any()):
                break
            w = torch.where(better, candidate, w)
            residual = torch.where(better, new_residual, residual)
        return w.to(weight.dtype)

    def offset(self) -> float:
        """A value g surely takes: g(0) if 0 is in the domain, else g(1), else g at a point inside the
        domain (a requested interval such as W > 2).  Used by the signed forms."""
        pa = self._concrete
        domain = pa.domain
        w0 = next((t for t in (0, 1) if domain.contains(t) is sp.true), None)
        if w0 is None:
            lo, hi = domain.inf, domain.sup
            w0 = (lo + hi) / 2 if lo.is_finite and hi.is_finite else lo + 1 if lo.is_finite else hi - 1
        value = pa.g.subs(pa.W, w0)
        if value is sp.nan:   # a removable 0/0: powerprop at alpha < 1, W/sqrt(|W|), is 0 at W = 0 (c was nan)
            value = sp.limit(pa.g, pa.W, w0, "+-")
        return float(value)

    def extra_repr(self) -> str:
        pa = self.activation
        pars = "".join(f", {s}={v}" for s, v in pa.params.items())
        return f"A = {pa.g}{pars}, W in {pa.domain}"


def _signed_message(stores: str, c: float) -> Callable[[str], str]:
    """The DomainError text of a signed form whose values for g fall outside g's range: the values named
    are those the form asks g for, not the weights given, and another signed form is no remedy."""
    return lambda problem: (
        f"{problem}. This signed form stores {stores}, with c = {c:g}, so the weights' magnitudes must keep "
        "these inside g's range: rescale the weights, or choose a g whose range is unbounded above "
        "(exp, softplus, W**2).")


class DifferenceParametrization(nn.Module):
    """A = g(W+) - g(W-) from two tensors of A's shape.

    ``right_inverse(A)`` = (g^{-1}(relu(A) + c), g^{-1}(relu(-A) + c)) with c = g(0) (or g(1), or g inside a
    requested domain, when 0 is not in the domain: :meth:`ParameterActivationParametrization.offset`), a value
    inside g's range; so g(W+) - g(W-) = A up to rounding of c.
    """

    def __init__(self, g: str | sp.Expr | ParameterActivation = "exp", **params: Any) -> None:
        super().__init__()
        self.base = ParameterActivationParametrization(g, **params)
        self.c = self.base.offset()

    def forward(self, w_plus: torch.Tensor, w_minus: torch.Tensor) -> torch.Tensor:
        return self.base(w_plus) - self.base(w_minus)

    def right_inverse(self, value: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        message = _signed_message("g(W+) = relu(A) + c and g(W-) = relu(-A) + c", self.c)
        return (self.base._inverse(torch.relu(value) + self.c, message),
                self.base._inverse(torch.relu(-value) + self.c, message))

    def extra_repr(self) -> str:
        return f"A = g(W+) - g(W-), g = {self.base.activation.g}, c = {self.c:g}"


class SoftSignParametrization(nn.Module):
    """A = tanh(k*S) * g(W) with a learned soft sign S (same shape as A) and fixed sharpness k.

    ``right_inverse(A)``: S = sign(A)/k (so tanh(k*S) = +-tanh(1)), W = g^{-1}(|A|/tanh(1)); where A = 0,
    S = 0 and W = g^{-1}(c) with c = g(0) or g(1).  Needs |A|/tanh(1) inside g's range.
    """

    def __init__(self, g: str | sp.Expr | ParameterActivation = "exp", k: float = 1.0, **params: Any) -> None:
        super().__init__()
        # k = inf passed "k > 0" and right_inverse then stored S = sign(A)/k = 0, so A = tanh(inf*0)*g(W)
        # was NaN everywhere
        try:
            finite = math.isfinite(k) and k > 0
        except TypeError:
            finite = False
        if not finite:
            raise DomainError(f"soft-sign sharpness k={k!r} must be a positive finite number, e.g. k=1.0.")
        self.base = ParameterActivationParametrization(g, **params)
        self.k = float(k)

    def forward(self, weight: torch.Tensor, sign_logit: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.k * sign_logit) * self.base(weight)

    def right_inverse(self, value: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        sign = torch.sign(value)
        magnitude = torch.where(sign == 0, torch.full_like(value, self.base.offset()), value.abs() / math.tanh(1.0))
        message = _signed_message("g(W) = |A|/tanh(1) (and g(W) = c where A = 0)", self.base.offset())
        return self.base._inverse(magnitude, message), sign / self.k

    def extra_repr(self) -> str:
        return f"A = tanh({self.k:g}*S) * g(W), g = {self.base.activation.g}"


class SecondLayerParametrization(nn.Module):
    """A = V @ g(W): positive weights g(W) of shape (m, n) mixed by a signed learned V of shape (out, m).

    A of shape (out, *rest) is handled as (out, n), n = prod(rest).  ``right_inverse(A)`` uses m = 2*out,
    V = [I, -I] and g(W) = [relu(A) + c; relu(-A) + c], which reproduces A exactly (c cancels); V and W then
    train freely, so the second layer can learn any signed mixture.
    """

    def __init__(self, g: str | sp.Expr | ParameterActivation = "exp", **params: Any) -> None:
        super().__init__()
        self.base = ParameterActivationParametrization(g, **params)
        self.c = self.base.offset()
        self.shape: tuple[int, ...] | None = None

    def forward(self, weight: torch.Tensor, mixing: torch.Tensor) -> torch.Tensor:
        out = mixing @ self.base(weight)
        return out.reshape(self.shape) if self.shape is not None else out

    def right_inverse(self, value: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self.shape = tuple(value.shape)
        flat = value.reshape(value.shape[0], -1)
        positive = torch.cat([torch.relu(flat), torch.relu(-flat)], dim=0) + self.c
        eye = torch.eye(flat.shape[0], dtype=value.dtype, device=value.device)
        message = _signed_message("g(W) = [relu(A) + c; relu(-A) + c]", self.c)
        return self.base._inverse(positive, message), torch.cat([eye, -eye], dim=1)

    def extra_repr(self) -> str:
        return f"A = V @ g(W), g = {self.base.activation.g}"


_SIGNED = {
    None: ParameterActivationParametrization,
    "difference": DifferenceParametrization,
    "soft_sign": SoftSignParametrization,
    "second_layer": SecondLayerParametrization,
}


def parametrization(g: str | sp.Expr | ParameterActivation = "exp", signed: str | None = None,
                    **params: Any) -> nn.Module:
    """The parametrisation module for g; ``signed`` in (None, 'difference', 'soft_sign', 'second_layer')."""
    if signed not in _SIGNED:
        raise FormulaError(f"signed={signed!r} is unknown; use one of {list(_SIGNED)}.")
    return _SIGNED[signed](g, **params)


DEFAULT_LAYERS: tuple[type[nn.Module], ...] = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def parametrize_model(model: nn.Module, g: str | sp.Expr | ParameterActivation = "exp", *,
                      include: Sequence[type[nn.Module]] | type[nn.Module] = DEFAULT_LAYERS,
                      signed: str | None = None, tensor_names: Iterable[str] = ("weight",),
                      **params: Any) -> nn.Module:
    """Register A = g(W) on every ``tensor_names`` tensor of every ``include`` layer of ``model``, in place.

    Existing weights are kept (through ``right_inverse``); weights outside g's range raise
    :class:`~symact.errors.DomainError` -- pass ``signed=`` for signed weights.  Returns ``model``.

    All or nothing: every tensor's ``right_inverse`` is checked before any is registered, so a refusal leaves
    ``model`` as it was.  :class:`~symact.errors.DomainError` also for a tensor that is parametrised already
    (a second call would make A = g(g(W))), one shared with another name (tied weights: torch writes W into
    the shared tensor), a ``tensor_names`` entry that no ``include`` layer has, and a model with nothing to
    parametrise.  A layer whose tensor is None (``bias=False``) is skipped.

    >>> net = parametrize_model(nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 1)), "exp",
    ...                         signed="soft_sign", k=2.0)
    >>> sum(torch_parametrize.is_parametrized(m) for m in net)
    2
    """
    include = _layer_types(include)
    tensor_names = (tensor_names,) if isinstance(tensor_names, str) else tuple(tensor_names)
    layers = [(label, module) for label, module in model.named_modules() if isinstance(module, include)]
    shown_types = ", ".join(t.__name__ for t in include)
    if not layers:
        kinds = sorted({type(m).__name__ for m in model.modules()})
        raise DomainError(
            f"parametrize_model found no layer of the types {shown_types} in {type(model).__name__} (its modules are "
            f"{', '.join(kinds)}), so nothing would be parametrised; pass include=(...) with the layer types to "
            "parametrise.")
    missing = [name for name in tensor_names if not any(hasattr(module, name) for _, module in layers)]
    if missing:
        raise DomainError(
            f"parametrize_model: no {shown_types} layer of the model has a tensor named {missing[0]!r}; "
            f"tensor_names={tensor_names!r} must name tensors of these layers, such as 'weight' or 'bias'.")
    # the (module, attribute) pairs holding each tensor: a tied weight is one tensor held by two (a module used
    # twice in the model is one holder, and one registration serves both uses)
    holders: dict[int, dict[tuple[int, str], str]] = {}
    for label, module in model.named_modules(remove_duplicate=False):
        for attr, tensor in [*module.named_parameters(recurse=False), *module.named_buffers(recurse=False)]:
            holders.setdefault(id(tensor), {}).setdefault((id(module), attr), f"{label}.{attr}" if label else attr)
    targets = []   # (where, module, tensor name)
    for label, module in layers:
        for name in tensor_names:
            where = f"{label}.{name}" if label else f"{type(model).__name__}.{name}"
            if torch_parametrize.is_parametrized(module, name):
                present = ", ".join(type(p).__name__ for p in module.parametrizations[name])
                raise DomainError(
                    f"parametrize_model: {where} is parametrised already (by {present}); a second "
                    "parametrisation would be stacked on it, A = g(previous(W)). Remove the old one first: "
                    f"torch.nn.utils.parametrize.remove_parametrizations(module, {name!r}) keeps the current "
                    "values; nothing was changed.")
            tensor = getattr(module, name, None)
            if tensor is None:
                continue
            others = [path for key, path in holders.get(id(tensor), {}).items() if key != (id(module), name)]
            if others:
                raise DomainError(
                    f"parametrize_model: {where} is one tensor with {', '.join(others)} "
                    "(tied weights); registering a parametrisation writes W = g^-1(A) into that shared tensor, "
                    "so the other name would hold W instead of A (or, signed, the tie would be broken). Untie "
                    "them, or parametrise one layer and have the other read its weight; nothing was changed.")
            targets.append((where, module, name))
    if not targets:
        raise DomainError(f"parametrize_model: every {tensor_names!r} tensor of the {shown_types} layers is None "
                          "(e.g. bias=False), so nothing would be parametrised.")
    # all or nothing: a refusal at the third layer used to leave the first two parametrised, and the retry with
    # signed=... that the refusal suggests then stacked on them (a bare TypeError from torch)
    built = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # registering warns again (a saturated weight), once
        for where, module, name in targets:
            p = parametrization(g, signed, **params)
            try:
                with torch.no_grad():
                    p.right_inverse(getattr(module, name))
            except DomainError as err:
                raise DomainError(f"parametrize_model changed nothing: {where}: {err}") from err
            built.append(p)
    for (_, module, name), p in zip(targets, built):
        torch_parametrize.register_parametrization(module, name, p)
    return model


def _layer_types(include: Any) -> tuple[type, ...]:
    """``include`` as a tuple of classes (one class, or any iterable of them)."""
    types = (include,) if isinstance(include, type) else tuple(include) if isinstance(include, Iterable) else (include,)
    bad = [t for t in types if not isinstance(t, type)]
    if bad or not types:
        raise DomainError(f"include={include!r} must be a layer class or a sequence of them, e.g. "
                          "include=(nn.Linear, nn.Conv2d).")
    return types
