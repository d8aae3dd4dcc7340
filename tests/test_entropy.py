"""Entropy normalisation: symbolic identities (symact.entropy) and the solvers (numeric.entropy)."""

from __future__ import annotations

import math

import mpmath
import pytest
import sympy
import torch

from numeric.entropy import EntropyNormalize, entropy_normalize, solve_entropy_gamma
from symact import entropy as sym
from symact.errors import DomainError

P_DECIMAL = ["0.5", "0.2", "0.15", "0.1", "0.05"]


# ----------------------------------------------------------------------------- symbolic


P3 = sympy.symbols("p1:4", positive=True)
GAMMA = sympy.Symbol("gamma", positive=True)
TOTAL = sympy.Symbol("Gamma", positive=True)
TARGET = sympy.Symbol("H_star", real=True)


def test_entropy_of_power_is_the_entropy_of_the_powered_distribution():
    q = sym.powered_distribution(P3, GAMMA)
    direct = -sum(qi * sympy.log(qi) for qi in q)
    assert sympy.simplify(sympy.expand_log(direct - sym.entropy_of_power(P3, GAMMA), force=True)) == 0


def test_dH_dgamma_is_minus_gamma_times_variance_of_log_p():
    H = sym.entropy_of_power(P3, GAMMA)
    assert sympy.simplify(sympy.diff(H, GAMMA) - sym.entropy_derivative(P3, GAMMA)) == 0


def test_first_order_update_is_newton_from_gamma_one():
    # on a normalised p (p3 = 1 - p1 - p2) the blog's update is the Newton step at Gamma = 1
    p1, p2 = sympy.symbols("p1 p2", positive=True)
    p = (p1, p2, 1 - p1 - p2)
    update = sym.first_order_update(p, TARGET)
    newton = sym.newton_step_total_exponent(p, 1, TARGET)
    assert sympy.simplify(sympy.expand_log(update - newton, force=True)) == 0


def test_iterated_update_times_exponent_is_newton_on_total_exponent():
    q = sym.powered_distribution(P3, TOTAL)
    lhs = TOTAL * sym.first_order_update(q, TARGET)
    rhs = sym.newton_step_total_exponent(P3, TOTAL, TARGET)
    assert sympy.simplify(sympy.expand_log(lhs - rhs, force=True)) == 0


def test_symbolic_entropy_of_known_distribution():
    half = sympy.Rational(1, 2)
    assert sym.entropy([half, half]) == sympy.log(2)
    # p = (1/4, 3/4), gamma = 2 -> (1/10, 9/10)
    assert sym.powered_distribution([sympy.Rational(1, 4), sympy.Rational(3, 4)], 2) == (
        sympy.Rational(1, 10), sympy.Rational(9, 10))


# ----------------------------------------------------------------------------- mpmath solver


def _independent_gamma(p_strings, target, dps):
    """findroot on the definition, secant method, different code path from the solver."""
    with mpmath.workdps(dps):
        p = [mpmath.mpf(s) for s in p_strings]

        def H_minus_target(g):
            w = [pi**g for pi in p]
            z = sum(w)
            return -sum((wi / z) * mpmath.log(wi / z) for wi in w) - target

        return mpmath.findroot(H_minus_target, (mpmath.mpf("1.5"), mpmath.mpf("1.7")), solver="secant")


def test_gamma_star_matches_independent_findroot_to_25_digits():
    result = entropy_normalize(P_DECIMAL, 1, dps=30)
    reference = _independent_gamma(P_DECIMAL, 1, 50)
    assert result.report.converged
    assert abs(result.gamma - reference) < mpmath.mpf(10) ** -25 * abs(reference)
    # the returned distribution has the target entropy and sums to 1
    with mpmath.workdps(30):
        H = -mpmath.fsum(q * mpmath.log(q) for q in result.p)
        assert abs(H - 1) < mpmath.mpf(10) ** -27
        assert abs(mpmath.fsum(result.p) - 1) < mpmath.mpf(10) ** -28


def test_newton_iteration_converges_quadratically():
    result = entropy_normalize(P_DECIMAL, 1, dps=60)
    reference = _independent_gamma(P_DECIMAL, 1, 80)
    errors = [abs(g - reference) for g in result.report.gamma_history]
    significant = [e for e in errors if e > mpmath.mpf(10) ** -55]
    assert len(significant) >= 4
    for before, after in zip(significant[1:], significant[2:]):
        # quadratic: e_{k+1} <= C e_k^2 with a modest C, and the digit count roughly doubles
        assert after <= 1 * before**2
        assert mpmath.log(after) / mpmath.log(before) > 1.8
    assert result.report.iterations <= 8


def test_residual_history_decreases_to_tolerance():
    result = entropy_normalize(P_DECIMAL, "0.3", dps=40)
    res = [abs(r) for r in result.report.residual_history]
    assert res[-1] <= result.report.tolerance
    assert res[-1] < res[0]


# ----------------------------------------------------------------------------- torch solver


@pytest.mark.parametrize("dtype, rtol", [(torch.float64, 1e-12), (torch.float32, 2e-5)])
def test_torch_batched_matches_mpmath(dtype, rtol):
    torch.manual_seed(0)
    p = torch.softmax(torch.randn(6, 9, dtype=torch.float64) * 2, dim=-1)
    target = 1.3
    result = entropy_normalize(p.to(dtype).transpose(0, 1), target, dim=0)  # along dim 0 this time
    assert result.gamma.shape == (1, 6)
    assert result.report.converged
    for row in range(6):
        ref = entropy_normalize(p[row].tolist(), target, dps=30)
        assert abs(float(result.gamma[0, row]) - float(ref.gamma)) <= rtol * float(ref.gamma)
    H = -(result.p.double() * result.p.double().log()).sum(0)
    assert torch.allclose(H, torch.full_like(H, target), rtol=0, atol=50 * torch.finfo(dtype).eps)


def test_zeros_stay_zero_and_only_the_support_counts():
    p = [0.0, 0.6, 0.3, 0.0, 0.1]
    r = entropy_normalize(torch.tensor(p, dtype=torch.float64), 0.5)
    assert r.p[0] == 0 and r.p[3] == 0
    ref = entropy_normalize([0.6, 0.3, 0.1], 0.5, dps=25)
    assert abs(float(r.gamma) - float(ref.gamma)) < 1e-12
    mp = entropy_normalize(p, 0.5, dps=25)
    assert mp.p[0] == 0 and abs(mp.gamma - ref.gamma) < mpmath.mpf(10) ** -24
    # log m with m = 3 non-zero entries is reachable (gamma = 0: uniform on the support)
    top = entropy_normalize(torch.tensor(p, dtype=torch.float64), math.log(3))
    assert float(top.gamma) == 0
    assert torch.allclose(top.p, torch.tensor([0, 1 / 3, 1 / 3, 0, 1 / 3], dtype=torch.float64))
    # above log 3 is not: the zeros cannot be revived
    with pytest.raises(DomainError, match="outside"):
        entropy_normalize(p, math.log(3) + 0.01, dps=20)
    with pytest.raises(DomainError, match="outside"):
        entropy_normalize(torch.tensor(p, dtype=torch.float64), math.log(3) + 0.01)


