"""Surrogate gradients (Activation.surrogate) and the HeLU catalogue entry.

HeLU (Kimhi, Kashani, Mendelson & Baskin 2024, arXiv:2411.10573) computes relu forward and
back-propagates the gradient wherever the input is above -alpha (alpha = 0.05 in the paper's
release), instead of above 0.  The references here are PyTorch's own relu and a mask built
with torch comparisons, not symact's formulas.
"""

import json
import re
import os
import pickle
import subprocess
import sys

import pytest
import sympy
import torch
import torch.nn.functional as F

import symact
from numeric import export_module, torch_function, torch_module
from numeric.codegen import codegen_spec
from symact.errors import DomainError, FormulaError, NonRealExpressionError, UnknownSymbolError

X = symact.x
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# both sides of 0 and of the hysteresis threshold -alpha, and inside the band between them
POINTS = [-3.0, -0.7, -0.31, -0.29, -0.2, -0.051, -0.049, -0.03, -1e-3, 1e-3, 0.4, 2.5]


@pytest.mark.parametrize("alpha", [0.05, 0.3])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
def test_helu_forward_is_relu_and_its_gradient_passes_above_minus_alpha(alpha, dtype):
    module = torch_module(symact.activation("helu", alpha=alpha))
    t = torch.tensor(POINTS, dtype=dtype, requires_grad=True)
    y = module(t)
    torch.testing.assert_close(y, F.relu(t.detach()), rtol=0, atol=0)
    g = torch.linspace(0.5, 2.0, len(POINTS), dtype=dtype)
    (grad,) = torch.autograd.grad(y, t, g)
    expected = torch.where(t.detach() > -alpha, g, torch.zeros_like(g))
    torch.testing.assert_close(grad, expected, rtol=0, atol=0)
    # inside the band the gradient is not relu's: that is the point of HeLU
    band = (t.detach() > -alpha) & (t.detach() < 0)
    assert band.any() and torch.all(grad[band] == g[band])


def test_helu_default_threshold_is_the_papers_and_the_symbolic_facts_are_relus():
    helu, relu = symact.activation("helu"), symact.activation("relu")
    assert helu.params[sympy.Symbol("alpha", nonnegative=True)] == sympy.Rational(1, 20)
    assert helu.concrete_expr == relu.concrete_expr
    # derivative() is the derivative of the forward formula; backward_derivative() what backprop uses
    assert helu.derivative().concrete_expr == relu.derivative().concrete_expr
    assert helu.backward_derivative().concrete_expr == sympy.Heaviside(X + sympy.Rational(1, 20), 0)
    assert relu.backward_derivative() == relu.derivative()
    assert helu.properties() == relu.properties()
    assert helu.torch_builtin is None  # F.relu would back-propagate relu's gradient
    assert helu != relu and hash(helu) != hash(relu.with_surrogate(None))


def test_surrogate_transforms_like_a_derivative_under_the_dks_transform():
    """psi = gamma*(phi(alpha*x + beta) + delta) has psi' = gamma*alpha*phi'(alpha*x + beta): a
    surrogate equal to phi' must stay equal to psi' after the transform."""
    act = symact.activation("tanh(x) + x**3/7", surrogate="1 - tanh(x)**2 + 3*x**2/7")
    psi = act.transformed(sympy.Rational(3, 2), sympy.Rational(-1, 3), 2, sympy.Rational(1, 5))
    assert sympy.simplify(psi.backward_derivative().expr - psi.derivative().expr) == 0
    symbolic = symact.activation("helu").transformed()  # alpha_t (helu has an alpha), beta, gamma, delta
    a, b, c = (sympy.Symbol(n, real=True) for n in ("alpha_t", "beta", "gamma"))
    alpha = sympy.Symbol("alpha", nonnegative=True)
    assert symbolic.surrogate == c * a * sympy.Heaviside(a * X + b + alpha, 0)


def test_surrogate_follows_subs_with_params_and_pickle():
    helu = symact.activation("helu")
    assert helu.subs(alpha=0.1).surrogate == sympy.Heaviside(X + sympy.Rational(1, 10), 0)
    moved = helu.with_params(alpha=0.25)
    assert moved.backward_derivative().concrete_expr == sympy.Heaviside(X + sympy.Rational(1, 4), 0)
    restored = pickle.loads(pickle.dumps(moved))
    assert restored == moved and restored.surrogate == moved.surrogate
    assert "surrogate=Heaviside(alpha + x, 0)" in repr(helu)


def test_a_formula_may_declare_a_parameter_only_its_surrogate_uses():
    act = symact.activation("Max(0, x)", surrogate="Heaviside(x + a, 0)", a=0.2)
    assert act.backward_derivative().concrete_expr == sympy.Heaviside(X + sympy.Rational(1, 5), 0)
    with pytest.raises(UnknownSymbolError, match="do not appear"):
        symact.activation("Max(0, x)", surrogate="Heaviside(x, 0)", a=0.2)
    # a catalogue entry takes a surrogate too (a straight-through step)
    step = symact.activation("heaviside", surrogate="Max(0, 1 - Abs(x))")
    assert step.backward_derivative().expr == sympy.Max(0, 1 - sympy.Abs(X))


def test_bad_surrogates_are_refused_naming_the_problem():
    with pytest.raises(UnknownSymbolError, match="neither x nor parameters"):
        symact.activation("relu").with_surrogate("Heaviside(x + b, 0)")
    with pytest.raises(NonRealExpressionError, match="not real"):
        symact.activation("relu").with_surrogate("sqrt(x)")
    with pytest.raises(FormulaError, match="single-input"):
        symact.activation("swiglu").with_surrogate("v")
    with pytest.raises(FormulaError, match="formula string"):
        symact.activation("relu").with_surrogate(0.5)
    with pytest.raises(FormulaError, match="finite"):
        symact.activation("relu").with_surrogate("1/(x - x)")


def test_training_a_parameter_only_the_surrogate_uses_is_refused_with_the_fix():
    with pytest.raises(DomainError, match="only in the surrogate gradient.*leave it fixed"):
        torch_module("helu", trainable="alpha")


def test_prefer_builtins_and_fused_backward_never_replace_the_surrogate_by_relus_gradient():
    """helu's forward is Max(0, x), which prefer_builtins and the fused backward would map to
    F.relu and threshold_backward: 0 gradient at x = -0.01."""
    spec = codegen_spec("helu", prefer_builtins=True)
    assert spec.builtin is None and spec.saves == "input"
    for module in (torch_module("helu"), torch_module("helu", prefer_builtins=True)):
        t = torch.tensor([-0.01, -0.06], requires_grad=True)
        module(t).sum().backward()
        assert t.grad.tolist() == [1.0, 0.0]


def test_exported_helu_states_its_surrogate_and_matches_the_module(tmp_path):
    path = export_module("helu", tmp_path / "helu_act.py", class_name="HeLU")
    source = path.read_text()
    assert "surrogate gradient Heaviside(alpha + x, 0)" in source
    import importlib.util

    spec = importlib.util.spec_from_file_location("exported_helu", path)
    loaded = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(loaded)
    t = torch.tensor(POINTS, dtype=torch.float64, requires_grad=True)
    loaded.HeLU()(t).sum().backward()
    torch.testing.assert_close(t.grad, (t.detach() > -0.05).double(), rtol=0, atol=0)
    assert "backward: Heaviside(alpha + x, 0)" in repr(loaded.HeLU())


def test_double_backward_and_vmap_of_the_surrogate():
    """The surrogate is piecewise constant: its derivative is 0, and vmap(grad) is the surrogate."""
    fn = torch_function(symact.activation("helu"))
    t = torch.tensor(POINTS, dtype=torch.float64, requires_grad=True)
    (g,) = torch.autograd.grad(fn.apply(t).sum(), t, create_graph=True)
    torch.testing.assert_close(g.detach(), (t.detach() > -0.05).double(), rtol=0, atol=0)
    if g.requires_grad:
        (gg,) = torch.autograd.grad(g.sum(), t, allow_unused=True)
        assert gg is None or torch.all(gg == 0)
    per_sample = torch.func.vmap(torch.func.grad(fn.apply))(t.detach())
    torch.testing.assert_close(per_sample, (t.detach() > -0.05).double(), rtol=0, atol=0)