def test_uniform_p_only_reaches_log_n():
    uniform = [0.25] * 4
    with pytest.raises(DomainError, match="uniform"):
        entropy_normalize(uniform, 1.0, dps=20)
    with pytest.raises(DomainError, match="uniform"):
        entropy_normalize(torch.tensor(uniform), 1.0)
    with mpmath.workdps(25):
        log4 = mpmath.log(4)  # the target carries the requested precision
    same = entropy_normalize(uniform, log4, dps=20)
    assert same.gamma == 1 and all(q == mpmath.mpf("0.25") for q in same.p)


def test_ties_at_maximum_bound_the_target_from_below():
    tied = ["0.4", "0.4", "0.2"]
    with pytest.raises(DomainError, match="tied"):
        entropy_normalize(tied, mpmath.log(2) - mpmath.mpf("0.01"), dps=20)
    with pytest.raises(DomainError, match="tied"):
        entropy_normalize(torch.tensor([0.4, 0.4, 0.2], dtype=torch.float64), math.log(2) - 0.01)
    # just above log 2 works, with a large gamma
    r = entropy_normalize(tied, mpmath.log(2) + mpmath.mpf("0.01"), dps=20)
    assert r.gamma > 3 and abs(r.p[0] - r.p[1]) < mpmath.mpf(10) ** -19


def test_target_outside_zero_log_n():
    with pytest.raises(DomainError, match="outside"):
        entropy_normalize(P_DECIMAL, -0.1, dps=20)
    with pytest.raises(DomainError, match="outside"):
        entropy_normalize(P_DECIMAL, math.log(5) + 1e-3, dps=20)
    with pytest.raises(DomainError, match="outside"):
        entropy_normalize(torch.tensor([0.5, 0.5]), 2.0)


def test_invalid_entries_are_refused():
    with pytest.raises(DomainError, match="non-negative"):
        entropy_normalize([0.5, -0.1, 0.6], 0.5, dps=20)
    with pytest.raises(DomainError, match="non-negative"):
        entropy_normalize(torch.tensor([0.5, float("nan"), 0.5]), 0.5)


# ----------------------------------------------------------------------------- module


def test_module_output_has_target_entropy_and_keeps_order():
    torch.manual_seed(1)
    logits = torch.randn(3, 4, 7, dtype=torch.float64)
    y = EntropyNormalize(target_entropy=1.1)(logits)
    H = -(y * y.log()).sum(-1)
    assert torch.allclose(H, torch.full_like(H, 1.1), atol=1e-12)
    assert torch.equal(y.argsort(-1), logits.argsort(-1))


def test_module_handles_masked_logits():
    logits = torch.tensor([[0.3, -float("inf"), 1.2, -0.5]], dtype=torch.float64, requires_grad=True)
    y = EntropyNormalize(target_entropy=0.7)(logits)
    assert y[0, 1] == 0
    y[0, 0].backward()
    assert torch.isfinite(logits.grad).all() and logits.grad[0, 1] == 0