def test_cli_derive_prints_the_surrogate_next_to_the_derivatives():
    env = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
    out = subprocess.run([sys.executable, "-m", "analysis.cli", "derive", "helu", "--json"],
                         capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    payload = json.loads(out.stdout)
    assert payload["derivatives"][0]["expr"] == "Heaviside(x, 0)"
    assert sympy.sympify(payload["surrogate_gradient"], locals={"x": X}) == sympy.Heaviside(
        X + sympy.Rational(1, 20), 0)


def test_a_builtin_is_not_offered_for_an_activation_with_a_surrogate():
    """relu.with_surrogate(...) kept relu's torch_builtin, F.relu, whose backward is relu's own
    gradient (0 at x = -0.01), not the declared surrogate (1 there)."""
    act = symact.activation("relu").with_surrogate("Heaviside(x + 1/20, 0)")
    assert act.torch_builtin is None
    assert symact.activation("relu", surrogate="Heaviside(x + 1/20, 0)").torch_builtin is None
    # a surrogate dropped again gives relu back, built-in included
    assert act.with_surrogate(None).torch_builtin == symact.activation("relu").torch_builtin
    # the built-in it would have named really does disagree with the surrogate at -0.01
    t = torch.tensor([-0.01], requires_grad=True)
    F.relu(t).sum().backward()
    assert t.grad.item() == 0.0 and float(act.backward_derivative()(-0.01)) == 1.0


def test_a_trainable_shift_inside_the_surrogate_is_refused_and_outer_parameters_train():
    """helu.transformed() with a trainable beta gave x the surrogate Heaviside(x + beta + alpha) but
    beta relu's gradient Heaviside(x + beta): at x = -0.03 dy/dx = 1 while dy/dbeta = 0, though
    y depends on x and beta only through x + beta.  Such a parameter is refused; gamma and delta,
    outside phi, train, with the gradients of the forward formula."""
    shaped = symact.activation("helu").transformed()
    for name in ("beta", "alpha_t"):
        with pytest.raises(DomainError, match=f"'{name}' sits inside the argument of the surrogate"):
            torch_module(shaped, trainable=name)
    module = torch_module(shaped, trainable=("gamma", "delta")).double()
    t = torch.tensor(POINTS, dtype=torch.float64, requires_grad=True)
    module(t).sum().backward()
    # psi = gamma*(relu(x) + delta) at gamma = 1, delta = 0: dpsi/dgamma = relu(x), dpsi/ddelta = 1
    torch.testing.assert_close(module.gamma.grad, F.relu(t.detach()).sum(), rtol=1e-12, atol=0)
    assert float(module.delta.grad) == len(POINTS)
    torch.testing.assert_close(t.grad, (t.detach() > -0.05).double(), rtol=0, atol=0)


def test_forward_mode_ad_multiplies_the_tangent_by_the_surrogate():
    """jvp of a surrogate-gradient module is the surrogate times the tangent, so that jacfwd and
    jacrev give the same (diagonal) Jacobian; the reference is a torch mask, x > -alpha."""
    module = torch_module("helu")
    t = torch.tensor(POINTS, dtype=torch.float64)
    tangent = torch.linspace(-1.0, 2.0, len(POINTS), dtype=torch.float64)
    value, jvp = torch.func.jvp(module, (t,), (tangent,))
    torch.testing.assert_close(value, F.relu(t), rtol=0, atol=0)
    mask = (t > -0.05).double()
    torch.testing.assert_close(jvp, mask * tangent, rtol=0, atol=0)
    torch.testing.assert_close(torch.func.jacfwd(module)(t), torch.diag(mask), rtol=0, atol=0)
    torch.testing.assert_close(torch.func.jacrev(module)(t), torch.diag(mask), rtol=0, atol=0)


def test_smoothing_a_surrogate_activation_smooths_its_surrogate_too():
    """convolve(helu) dropped the surrogate: "helu*gaussian" back-propagated the derivative of the
    smoothed relu, Phi(x/sigma), instead of the smoothed surrogate (s * k)(x) = Phi((x + alpha)/sigma).
    Reference: the convolution integral by mpmath quadrature."""
    import mpmath

    from symact.smooth import convolve

    smoothed = convolve("helu", "gaussian", sympy.Rational(1, 2))
    assert smoothed.surrogate is not None
    backward = sympy.lambdify(X, smoothed.backward_derivative().concrete_expr, modules="mpmath")
    with mpmath.workdps(30):
        for point in (-1.2, -0.05, -0.02, 0.0, 0.3, 1.7):
            # int s(x - t) k(t) dt with s = Heaviside(. + 1/20): t < x + 1/20, k the N(0, 1/4) density
            reference = mpmath.quad(lambda t: mpmath.npdf(t, 0, 0.5), [-mpmath.inf, mpmath.mpf(point) + mpmath.mpf(1) / 20])
            assert abs(backward(point) - reference) < 1e-15
    # and the generated module back-propagates it
    t = torch.tensor([-0.3, -0.02, 0.4], dtype=torch.float64, requires_grad=True)
    torch_module(smoothed)(t).sum().backward()
    expected = [float(backward(v)) for v in (-0.3, -0.02, 0.4)]
    torch.testing.assert_close(t.grad, torch.tensor(expected, dtype=torch.float64), rtol=1e-12, atol=0)
    # a surrogate that is not piecewise polynomial cannot be smoothed in closed form: refused, naming the fix
    soft = symact.activation("relu", surrogate="1/(1 + exp(-x))")
    with pytest.raises(FormulaError, match="with_surrogate\\(None\\)"):
        convolve(soft, "gaussian", 1)
    assert convolve(soft.with_surrogate(None), "gaussian", 1).surrogate is None


def test_parameter_values_that_make_the_surrogate_non_real_are_refused():
    """with_params/subs checked the surrogate for finiteness only: a=-1 made sqrt(x**2 + a) imaginary
    for |x| < 1, and the generated backward NaN there."""
    act = symact.activation("Max(0, x)", surrogate="sqrt(x**2 + a)/sqrt(1 + x**2)", a=1)
    with pytest.raises(NonRealExpressionError, match="surrogate gradient.*not real"):
        act.with_params(a=-1)
    with pytest.raises(NonRealExpressionError, match="surrogate gradient.*not real"):
        act.subs(a=-1)
    # a value keeping it real is accepted, and its backward is the surrogate (sqrt(2)/sqrt(2) = 1 at x = 1)
    moved = act.with_params(a=2)
    t = torch.tensor([1.0, -0.5], dtype=torch.float64, requires_grad=True)
    torch_module(moved)(t).sum().backward()
    expected = torch.sqrt(t.detach() ** 2 + 2) / torch.sqrt(1 + t.detach() ** 2)
    torch.testing.assert_close(t.grad, expected, rtol=1e-14, atol=0)


def test_notebook_display_shows_the_surrogate_that_tells_helu_from_relu():
    helu, relu = symact.activation("helu"), symact.activation("relu")
    assert helu != relu
    shown = helu._repr_latex_()
    assert shown != relu._repr_latex_().replace("relu", "helu")
    assert sympy.latex(helu.surrogate) in shown and shown.startswith("$") and shown.endswith("$")
    assert relu._repr_latex_() == f"${relu.latex()}$"


def test_cli_takes_a_surrogate_for_codegen_and_derive(tmp_path, capsys):
    """The CLI had no way to give a formula a surrogate gradient: `symact codegen` could write
    helu but not relu with a straight-through or shifted gradient."""
    from analysis.cli import main

    path = tmp_path / "shifted.py"
    assert main(["codegen", "Max(0, x)", "--surrogate", "Heaviside(x + a, 0)", "--param", "a=0.25",
                 "-o", str(path), "--class-name", "Shifted"]) == 0
    import importlib.util

    spec = importlib.util.spec_from_file_location("cli_shifted", path)
    loaded = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(loaded)
    t = torch.tensor(POINTS, dtype=torch.float64, requires_grad=True)
    y = loaded.Shifted()(t)
    y.sum().backward()
    torch.testing.assert_close(y.detach(), F.relu(t.detach()), rtol=0, atol=0)
    torch.testing.assert_close(t.grad, (t.detach() > -0.25).double(), rtol=0, atol=0)
    capsys.readouterr()
    assert main(["derive", "relu", "--surrogate", "Heaviside(x + 1/10, 0)", "--order", "1", "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert sympy.sympify(payload["surrogate_gradient"], locals={"x": X}) == sympy.Heaviside(X + sympy.Rational(1, 10), 0)
    assert payload["torch_builtin"] is None  # F.relu would back-propagate relu's gradient
    # a symbol the surrogate uses but no parameter declares: named, with the CLI's fix
    assert main(["derive", "Max(0, x)", "--surrogate", "Heaviside(x + b, 0)"]) == 2
    err = capsys.readouterr().err
    assert "surrogate gradient 'Heaviside(x + b, 0)' uses symbol(s) b" in err and "--param b=1.0" in err


@pytest.mark.parametrize("surrogate, pole", [("1/x", "0"), ("1/(x - 1)", "1"), ("log(Abs(x))", "0"), ("tan(x)", "pi/2"),
                                             ("x**(-2)", "0"), ("exp(1/x)", "0"), ("sign(x)/x", "0"),
                                             ("Heaviside(x)/x", "0")])
def test_a_surrogate_with_a_pole_is_refused(surrogate, pole):
    """Only the literal constants oo, zoo and nan were refused: tanh with surrogate 1/x built a module whose
    gradient at x = 0 was inf, and sign(x)/x or Heaviside(x)/x hid the pole behind a step from SymPy's continuity
    domain.  Reference: each formula's one-sided limit at the pole, by SymPy, is infinite."""
    x = symact.x
    expr = sympy.sympify(surrogate, locals={"x": x})
    b = sympy.sympify(pole)
    assert any(not sympy.limit(expr, x, b, side).is_finite for side in ("+", "-"))
    with pytest.raises(symact.NonRealExpressionError, match=rf"not finite for every real x.*singularity at x = "
                                                            rf"{re.escape(pole)}"):
        symact.activation("tanh", surrogate=surrogate)
    # finite surrogates with removable points or steps stay accepted
    for fine in ("sin(x)/x", "Heaviside(1 - Abs(x))", "(1 - cos(x))/x**2"):
        symact.activation("tanh", surrogate=fine)