def test_module_gradient_matches_finite_differences():
    torch.manual_seed(2)
    module = EntropyNormalize(target_entropy=0.9)
    logits = torch.randn(3, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(module, (logits,), eps=1e-6, atol=1e-7, rtol=1e-6)
    # gamma alone as well (the implicit-function-theorem backward)
    assert torch.autograd.gradcheck(module.gamma, (logits,), eps=1e-6, atol=1e-7, rtol=1e-6)


def test_module_gradient_along_other_dim():
    torch.manual_seed(3)
    module = EntropyNormalize(target_entropy=1.0, dim=0)
    logits = torch.randn(6, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(module, (logits,), eps=1e-6, atol=1e-7, rtol=1e-6)


def _causal_logits(seed: int, T: int = 4) -> torch.Tensor:
    """Random float64 T x T attention scores with a causal mask (-inf above the diagonal)."""
    torch.manual_seed(seed)
    scores = torch.randn(T, T, dtype=torch.float64)
    mask = torch.triu(torch.ones(T, T, dtype=torch.bool), diagonal=1)
    return scores.masked_fill(mask, -float("inf")).requires_grad_(True)


def test_causal_mask_rows_with_small_support():
    # row i of a causal mask sees i + 1 keys: log(i + 1) < 0.9 for i < 2, unreachable
    logits = _causal_logits(seed=4)
    with pytest.raises(DomainError, match="short_rows"):
        EntropyNormalize(target_entropy=0.9)(logits)
    module = EntropyNormalize(target_entropy=0.9, short_rows="uniform")
    y = module(logits)
    H = -(torch.where(y > 0, y * y.log(), torch.zeros_like(y))).sum(-1)
    for i in range(logits.shape[0]):
        expected = math.log(i + 1) if math.log(i + 1) < 0.9 else 0.9
        assert abs(float(H[i].detach()) - expected) < 1e-12
    assert torch.allclose(y[1, :2], torch.full((2,), 0.5, dtype=torch.float64))
    report = entropy_normalize(torch.softmax(logits.detach(), -1), 0.9, short_rows="uniform").report
    assert report.short_rows == 2
    assert torch.autograd.gradcheck(module, (logits,), eps=1e-6, atol=1e-7, rtol=1e-6)


def test_zero_probabilities_contribute_nothing():
    """0*log(0) = 0, the limit of p*log(p): a zero entry changes no entropy (SymPy alone gives nan)."""
    from symact.entropy import entropy, entropy_of_power, log_variance

    half, quarter = sympy.Rational(1, 2), sympy.Rational(1, 4)
    assert entropy([1, 0]) == 0
    assert entropy([half, quarter, quarter, 0]) == entropy([half, quarter, quarter])
    g = sympy.Rational(3, 2)
    assert sympy.simplify(entropy_of_power([half, quarter, quarter, 0], g) - entropy_of_power([half, quarter, quarter], g)) == 0
    assert sympy.simplify(log_variance([half, quarter, quarter, 0]) - log_variance([half, quarter, quarter])) == 0


def test_list_of_python_floats_is_solved_in_double_precision():
    """A list of Python floats (doubles) is solved in float64, not the default float32."""
    import numeric

    p = [0.5, 0.2, 0.15, 0.1, 0.05]
    fast = numeric.entropy_normalize(p, 1)
    exact = numeric.entropy_normalize([str(v) for v in p], 1, dps=30)
    assert fast.gamma.dtype == torch.float64
    assert abs(float(fast.gamma) - float(exact.gamma)) < 1e-12 * float(exact.gamma)


# ----------------------------------------------------------------------------- second order


@pytest.mark.parametrize("dim", [-1, 0])
def test_module_double_backward_matches_finite_differences(dim):
    """Hessian-vector products through the implicit-function-theorem backward (create_graph=True)
    agree with finite differences of the first derivative (gradgradcheck)."""
    torch.manual_seed(5)
    module = EntropyNormalize(target_entropy=1.0, dim=dim)
    shape = (2, 4) if dim == -1 else (4, 2)
    logits = torch.randn(*shape, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradgradcheck(module, (logits,), eps=1e-6, atol=1e-6, rtol=1e-5)
    assert torch.autograd.gradgradcheck(module.gamma, (logits,), eps=1e-6, atol=1e-6, rtol=1e-5)


def test_hessian_vector_product_matches_central_differences():
    """The reported case: d/dx <grad f(x), v> against a central difference of grad f."""
    torch.manual_seed(6)
    module = EntropyNormalize(target_entropy=1.0)
    x = torch.randn(1, 4, dtype=torch.float64, requires_grad=True)
    w = torch.randn(1, 4, dtype=torch.float64)
    v = torch.randn(1, 4, dtype=torch.float64)

    def grad_f(z):
        z = z.detach().requires_grad_(True)
        (g,) = torch.autograd.grad((module(z) * w).sum(), z)
        return g

    (g,) = torch.autograd.grad((module(x) * w).sum(), x, create_graph=True)
    (hvp,) = torch.autograd.grad((g * v).sum(), x)
    h = 1e-5
    fd = (grad_f(x + h * v) - grad_f(x - h * v)) / (2 * h)
    assert torch.allclose(hvp, fd, atol=1e-8, rtol=1e-6)


def test_double_backward_with_masked_logits_and_short_rows():
    logits = _causal_logits(seed=7)
    module = EntropyNormalize(target_entropy=0.9, short_rows="uniform")
    assert torch.autograd.gradgradcheck(module, (logits,), eps=1e-6, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("value", [0.1, 0.7, -2.9, 123.456])
@pytest.mark.parametrize("n", [3, 7])
def test_uniform_rows_get_zero_gradient_through_gamma(value, n):
    """A row uniform on its support has H = log m for every gamma: gamma does not depend on the
    logits there (documented: zero gradient through gamma), even when rounding makes the
    computed variance of the logits a tiny non-zero."""
    x = torch.full((1, n), value, dtype=torch.float64, requires_grad=True)
    gamma = EntropyNormalize(target_entropy=math.log(n)).gamma(x)
    assert float(gamma.detach()) == 1.0
    gamma.sum().backward()
    assert torch.equal(x.grad, torch.zeros_like(x))


def test_zero_probabilities_in_the_update_and_the_newton_step():
    """first_order_update gave nan on a zero entry (0*log(0)**2), so the documented identity
    Gamma * first_order_update(powered_distribution(p, Gamma)) = newton_step_total_exponent(p, Gamma)
    failed (nan vs 1.3025) for p with a zero.  References: closed forms by hand and a Newton step with H'
    from a finite difference of the entropy -sum q log q computed directly."""
    half, quarter = sympy.Rational(1, 2), sympy.Rational(1, 4)
    target = sympy.Symbol("H_star", real=True)
    # q = (1/2, 1/4, 1/4, 0): H = 3/2 log 2, E[(log q)^2] = 5/2 log(2)^2, so H^2 - E = -1/4 log(2)^2.
    ln2 = sympy.log(2)
    by_hand = 1 + (target - 3 * ln2 / 2) / (-(ln2**2) / 4)
    got = sym.first_order_update([half, quarter, quarter, 0], target)
    assert sympy.simplify(sympy.expand_log(got - by_hand, force=True)) == 0

    p0, G, H_star = [half, quarter, quarter, 0], sympy.Rational(3, 2), 1

    def H(gamma):  # entropy of p**gamma / Z over the non-zero entries, from the definition
        w = [sympy.Float(pi, 50) ** gamma for pi in p0 if pi != 0]
        z = sum(w)
        return -sum((wi / z) * sympy.log(wi / z) for wi in w)

    eps = sympy.Float("1e-20", 50)
    dH = (H(G + eps) - H(G - eps)) / (2 * eps)
    newton_fd = sympy.N(G + (H_star - H(G)) / dH, 30)
    step = sympy.N(sym.newton_step_total_exponent(p0, G, H_star), 30)
    via_update = sympy.N(G * sym.first_order_update(sym.powered_distribution(p0, G), H_star), 30)
    assert abs(step - newton_fd) < 1e-15 and abs(via_update - newton_fd) < 1e-15


def test_powered_distribution_keeps_zeros_at_every_gamma():
    """gamma = 0 gave (1/3, 1/3, 1/3) for (1/2, 1/2, 0) while entropy_of_power gave log 2: a zero entry
    now stays 0 for every gamma (0**0 read as 0), and the two functions agree."""
    half = sympy.Rational(1, 2)
    for gamma in (0, sympy.Rational(1, 2), 2):
        q = sym.powered_distribution([half, half, 0], gamma)
        assert q == (half, half, 0)
        direct = -sum(qi * sympy.log(qi) for qi in q if qi != 0)
        assert sympy.simplify(direct - sym.entropy_of_power([half, half, 0], gamma)) == 0
    q = sym.powered_distribution([sympy.Rational(1, 4), sympy.Rational(3, 4), 0], 0)
    assert q == (half, half, 0)


def test_invalid_or_degenerate_distributions_raise_symact_errors():
    """entropy([]) raised a plain ValueError, entropy([3/2, -1/2]) returned a complex number, and a
    uniform p gave zoo from the Newton step (Var[log p] = 0)."""
    from symact.errors import SymactError

    half = sympy.Rational(1, 2)
    with pytest.raises(SymactError, match="non-empty"):
        sym.entropy([])
    with pytest.raises(DomainError, match="non-negative"):
        sym.entropy([sympy.Rational(3, 2), -half])
    with pytest.raises(DomainError, match="sum to"):
        sym.entropy([half, half, half])
    with pytest.raises(DomainError, match="sum to"):
        sym.first_order_update([sympy.Rational(1, 4), sympy.Rational(1, 4)], 0)
    with pytest.raises(DomainError, match="non-negative"):
        sym.powered_distribution([half, sympy.I / 2], 2)
    with pytest.raises(DomainError, match="every probability is 0"):
        sym.entropy_of_power([0, 0], 2)  # was log(0) = zoo
    for p in ([half, half], [sympy.Rational(1, 3)] * 3, [half, half, 0], [1, 0]):
        with pytest.raises(DomainError, match="uniform"):
            sym.first_order_update(p, sympy.Rational(1, 2))
        with pytest.raises(DomainError, match="uniform"):
            sym.newton_step_total_exponent(p, 2, sympy.Rational(1, 2))
    # floats summing to 1 up to rounding are accepted
    assert abs(float(sym.entropy([0.1] * 10)) - math.log(10)) < 1e-12


@pytest.mark.parametrize("call", [
    lambda p: sym.entropy_of_power(p, sympy.oo),           # was nan (its limit is log k)
    lambda p: sym.powered_distribution(p, float("nan")),   # was (nan, nan, nan)
    lambda p: sym.entropy_derivative(p, float("inf")),
    lambda p: sym.log_moment(p, 1, sympy.I),                # was complex
    lambda p: sym.first_order_update(p, float("nan")),      # was nan
    lambda p: sym.newton_step_total_exponent(p, 2, sympy.oo),
    lambda p: sym.newton_step_total_exponent(p, 0, sympy.Rational(1, 2)),  # was zoo: H'(0) = 0
])
def test_a_power_or_target_that_is_not_finite_or_a_newton_step_from_zero_is_refused(call):
    """A NaN, infinite or complex gamma or target entropy was taken as given and every result came back
    nan, zoo or complex without a word; the Newton step from total exponent 0 divided by H'(0) = 0."""
    p = [sympy.Rational(1, 2), sympy.Rational(1, 3), sympy.Rational(1, 6)]
    with pytest.raises(DomainError, match="not a finite real number|undefined at total_exponent = 0"):
        call(p)
    # symbols, negative powers (they reverse the order) and the step from a negative exponent still work
    g = sympy.Symbol("g", real=True)
    assert sym.entropy_of_power(p, g).has(g)
    assert sym.powered_distribution(p, -1) == (sympy.Rational(2, 11), sympy.Rational(3, 11), sympy.Rational(6, 11))  # 1/p = 2, 3, 6
    step = sym.newton_step_total_exponent(p, -1, sympy.Rational(1, 2))
    assert step.is_number and step.is_finite


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_finite_mask_values_act_like_minus_inf(dtype):
    """masked_fill with torch.finfo(dtype).min (the common convention) instead of -inf squared the mask
    value to inf in Var_q[logits], so 0 * inf = nan: Newton fell back to bisection (a less accurate gamma)
    and the gradient through gamma was silently 0.  Those entries have q = 0 exactly, so the problem is the
    one with -inf masks: gamma, the first and the second derivatives must agree with the -inf version."""
    torch.manual_seed(8)
    scores = torch.randn(3, 6, dtype=dtype)
    mask = torch.zeros(3, 6, dtype=torch.bool)
    mask[:, 4:] = True
    w = torch.randn(3, 6, dtype=dtype)
    results = []
    for fill in (-math.inf, torch.finfo(dtype).min):
        logits = scores.masked_fill(mask, fill).requires_grad_(True)
        module = EntropyNormalize(target_entropy=1.0)
        y = module(logits)
        (grad,) = torch.autograd.grad((y * w).sum(), logits, create_graph=True)
        (hvp,) = torch.autograd.grad((grad[~mask] ** 2).sum(), logits)
        results.append((module.gamma(logits.detach()), grad.detach()[~mask], hvp[~mask]))
        H = -(torch.where(y > 0, y * y.log(), torch.zeros_like(y))).sum(-1)
        assert torch.allclose(H, torch.ones_like(H), atol=20 * torch.finfo(dtype).eps)
    (g_ref, d_ref, h_ref), (g, d, h) = results
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    assert torch.isfinite(d).all() and torch.isfinite(h).all()
    assert torch.allclose(g, g_ref, rtol=tol, atol=0)
    assert torch.allclose(d, d_ref, rtol=tol, atol=tol) and d.abs().max() > 0.01
    assert torch.allclose(h, h_ref, rtol=10 * tol, atol=10 * tol)


def test_nan_target_bad_dps_and_bad_entries_raise_domain_errors():
    """A NaN target passed every range check (all comparisons false) and came back as a meaningless
    gamma (1.3e30 in torch, 7.9e-31 in mpmath) with converged=False; dps=0 gave gamma = 0 for a target of
    0.1 (its tolerance 10**-dps * log m swallowed the whole range); a per-row target tensor, a non-numeric
    entry or a nested list raised raw RuntimeError/ValueError/TypeError."""
    p = [0.5, 0.3, 0.2]
    for target in (float("nan"), float("inf"), torch.tensor(float("nan"))):
        with pytest.raises(DomainError, match="finite number"):
            entropy_normalize(p, target, dps=20)
        with pytest.raises(DomainError, match="finite number"):
            entropy_normalize(torch.tensor(p), target)
        with pytest.raises(DomainError, match="finite number"):
            EntropyNormalize(target)
    with pytest.raises(DomainError, match="one number"):
        entropy_normalize(torch.tensor([p, p]), torch.tensor([0.5, 0.6]))
    for dps in (0, -3):
        with pytest.raises(DomainError, match="dps must be a positive"):
            entropy_normalize(p, 0.1, dps=dps)
    with pytest.raises(DomainError, match=r"p\[1\] = 'abc'"):
        entropy_normalize([0.5, "abc"], 0.5, dps=20)
    with pytest.raises(DomainError, match="1-D"):
        entropy_normalize([[0.5, 0.5]], 0.5, dps=20)
    # a one-element tensor target is still one number
    r = entropy_normalize(torch.tensor([p], dtype=torch.float64), torch.tensor(0.5, dtype=torch.float64))
    H = -(r.p * r.p.log()).sum()
    assert abs(float(H) - 0.5) < 1e-12


def test_entropy_normalize_output_is_differentiable_through_gamma():
    """entropy_normalize(p) with p requiring grad: the output's entropy is pinned at the target, so its
    gradient in p must vanish; the old output treated gamma as a constant (gradient about 2.5)."""
    p = torch.tensor([[0.5, 0.3, 0.2], [0.1, 0.6, 0.3]], dtype=torch.float64, requires_grad=True)
    out = entropy_normalize(p, 0.5).p
    H = -(out * out.log()).sum()
    (grad,) = torch.autograd.grad(H, p)
    assert grad.abs().max() < 1e-12
    # and the whole Jacobian (and gamma's) matches central differences of the solver itself
    torch.manual_seed(7)
    weights = (torch.rand(2, 5, dtype=torch.float64) + 0.1).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda w: entropy_normalize(w, 0.8).p, (weights,), eps=1e-6, atol=1e-7, rtol=1e-6)
    assert torch.autograd.gradcheck(lambda w: entropy_normalize(w, 0.8).gamma, (weights,), eps=1e-6, atol=1e-7,
                                    rtol=1e-6)


def test_entropy_normalize_gradient_is_finite_at_zero_probabilities():
    p = torch.tensor([0.5, 0.0, 0.3, 0.2], dtype=torch.float64, requires_grad=True)
    entropy_normalize(p, 0.8).p[0].backward()
    assert torch.isfinite(p.grad).all() and p.grad[1] == 0


def test_complex_probabilities_are_refused():
    with pytest.raises(DomainError, match="real"):
        entropy_normalize(torch.tensor([0.5 + 0.1j, 0.3, 0.2]), 0.5)


def test_fractional_or_negative_dps_and_iterations_are_refused():
    """dps=2.5 was truncated to 2 digits without a word, dps="x" raised a bare ValueError, and
    max_iterations=-1 returned gamma = 1 (p unchanged) instead of refusing."""
    p = [0.5, 0.3, 0.2]
    for dps in (2.5, "x", True):
        with pytest.raises(DomainError, match="dps must be a positive whole number"):
            entropy_normalize(p, 0.5, dps=dps)
    for bad in (-1, 2.5):
        with pytest.raises(DomainError, match="max_iterations"):
            entropy_normalize(p, 0.5, max_iterations=bad)
        with pytest.raises(DomainError, match="max_iterations"):
            entropy_normalize(p, 0.5, dps=20, max_iterations=bad)
        with pytest.raises(DomainError, match="max_iterations"):
            EntropyNormalize(0.5, max_iterations=bad)
    import numpy as np

    r = entropy_normalize(p, 0.5, dps=np.int64(20), max_iterations=np.int32(50))
    assert r.converged and abs(r.gamma - entropy_normalize(p, 0.5, dps=20).gamma) == 0


def test_target_within_rounding_of_log_k_is_refused_without_misstating_log_k():
    """A float32 target of 1e-6 for a distribution without ties (k = 1, log k = 0) is inside the rounding
    allowance of 0 and refused; the message used to claim "log k >= target", which is false here."""
    p = torch.tensor([0.5, 0.3, 0.2])
    with pytest.raises(DomainError) as info:
        entropy_normalize(p, 1e-6)
    message = str(info.value)
    assert "log k >= target" not in message and "k = 1" in message and "rounding" in message
    # float64 reaches the same target: the entropy of p^gamma, computed independently in mpmath
    r = entropy_normalize(p.double(), 1e-6)
    with mpmath.workdps(40):
        w = [mpmath.mpf(v) ** mpmath.mpf(float(r.gamma)) for v in p.double().tolist()]
        H = -mpmath.fsum(wi / sum(w) * mpmath.log(wi / sum(w)) for wi in w)
    assert abs(H - mpmath.mpf(1e-6)) < 1e-14
    with pytest.raises(DomainError) as info:
        entropy_normalize(["0.5", "0.3", "0.2"], mpmath.mpf("1e-25"), dps=20)
    assert "<= log(1)" not in str(info.value) and "precision" in str(info.value)


@pytest.mark.parametrize("p", ["abc", "0.5", "[1/2, 1/2]", {"0.5": 1, "0.5 ": 1}])
def test_a_string_or_mapping_is_not_read_as_a_distribution(p):
    """entropy("abc") returned -a*log(a) - b*log(b) - c*log(c) (one symbol per character), entropy("0.5")
    failed on the character '.', and a dict gave the entropy of its keys."""
    with pytest.raises(DomainError, match="sequence of probabilities"):
        sym.entropy(p)
    with pytest.raises(DomainError, match="sequence of probabilities"):
        sym.powered_distribution(p, 2)
    with pytest.raises(DomainError, match="sequence of probabilities"):
        entropy_normalize(p, 0.1, dps=20)
    with pytest.raises(DomainError, match="sequence of probabilities"):
        entropy_normalize(p, 0.1)


def test_ragged_or_non_numeric_lists_raise_domain_errors_in_the_torch_back_end():
    for p in ([[0.5, 0.3, 0.2], [0.5, 0.5]], [0.5, "x"]):  # torch raised a bare ValueError / TypeError
        with pytest.raises(DomainError, match="equal length"):
            entropy_normalize(p, 0.1)


def test_entropy_of_power_falls_from_log_m_to_log_of_the_ties():
    """The module docstring's range: log m at gamma = 0 (m non-zero entries, not log n), strictly decreasing,
    tending to log(#argmax) -- checked with an independent mpmath entropy of p^gamma / sum p^gamma."""
    p = [sympy.Rational(2, 5), sympy.Rational(2, 5), sympy.Rational(1, 5), 0]  # two tied at the maximum
    assert sympy.simplify(sym.entropy_of_power(p, 0) - sympy.log(3)) == 0

    def H(g):
        w = [mpmath.mpf(sympy.N(pi, 30)) ** g for pi in p if pi != 0]
        return -mpmath.fsum(wi / mpmath.fsum(w) * mpmath.log(wi / mpmath.fsum(w)) for wi in w)

    with mpmath.workdps(30):
        gammas = [mpmath.mpf(k) / 4 for k in range(1, 200)]
        values = [H(g) for g in gammas]
        assert all(a > b for a, b in zip(values, values[1:]))
        assert abs(values[-1] - mpmath.log(2)) < 1e-6
        for g in (mpmath.mpf("0.3"), mpmath.mpf(7)):
            assert abs(mpmath.mpf(sympy.N(sym.entropy_of_power(p, sympy.Float(g, 30)), 30)) - H(g)) < 1e-25


def test_a_negative_target_is_not_reported_as_out_of_range_for_0_rows():
    """target -1 said 'outside [0, log m] for 0 row(s)': a negative entropy is out of range for every row."""
    for p in ([0.5, 0.2, 0.3], torch.tensor([[0.5, 0.2, 0.3], [0.1, 0.1, 0.8]], dtype=torch.float64)):
        with pytest.raises(DomainError) as info:
            entropy_normalize(p, -1)
        assert "0 row(s)" not in str(info.value) and "negative" in str(info.value)


@pytest.mark.parametrize("shape, dim", [((0, 5), -1), ((5, 0), 0), ((2, 0, 5), -1)])
def test_an_empty_batch_gives_empty_outputs(shape, dim):
    """A batch with no rows (e.g. batch size 0) crashed with torch's bare 'max(): Expected reduction dim to be
    specified for input.numel() == 0' from the residual bookkeeping; softmax, which EntropyNormalize replaces,
    returns an empty tensor of the same shape."""
    logits = torch.randn(shape, dtype=torch.float64, requires_grad=True)
    y = EntropyNormalize(1.0, dim=dim)(logits)
    assert y.shape == logits.shape
    y.sum().backward()
    assert logits.grad.shape == logits.shape
    gamma_shape = list(shape)
    gamma_shape[dim] = 1
    gamma, report = solve_entropy_gamma(logits, 1.0, dim=dim)
    assert gamma.shape == tuple(gamma_shape) and report.converged
    r = entropy_normalize(torch.rand(shape, dtype=torch.float64), 1.0, dim=dim)
    assert r.p.shape == shape and r.gamma.shape == tuple(gamma_shape) and r.converged
    # its repr (what a REPL shows) raised "a Tensor with 0 elements cannot be converted to Scalar"
    assert f"gamma=tensor(shape={tuple(gamma_shape)}" in repr(r)
    # rows of length 0 are still refused: an empty distribution has no entropy
    with pytest.raises(DomainError, match="all zeros"):
        EntropyNormalize(1.0)(torch.randn(3, 0, dtype=torch.float64))


def _reference_gamma_and_p(p_strings, target, dps=120):
    """gamma and p^gamma / sum p^gamma by bisection on log(gamma) of the definition -sum q log q at `dps`
    digits: slow, but a code path independent of the solver (no Newton, no variance, no shift by the max)."""
    with mpmath.workdps(dps):
        p = [mpmath.mpf(s) for s in p_strings]
        t = mpmath.mpf(target)

        def powered(g):
            w = [pi**g for pi in p]
            z = mpmath.fsum(w)
            return [wi / z for wi in w]

        def f(g):  # decreasing in g
            return -mpmath.fsum(qi * mpmath.log(qi) for qi in powered(g)) - t

        lo, hi = mpmath.mpf(1), mpmath.mpf(1)
        while f(lo) < 0:
            lo /= 2
        while f(hi) > 0:
            hi *= 2
        while hi - lo > mpmath.mpf(10) ** (10 - dps) * hi:
            mid = mpmath.sqrt(lo * hi)
            lo, hi = (mid, hi) if f(mid) > 0 else (lo, mid)
        g = (lo + hi) / 2
        return g, powered(g)


@pytest.mark.parametrize("p, target", [
    (P_DECIMAL, "1.6094379124340"),                                  # 1e-13 below log 5: gamma ~ 6e-7
    (P_DECIMAL, "1e-12"),                                            # near log 1 = 0: gamma ~ 32
    (["0.25", "0.25", "0.25", "0.250000000000001"], "1.2"),          # near-uniform: gamma ~ 1e15
    (["0.5", "0.4999999999999999", "0.01"], "0.3"),                  # near-tie at the maximum
    (["0.5", "0.49999999", "0.00000001"], "0.01"),                   # gamma ~ 3e8: tiny p entries
])
@pytest.mark.parametrize("dps", [15, 20, 30])
def test_mpmath_gamma_and_p_have_the_requested_digits_on_ill_conditioned_problems(p, target, dps):
    """A fixed 10 guard digits (and a stop at |H - H*| <= 10^-(dps+5)) fell short where the problem is
    ill-conditioned.  At dps=15: a target 1e-13 below log 5 gave gamma to 9.2 digits (dH/dgamma = -gamma Var is
    ~1e-6 there), a target of 1e-12 gave gamma to 10.7 and p to 8.8 digits, near-equal entries (log differences
    ~1e-15) gave gamma to 11.7 digits, and for the near-tie the tiny p[2] ~ 10^(-2e15) had no correct digit (at
    dps=20 either).  The working precision now grows with the condition number."""
    r = entropy_normalize(p, target, dps=dps)
    assert r.converged
    g_ref, q_ref = _reference_gamma_and_p(p, target)
    with mpmath.workdps(120):
        bound = mpmath.mpf(10) ** (1 - dps)  # dps significant digits, up to the last one's rounding
        assert abs(r.gamma - g_ref) <= bound * g_ref
        for qi, qi_ref in zip(r.p, q_ref):
            assert abs(qi - qi_ref) <= bound * qi_ref


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_finfo_min_masks_count_as_zero_probabilities_for_short_rows_and_the_uniform_limit(dtype):
    """masked_fill(mask, finfo.min) (the common attention convention) was treated like -inf inside the moments
    but counted as support in the range checks: with a causal mask and short_rows="uniform", the rows seeing
    fewer than e^H* keys were sent to the solver, which could not raise their entropy (their masked weights
    underflow at every gamma it tries) and stopped after 100 halvings at gamma = 7.9e-31 with converged=False
    (EntropyNormalize: "did not converge ... raise max_iterations"); a target of log T gave gamma = 0 and the
    uniform distribution over all T keys, the masked ones included.  The -inf version is the reference."""
    T = 4
    torch.manual_seed(4)
    scores = torch.randn(T, T, dtype=dtype)
    mask = torch.triu(torch.ones(T, T, dtype=torch.bool), diagonal=1)
    w = torch.randn(T, T, dtype=dtype)
    for target in (0.9, math.log(T)):
        outputs = []
        for fill in (-math.inf, torch.finfo(dtype).min):
            logits = scores.masked_fill(mask, fill).requires_grad_(True)
            module = EntropyNormalize(target, short_rows="uniform")
            y = module(logits)
            (grad,) = torch.autograd.grad((y * w).sum(), logits)
            gamma, report = solve_entropy_gamma(logits, target, short_rows="uniform")
            assert report.converged and report.short_rows == int((torch.arange(1, T + 1) < math.exp(target)).sum())
            outputs.append((y.detach(), grad[~mask], gamma))
            assert torch.equal(y.detach()[mask], torch.zeros_like(y.detach()[mask]))
        (y_ref, d_ref, g_ref), (y, d, g) = outputs
        assert torch.equal(g, g_ref) and torch.equal(y, y_ref) and torch.allclose(d, d_ref, rtol=0, atol=0)
    # and a target above log(visible keys) is refused as out of range, not left unconverged
    logits = torch.tensor([[0.3, -0.2, torch.finfo(dtype).min]], dtype=dtype)
    with pytest.raises(DomainError, match="outside"):
        entropy_normalize(torch.softmax(logits, -1), 1.0)
    with pytest.raises(DomainError, match="outside"):
        solve_entropy_gamma(logits, 1.0)


def test_module_output_reaches_the_target_for_large_gamma_and_shifted_logits():
    """The solver shifts each row by its maximum, but the output was softmax(gamma * logits) unshifted: with
    gamma = 3.5e8 (a near-uniform row) the rounding of gamma * logits (~ gamma |logit| eps) moved the output's
    entropy off the target by 5.9e-9, and by 5.1e-7 after adding 100 to every logit (softmax is
    shift-invariant), against the solver's tolerance 16 eps = 3.6e-15; the gradient path of entropy_normalize
    likewise.  Reference: the entropy of the output computed in mpmath from its float64 values."""
    p = torch.tensor([0.25 + 1e-9, 0.25, 0.25, 0.25 - 1e-9], dtype=torch.float64)

    def entropy_error(q):
        with mpmath.workdps(40):
            qs = [mpmath.mpf(v) for v in q.detach().flatten().tolist()]
            return float(abs(-mpmath.fsum(v * mpmath.log(v) for v in qs) - 1))

    tol = 64 * torch.finfo(torch.float64).eps
    for shift in (0.0, 100.0, -1e4):
        logits = (torch.log(p) + shift).requires_grad_(True)
        y = EntropyNormalize(1.0)(logits)
        assert entropy_error(y) < tol
        y[0].backward()
        assert torch.isfinite(logits.grad).all()
    r = entropy_normalize(p.clone().requires_grad_(True), 1.0)
    assert float(r.gamma.detach()) > 1e8 and entropy_error(r.p) < tol


def test_mpmath_back_end_takes_sympy_fraction_and_decimal_values_at_full_precision():
    """A SymPy target such as log(3)/2 (what symact.entropy returns) went through float(): at dps=50 gamma was
    wrong from the 17th digit (3.47170324538356921... for 3.47170324538356945...) and target_entropy came back
    as the double 0.549306144334054891...; a SymPy entry such as sqrt(2)/4, a Fraction or a Decimal was refused
    as 'not a real number'.  Reference: the same problem given as mpf values computed at 80 digits."""
    with mpmath.workdps(80):
        target_mp = mpmath.log(3) / 2
        p_mp = [mpmath.sqrt(2) / 4, mpmath.mpf(1) / 3, mpmath.mpf("0.1")]
        reference = entropy_normalize(p_mp, target_mp, dps=50)
    from decimal import Decimal
    from fractions import Fraction

    r = entropy_normalize([sympy.sqrt(2) / 4, Fraction(1, 3), Decimal("0.1")], sympy.log(3) / 2, dps=50)
    with mpmath.workdps(80):
        assert abs(r.gamma - reference.gamma) < mpmath.mpf(10) ** -49 * reference.gamma
        assert abs(r.target_entropy - target_mp) < mpmath.mpf(10) ** -49
        assert all(abs(a - b) < mpmath.mpf(10) ** -49 * b for a, b in zip(r.p, reference.p))
    for bad in (sympy.Symbol("x"), sympy.I, sympy.zoo):
        with pytest.raises(DomainError, match="not a real number"):
            entropy_normalize([bad, "0.5"], 0.5, dps=20)
    with pytest.raises(DomainError, match="finite number|real number"):
        entropy_normalize(["0.5", "0.5"], sympy.Symbol("h"), dps=20)


def test_a_uniform_distribution_written_in_another_form_is_refused():
    """(1 + sqrt 2)^2 / (2 (3 + 2 sqrt 2)) is 1/2, but N(it - 1/2, 30) is 0.e-165 (a zero without significant
    digits, which does not compare equal to 0), so p = (that, 1/2) passed the uniform check and
    first_order_update returned 8.7e73 from 0/0 rounding noise (Var[log p] = 0: no power moves its entropy)."""
    half = sympy.Rational(1, 2)
    disguised = (1 + sympy.sqrt(2)) ** 2 / (2 * (3 + 2 * sympy.sqrt(2)))
    assert sympy.simplify(disguised - half) == 0
    with pytest.raises(DomainError, match="uniform"):
        sym.first_order_update([disguised, half], half)
    with pytest.raises(DomainError, match="uniform"):
        sym.newton_step_total_exponent([disguised, half, 0], 2, half)
    # a genuinely non-uniform p with entries 1e-40 apart is not refused: the target 1/2 is below H = log 2, so
    # the power grows, by ~(log 2 - 1/2) / Var[log p] ~ 1e78 (Var ~ 8e-80)
    tiny = sympy.Integer(10) ** -40 * sympy.sqrt(2)
    update = sympy.N(sym.first_order_update([half + tiny, half - tiny], half), 30)
    assert update.is_finite and update > 1e70


def test_uniform_rows_at_log_m_have_a_constant_output_and_zero_gradient():
    """With target log m the output is the uniform distribution on the support whatever the logits (gamma = 0
    for any other row), so its derivative is 0; a row that was already uniform (equal logits, e.g. zero-initialised
    scores) passed through as softmax(1 * logits) with softmax's Jacobian (0.222 on the diagonal for n = 3), and
    gradcheck failed against the finite differences (0).  gamma is still reported as 1 there."""
    x = torch.zeros(2, 3, dtype=torch.float64)
    x[1] = torch.tensor([0.5, -1.0, 2.0])
    x.requires_grad_(True)
    module = EntropyNormalize(math.log(3))
    assert torch.allclose(module(x), torch.full((2, 3), 1 / 3, dtype=torch.float64), rtol=0, atol=1e-15)
    assert torch.autograd.gradcheck(module, (x,), eps=1e-6, atol=1e-7, rtol=1e-6)
    assert torch.equal(module.gamma(x).detach(), torch.tensor([[1.0], [0.0]], dtype=torch.float64))
    p = torch.tensor([[0.25, 0.25, 0.0, 0.25, 0.25]], dtype=torch.float64, requires_grad=True)
    (grad,) = torch.autograd.grad(entropy_normalize(p, math.log(4)).p[0, 0], p)
    assert torch.equal(grad, torch.zeros_like(grad))
    # a uniform row too short for the target (short_rows="uniform") keeps its uniform output, constant as well
    causal = torch.tensor([[0.7, -math.inf, -math.inf], [0.3, 0.3, -math.inf], [0.1, 0.9, -0.4]],
                          dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(EntropyNormalize(0.9, short_rows="uniform"), (causal,), eps=1e-6, atol=1e-7,
                                    rtol=1e-6)


def test_log_moment_order_must_be_a_whole_number():
    """log_moment(p, 0.5) returned 1.005*I (the "moment" of (log p)^0.5 with log p < 0 is imaginary), order -1 gave
    zoo for p = (1, 0) (1/log 1), and order "x" raised a bare TypeError from **."""
    half, quarter = sympy.Rational(1, 2), sympy.Rational(1, 4)
    for order in (0.5, half, -1, "x", 2.0, True):
        with pytest.raises(DomainError, match="order must be a whole number"):
            sym.log_moment([half, quarter, quarter], order)
    # whole orders (Python, NumPy or SymPy integers) are the moments, checked against the sum written out
    import numpy as np

    expected = half * sympy.log(half) ** 3 + 2 * quarter * sympy.log(quarter) ** 3
    for order in (3, np.int64(3), sympy.Integer(3)):
        assert sympy.simplify(sym.log_moment([half, quarter, quarter], order) - expected) == 0
    assert sym.log_moment([half, quarter, quarter], 0) == 1


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_additive_masks_count_as_zero_probabilities(dtype):
    """scores - 1e9 (or - 1e4, the usual additive masks) counted as scores: with a causal mask and
    short_rows="uniform" the first rows were not short (m = T keys), and the solver reached the target by
    shrinking gamma to 1.8e-9 until the masked keys had weight (first row [0.67, 0.11, 0.11, 0.11], target 1.0);
    with short_rows="raise" the same leak passed silently.  Entries more than MASK_GAP = 745 nats below the
    row maximum are now zero probabilities, like -inf and finfo.min.  The -inf version is the reference."""
    T = 4
    torch.manual_seed(5)
    scores = torch.randn(T, T, dtype=dtype)
    mask = torch.triu(torch.ones(T, T, dtype=torch.bool), diagonal=1)
    w = torch.randn(T, T, dtype=dtype)
    for target in (1.0, math.log(T)):
        reference = None
        for fill in (-math.inf, -1e4, -1e9, -1e20):
            logits = scores.masked_fill(mask, fill).requires_grad_(True)
            y = EntropyNormalize(target, short_rows="uniform")(logits)
            (grad,) = torch.autograd.grad((y * w).sum(), logits)
            gamma, report = solve_entropy_gamma(logits, target, short_rows="uniform")
            assert report.converged and report.short_rows == int((torch.arange(1, T + 1) < math.exp(target)).sum())
            assert torch.equal(y.detach()[mask], torch.zeros_like(y.detach()[mask])), (fill, y)
            got = (y.detach(), grad[~mask], gamma)
            if reference is None:
                reference = got
            assert all(torch.equal(a, b) for a, b in zip(got, reference)), (fill, target)
        with pytest.raises(DomainError, match="outside"):
            solve_entropy_gamma(scores.masked_fill(mask, -1e9), 1.0)
    # a score gap below MASK_GAP is a score: [0, -700] reaches entropy 0.5 at gamma ~ 1e-3 in float64
    gamma, report = solve_entropy_gamma(torch.tensor([[0.0, -700.0]], dtype=torch.float64), 0.5)
    q = torch.softmax(gamma * torch.tensor([[0.0, -700.0]], dtype=torch.float64), -1)
    assert report.converged and abs(float(-(q * q.log()).sum()) - 0.5) < 1e-12


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_inputs_are_solved_in_float32_and_cast_back(dtype):
    """float16/bfloat16 were solved in their own precision, whose tolerance 16 eps (0.125 for bfloat16) let the
    Newton iteration stop at once: bfloat16 p = [0.5, 0.3, 0.2], target 0.9 gave gamma = 2 (1.7734 is the
    solution for those rounded entries) and an output of entropy 0.852.  Reference: the mpmath back end on the
    same rounded entries."""
    p = torch.tensor([[0.5, 0.3, 0.2]], dtype=dtype)
    with mpmath.workdps(30):
        g_ref = entropy_normalize([mpmath.mpf(v) for v in p.flatten().tolist()], "0.9", dps=20).gamma
    eps = torch.finfo(dtype).eps
    r = entropy_normalize(p, 0.9)
    assert r.gamma.dtype == dtype and r.p.dtype == dtype
    assert abs(float(r.gamma) - float(g_ref)) <= eps * float(g_ref), (r.gamma, g_ref)
    q = r.p.double()
    assert abs(float(-(q * q.log()).sum()) - 0.9) <= 4 * eps, r.p
    y = EntropyNormalize(0.9)(p.log())
    assert y.dtype == dtype and abs(float(-(y.double() * y.double().log()).sum()) - 0.9) <= 4 * eps, y
    gamma, _ = solve_entropy_gamma(p.log(), 0.9)
    assert gamma.dtype == dtype and abs(float(gamma) - float(g_ref)) <= eps * float(g_ref)


def test_entropy_normalize_module_refuses_an_unknown_short_rows_when_built():
    """EntropyNormalize(1.0, short_rows="uniforn") was built without complaint and refused only at its first
    forward, possibly deep inside a training loop."""
    with pytest.raises(DomainError, match="short_rows must be 'raise' or 'uniform'"):
        EntropyNormalize(1.0, short_rows="uniforn")


@pytest.mark.parametrize("target", [True, False, torch.tensor(True)])
def test_a_bool_target_is_refused_not_read_as_one_or_zero_nats(target):
    # float(True) == 1.0: entropy_normalize(p, True) solved for 1 nat
    p = torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64)
    with pytest.raises(DomainError, match="target_entropy must be a number"):
        entropy_normalize(p, target)
    with pytest.raises(DomainError, match="target_entropy must be a number"):
        solve_entropy_gamma(p, target)


@pytest.mark.parametrize("dim", [2, -3, 1.5, "x", True])
def test_a_bad_dim_is_named_up_front(dim):
    """dim=2 on a 2-D tensor reached torch's bare IndexError, dim=1.5 or "x" a TypeError, and the module
    accepted them in __init__ and failed only at its first forward."""
    p = torch.rand(3, 4, dtype=torch.float64)
    with pytest.raises(DomainError, match="dim"):
        EntropyNormalize(1.0, dim=dim)(p.log())
    with pytest.raises(DomainError, match="dim"):
        entropy_normalize(p, 1.0, dim=dim)
    if not isinstance(dim, int) or isinstance(dim, bool):
        with pytest.raises(DomainError, match="dim must be an integer"):
            EntropyNormalize(1.0, dim=dim)


def test_dim_zero_normalises_columns():
    """The check keeps every valid dim: along dim 0 each column reaches the target (entropy computed here)."""
    p = torch.rand(5, 3, dtype=torch.float64) + 0.1
    out = EntropyNormalize(1.0, dim=0)(p.log())
    assert torch.allclose(out.sum(0), torch.ones(3, dtype=torch.float64))
    assert torch.allclose(-(out * out.log()).sum(0), torch.full((3,), 1.0, dtype=torch.float64), atol=1e-10)


# log 3 cut to 80 decimals: an exact decimal less than 1e-80 below log 3 (read exactly at any precision)
LOG3_CUT_80 = "1.09861228866810969139524523692252570464749055782274945173469433363749429321860896"


@pytest.mark.parametrize("target", [LOG3_CUT_80, "1e-60"])
def test_mpmath_targets_near_log_m_or_log_k_converge_in_few_steps(target):
    """Newton on H in gamma only halved gamma per step near log m (H ~ log m - gamma^2 Var / 2) and added
    about 1/d to it near log k (H - log k ~ gamma d e^(-gamma d)): with the default 100 steps, a target 1e-80 below
    log 3 stopped at gamma 7.6e-31 (the root is 3.1e-40) and one 1e-60 above log 1 at gamma 208 (root 280), both
    with converged=False and nothing else said.  The reference is bisection on log(gamma) of -sum q log q from
    the exact input at 240 digits (gamma's condition number near log m is 1 / (2 (log m - H*)) ~ 1e80)."""
    p = ["0.5", "0.3", "0.2"]
    with mpmath.workdps(240):
        gap = mpmath.log(3) - mpmath.mpf(target) if target == LOG3_CUT_80 else mpmath.mpf(target)
        assert 0 < gap < mpmath.mpf(10) ** -59
    r = entropy_normalize(p, target, dps=100)
    assert r.converged and r.report.iterations <= 15
    g_ref, q_ref = _reference_gamma_and_p(p, target, dps=240)
    with mpmath.workdps(240):
        bound = mpmath.mpf(10) ** (1 - 100)
        assert abs(r.gamma - g_ref) <= bound * g_ref
        for qi, qi_ref in zip(r.p, q_ref):
            assert abs(qi - qi_ref) <= bound * qi_ref


def test_mask_gap_entries_that_would_carry_weight_at_the_solved_gamma_are_warned_about():
    """Finite logits more than MASK_GAP = 745 nats below the row maximum count as mask values (by design), which
    silently changed the answer when gamma came out small: [0, -400, -800] with target 0.5 solved at gamma =
    0.00347 on [0, -400], where -800 read as a score has weight e^(-2.78) = 0.062 and the entropy of all three is
    0.667.  A MaskGapWarning now says so; -inf and finfo.min masks, and additive masks at an ordinary gamma, do not
    warn.  Reference: the two-point closed form H = log(1 + e^-x) + x / (1 + e^x), x = 400 gamma, and mpmath."""
    import warnings

    from numeric.entropy import MaskGapWarning

    logits = torch.tensor([[0.0, -400.0, -800.0]], dtype=torch.float64)
    with pytest.warns(MaskGapWarning, match=r"MASK_GAP = 745 nats.*800 nats below.*weight 0\.062"):
        gamma, report = solve_entropy_gamma(logits, 0.5)
    with mpmath.workdps(50):
        x = 400 * mpmath.mpf(float(gamma))
        two_point = mpmath.log(1 + mpmath.exp(-x)) + x / (1 + mpmath.exp(x))
        assert report.converged and abs(two_point - mpmath.mpf("0.5")) < 1e-14   # solved on the visible pair
        w = [mpmath.exp(-k * x) for k in (0, 1, 2)]
        all_three = -mpmath.fsum(wi / sum(w) * mpmath.log(wi / sum(w)) for wi in w)
        assert abs(all_three - mpmath.mpf("0.6672652")) < 1e-6        # what -800 as a score would have given
    with pytest.warns(MaskGapWarning):
        EntropyNormalize(0.5)(logits.float())
    with warnings.catch_warnings():
        warnings.simplefilter("error", MaskGapWarning)
        for fill in (-math.inf, torch.finfo(torch.float64).min):
            solve_entropy_gamma(torch.tensor([[0.0, -400.0, fill]], dtype=torch.float64), 0.5)
        scores = torch.randn(4, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
        causal = torch.triu(torch.ones(4, 4, dtype=torch.bool), diagonal=1)
        for fill in (-1e4, -1e9):   # gamma ~ 1 and the uniform short rows (gamma = 0): the gap is a mask there
            solve_entropy_gamma(scores.masked_fill(causal, fill), 1.0, short_rows="uniform")


def test_an_unconverged_solve_warns_and_the_report_says_which_rows():
    """entropy_normalize returned the gamma the iteration cap stopped at with only report.converged = False to say
    so (torch: one slow row among easy ones, whose |H - target| was 0.6; mpmath: p = [0.5, 0.3, 0.2], target 0.9,
    max_iterations=2), and the report did not say which rows.  Now a NotConvergedWarning is raised and
    report.row_converged is False exactly for the rows whose entropy, evaluated in mpmath at 50 digits from the
    exact logits, misses the target by more than the tolerance."""
    from numeric.entropy import NotConvergedWarning

    easy = torch.tensor([[0.0, -1.0, -2.0], [0.0, -0.5, -3.0]], dtype=torch.float64)
    slow = torch.tensor([[0.0, -1e-4, -2e-4]], dtype=torch.float64)   # near-uniform: gamma ~ 1e4, many steps
    logits = torch.cat([easy, slow])
    target = 0.6
    with pytest.warns(NotConvergedWarning, match=r"1 of 3 row\(s\)"):
        r = entropy_normalize(logits.exp(), target, max_iterations=8)
    assert not r.converged
    with mpmath.workdps(50):
        def missed(row, g):
            ls = [mpmath.mpf(v) for v in row]
            w = [mpmath.exp(mpmath.mpf(float(g)) * (li - max(ls))) for li in ls]
            return abs(-mpmath.fsum(wi / sum(w) * mpmath.log(wi / sum(w)) for wi in w) - target) > r.report.tolerance
        expected = [missed(logits.exp().log()[i].tolist(), r.gamma[i]) for i in range(3)]
    assert expected == [False, False, True]
    assert r.report.row_converged.shape == (3, 1) and (~r.report.row_converged).flatten().tolist() == expected
    with pytest.warns(NotConvergedWarning, match="max_iterations = 2"):
        r = entropy_normalize(["0.5", "0.3", "0.2"], "0.9", dps=30, max_iterations=2)
    assert not r.converged
