"""torch.nn.utils.parametrize parametrisations for A = g(W) (numeric/parametrizations.py)."""

import io
import re

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

import numeric
from numeric.parametrizations import ParameterActivationParametrization, parametrization, parametrize_model
from symact.errors import DomainError


pytestmark = pytest.mark.usefixtures("one_torch_thread")


# Weights inside each row's range (value offset so that every entry is in range).
ROW_WEIGHT_SHIFT = {"identity": -1.0, "exp": 0.1, "square": 0.1, "log": -1.0, "reciprocal": 0.1,
                    "exp_exp": 1.1, "cube": -1.0, "softplus": 0.1, "powerprop": -1.0}


def _linear(seed=0, dtype=torch.float64):
    torch.manual_seed(seed)
    return nn.Linear(5, 3).to(dtype)


@pytest.mark.parametrize("name", list(ROW_WEIGHT_SHIFT))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_right_inverse_reproduces_given_weights(name, dtype):
    layer = _linear(dtype=dtype)
    with torch.no_grad():
        layer.weight.copy_(torch.rand_like(layer.weight) * 2 + ROW_WEIGHT_SHIFT[name])
    given = layer.weight.detach().clone()
    parametrize_model(layer, name)
    assert parametrize.is_parametrized(layer, "weight")
    assert layer.weight.dtype == dtype
    torch.testing.assert_close(layer.weight, given, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("signed", ["difference", "soft_sign", "second_layer"])
@pytest.mark.parametrize("g", ["exp", "square", "softplus"])
def test_signed_forms_reproduce_signed_weights(signed, g):
    layer = _linear(dtype=torch.float32)  # default init: weights of both signs
    given = layer.weight.detach().clone()
    assert (given < 0).any() and (given > 0).any()
    parametrize_model(layer, g, signed=signed)
    torch.testing.assert_close(layer.weight, given, rtol=1e-6, atol=1e-6)


def test_forward_matches_torch_builtins():
    w = torch.linspace(-3, 3, 13, dtype=torch.float64)
    torch.testing.assert_close(ParameterActivationParametrization("exp")(w), torch.exp(w))
    torch.testing.assert_close(ParameterActivationParametrization("softplus")(w), F.softplus(w))
    torch.testing.assert_close(ParameterActivationParametrization("powerprop", alpha=3)(w), w * w.abs() ** 2)
    torch.testing.assert_close(ParameterActivationParametrization("identity")(w), w)


def test_unsigned_rejects_weights_outside_the_range():
    layer = _linear()
    with pytest.raises(DomainError, match="signed="):
        parametrize_model(layer, "exp")


def test_conv_and_second_layer_shapes():
    torch.manual_seed(0)
    conv = nn.Conv2d(2, 4, 3)
    given = conv.weight.detach().clone()
    parametrize_model(conv, "exp", signed="second_layer")
    assert conv.weight.shape == given.shape
    torch.testing.assert_close(conv.weight, given, rtol=1e-6, atol=1e-6)
    originals = conv.parametrizations.weight
    assert originals.original0.shape == (8, 18) and originals.original1.shape == (4, 8)


def _model(signed):
    torch.manual_seed(1)
    net = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1)).double()
    return parametrize_model(net, "exp", signed=signed)


@pytest.mark.parametrize("signed", ["difference", "soft_sign", "second_layer"])
def test_parametrised_model_trains_saves_and_reloads(signed):
    net = _model(signed)
    torch.manual_seed(2)
    x = torch.randn(64, 4, dtype=torch.float64)
    y = torch.tanh(x @ torch.tensor([[1.0], [-2.0], [0.5], [0.0]], dtype=torch.float64))
    opt = torch.optim.Adam(net.parameters(), lr=2e-2)
    first = F.mse_loss(net(x), y).item()
    for _ in range(150):
        opt.zero_grad()
        loss = F.mse_loss(net(x), y)
        loss.backward()
        opt.step()
    assert loss.item() < 0.2 * first
    buffer = io.BytesIO()
    torch.save(net.state_dict(), buffer)
    buffer.seek(0)
    fresh = _model(signed)
    assert not torch.equal(fresh(x), net(x))
    fresh.load_state_dict(torch.load(buffer))
    torch.testing.assert_close(fresh(x), net(x), rtol=0, atol=0)


def test_unsigned_positive_linear_trains_and_round_trips():
    torch.manual_seed(3)
    layer = nn.Linear(3, 1, bias=False).double()
    with torch.no_grad():
        layer.weight.uniform_(0.5, 1.5)
    parametrize_model(layer, "exp")
    x = torch.rand(128, 3, dtype=torch.float64)
    y = x @ torch.tensor([[0.3], [2.0], [1.0]], dtype=torch.float64)
    opt = torch.optim.SGD(layer.parameters(), lr=0.3)
    for _ in range(3000):
        opt.zero_grad()
        F.mse_loss(layer(x), y).backward()
        opt.step()
    torch.testing.assert_close(layer.weight, torch.tensor([[0.3, 2.0, 1.0]], dtype=torch.float64), atol=2e-2, rtol=0)
    state = layer.state_dict()
    assert "parametrizations.weight.original" in state
    # the stored raw weight is log A
    torch.testing.assert_close(state["parametrizations.weight.original"].exp(), layer.weight)


def test_factory_and_repr():
    p = parametrization("square")
    assert "W**2" in repr(p)
    with pytest.raises(Exception, match="signed"):
        parametrization("exp", signed="mirror")
    assert numeric.parametrize_model is parametrize_model


def test_parametrized_model_deepcopies_and_its_parameter_activation_pickles():
    import copy
    import pickle

    import symact

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 3))
    parametrize_model(model, "exp", signed="difference")
    copied = copy.deepcopy(model)
    t = torch.randn(5, 3)
    torch.testing.assert_close(copied(t), model(t), rtol=0, atol=0)
    pa = symact.parameter_activation("W*Abs(W)**(alpha - 1)", alpha=3)
    restored = pickle.loads(pickle.dumps(pa))
    assert restored.g == pa.g and dict(restored.params) == dict(pa.params)
    assert restored.effective_learning_rate == pa.effective_learning_rate


def test_bounded_tanh_parametrization_round_trips_against_torch_atanh():
    """A = tanh(W) (weights bounded in (-1, 1)) could not be built: its inverse atanh has no rule in the
    code generator.  right_inverse must agree with torch.atanh, and the weights survive registration."""
    p = ParameterActivationParametrization("tanh(W)")
    a = torch.tensor([-0.999, -0.5, 0.0, 0.3, 0.99], dtype=torch.float64)
    assert torch.allclose(p.right_inverse(a), torch.atanh(a), rtol=1e-13, atol=1e-15)
    w = torch.linspace(-4, 4, 9, dtype=torch.float64)
    assert torch.allclose(p(w), torch.tanh(w), rtol=1e-15, atol=0)
    layer = nn.Linear(5, 3).double()
    before = layer.weight.detach().clone()          # nn.Linear's default init lies in (-1, 1)
    parametrize.register_parametrization(layer, "weight", p)
    assert torch.allclose(layer.weight, before, rtol=1e-12, atol=1e-15)
    with pytest.raises(DomainError):
        p.right_inverse(torch.tensor([1.5], dtype=torch.float64))   # outside the open range (-1, 1)
    # 1.0 is outside it too, but tanh(W) rounds to it for W >= 19.06 in float64: see
    # test_every_value_the_forward_gives_round_trips_or_is_refused_as_untrainable


def test_parametrization_whose_inverse_has_no_torch_form_says_so():
    from symact.errors import FormulaError

    with pytest.raises(FormulaError, match="right_inverse needs g\\^-1"):
        ParameterActivationParametrization("W*exp(W)")


# ---------------------------------------------------------------- right_inverse accuracy (review round 3)
def _mp_relative_errors(computed, reference):
    import mpmath

    out = []
    for c, r in zip(computed.tolist(), reference):
        out.append(float(abs((mpmath.mpf(c) - r) / r)) if r != 0 else abs(c))
    return out


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_tanh_right_inverse_keeps_every_digit_of_small_weights(dtype):
    """atanh written through plain logs, log(1 + A)/2 - log(1 - A)/2, drops log(1 - A) for |A| < eps/2:
    right_inverse(1e-9) was 5e-10 in float32 (a factor 2), 1.4e-8 relatively off in float64.  Reference:
    mpmath's atanh of the stored value; property: tanh(right_inverse(A)) gives A back."""
    import mpmath

    p = ParameterActivationParametrization("tanh(W)")
    a = torch.tensor([1e-12, -1e-9, 3e-7, -2e-4, 0.25, -0.75, 0.999], dtype=dtype)
    w = p.right_inverse(a)
    eps = torch.finfo(dtype).eps
    with mpmath.workdps(40):
        errors = _mp_relative_errors(w, [mpmath.atanh(mpmath.mpf(v)) for v in a.tolist()])
    assert max(errors) <= 2 * eps, errors
    torch.testing.assert_close(p(w), a, rtol=2 * eps, atol=0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_softplus_right_inverse_of_large_weights_is_finite_and_exact(dtype):
    """softplus's inverse log(exp(A) - 1) overflowed: A = 100 in float32 (A = 1e4 in float64) raised
    'produced non-finite values' although softplus takes every A > 0.  Reference: mpmath log(expm1(A))."""
    import mpmath

    p = ParameterActivationParametrization("softplus")
    a = torch.tensor([1e-6, 0.3, 20.0, 100.0, 1e3, 3e4], dtype=dtype)
    w = p.right_inverse(a)
    eps = torch.finfo(dtype).eps
    with mpmath.workdps(40):
        errors = _mp_relative_errors(w, [mpmath.log(mpmath.expm1(mpmath.mpf(v))) for v in a.tolist()])
    assert max(errors) <= 4 * eps, errors
    torch.testing.assert_close(p(w), a, rtol=8 * eps, atol=0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_cardano_right_inverse_round_trips_near_zero(dtype):
    """A = W + W**3 inverts by Cardano's formula, which cancels for small |A|: right_inverse(0) was -3e-8
    and right_inverse(1e-9) was 8e-8 in float32.  Reference: the real root of W**3 + W - A by mpmath."""
    import mpmath

    p = ParameterActivationParametrization("W + W**3")
    a = torch.tensor([0.0, 1e-9, -1e-9, 1e-6, -0.5, 2.0, 1e3, -1e6], dtype=dtype)
    w = p.right_inverse(a)
    eps = torch.finfo(dtype).eps
    assert w[0].item() == 0.0
    with mpmath.workdps(40):
        reference = [mpmath.findroot(lambda t, v=mpmath.mpf(v): t + t**3 - v, mpmath.mpf(v) / (1 + abs(v)) ** (2 / 3))
                     for v in a.tolist()[1:]]
    errors = _mp_relative_errors(w[1:], reference)
    assert max(errors) <= 2 * eps, errors
    torch.testing.assert_close(p(w), a, rtol=4 * eps, atol=0)


def test_domain_keyword_reaches_the_parameter_activation():
    """ParameterActivationParametrization / parametrize_model forward their keywords to
    symact.parameter_activation, whose ``domain`` keyword then collided with the one passed explicitly:
    a raw TypeError ("got multiple values for keyword argument 'domain'").  The negative branch of
    A = W**2 is W = -sqrt(A)."""
    p = ParameterActivationParametrization("W**2", domain=(-float("inf"), 0))
    a = torch.tensor([0.25, 4.0, 9.0], dtype=torch.float64)
    torch.testing.assert_close(p.right_inverse(a), -a.sqrt(), rtol=0, atol=0)
    layer = _linear()
    given = layer.weight.detach().clone()
    parametrize_model(layer, "W**2", signed="difference", domain=(-float("inf"), 0))
    torch.testing.assert_close(layer.weight, given, rtol=1e-12, atol=1e-12)
    assert (layer.parametrizations.weight.original0 < 0).all()
    import symact

    with pytest.raises(DomainError, match="symact.parameter_activation"):
        ParameterActivationParametrization(symact.parameter_activation("exp"), domain="real")


def test_signed_offset_lies_in_a_requested_domain():
    """The signed forms add c = g(0), or g(1) when 0 is not in the domain: for log(W) on W > 2 that is
    g(1) = 0, outside g's range (log 2, oo), so every weight <= 0 was refused."""
    import sympy
    import symact

    pa = symact.parameter_activation("log(W)", domain=(2, sympy.oo))
    a = torch.tensor([-1.5, 0.0, 3.0], dtype=torch.float64)
    for cls in (numeric.parametrizations.DifferenceParametrization,
                numeric.parametrizations.SecondLayerParametrization):
        p = cls(pa)
        assert p.c > float(sympy.log(2))
        torch.testing.assert_close(p(*p.right_inverse(a)), a, rtol=1e-15, atol=1e-15)


@pytest.mark.parametrize("signed", ["difference", "soft_sign", "second_layer"])
def test_signed_form_of_a_bounded_g_names_its_own_limit_not_another_signed_form(signed):
    """A = sigmoid(W) has range (0, 1); a signed form of it stores g^-1 of values such as relu(A) + 1/2, so
    |A| = 0.9 cannot be represented.  The error told the user to 'use a signed parametrisation', which they
    were doing, and named values (1.2) they never passed.  Weights inside the limit still round-trip."""
    p = parametrization("sigmoid(W)", signed=signed)
    with pytest.raises(DomainError) as info:
        p.right_inverse(torch.tensor([-0.9, 0.2, 0.7], dtype=torch.float64))
    text = str(info.value)
    assert "This signed form stores" in text and "rescale the weights" in text
    assert "Use a signed parametrisation" not in text
    small = torch.tensor([-0.3, 0.0, 0.2], dtype=torch.float64)
    torch.testing.assert_close(p(*p.right_inverse(small)), small, rtol=1e-15, atol=1e-15)


def test_a_range_of_two_intervals_is_checked_before_inverting():
    """1/W's range is A != 0, a union of two intervals, which right_inverse did not check: A = 0 went
    through 1/A to inf and the error said 'produced non-finite values; rescale the weights', which no
    rescaling fixes.  It now names the value and the range; the difference form represents A = 0."""
    p = ParameterActivationParametrization("reciprocal")
    with pytest.raises(DomainError, match=r"cannot take the value\(s\) \[0.0\]"):
        p.right_inverse(torch.tensor([0.0, 2.0], dtype=torch.float64))
    a = torch.tensor([-4.0, 0.5], dtype=torch.float64)
    torch.testing.assert_close(p.right_inverse(a), 1 / a, rtol=0, atol=0)
    signed = parametrization("reciprocal", signed="difference")
    a = torch.tensor([-4.0, 0.0, 0.5], dtype=torch.float64)
    torch.testing.assert_close(signed(*signed.right_inverse(a)), a, rtol=1e-15, atol=1e-15)


def test_weights_outside_a_range_sympy_could_not_find_are_refused_not_mapped_elsewhere():
    """A = W/(1 + |W|) takes values in (-1, 1), but its range was unknown (None), so right_inverse(2.0)
    returned W = -2 (then 3e5 after refinement), whose g(W) is -2/3 (then 1.0): a silently different
    weight.  Values outside the range are refused; the round-trip check refuses them even when the range
    is unknown."""
    p = ParameterActivationParametrization("W/(1 + Abs(W))")
    a = torch.tensor([0.5, 2.0, -3.0], dtype=torch.float64)
    with pytest.raises(DomainError, match="cannot take the value"):
        p.right_inverse(a)
    p._bounds = None   # as when SymPy finds no range: the round trip g(g^-1(A)) = A is checked
    with pytest.raises(DomainError, match="does not give the value"):
        p.right_inverse(a)
    inside = torch.tensor([0.5, -0.99, 0.0, 1e-12], dtype=torch.float64)
    w = p.right_inverse(inside)
    torch.testing.assert_close(w, inside / (1 - inside.abs()), rtol=1e-15, atol=0)   # softsign^-1 by hand
    torch.testing.assert_close(p(w), inside, rtol=1e-15, atol=0)


@pytest.mark.parametrize("k", [float("inf"), float("nan"), 0.0, -1.0, "2"])
def test_soft_sign_sharpness_must_be_positive_and_finite(k):
    """k = inf passed the "k > 0" check; right_inverse then stored S = sign(A)/k = 0, and the layer's
    weight tanh(k*S)*g(W) = tanh(inf*0)*g(W) was NaN in every entry.  A string raised a raw TypeError."""
    from numeric.parametrizations import SoftSignParametrization

    with pytest.raises(DomainError, match="sharpness k=.*positive finite"):
        SoftSignParametrization("exp", k=k)
    with pytest.raises(DomainError, match="sharpness"):
        parametrize_model(nn.Linear(2, 2), "exp", signed="soft_sign", k=k)
    # a large finite k still reproduces the weights (S = sign(A)/k, tanh(k*S) = +-tanh(1))
    p = SoftSignParametrization("exp", k=1e6)
    a = torch.tensor([0.5, -1.0, 0.0], dtype=torch.float64)
    torch.testing.assert_close(p(*p.right_inverse(a)), a)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_sin_and_cos_on_their_monotone_pieces_invert_through_atan(dtype):
    """sin(W) on (-pi/2, pi/2) and cos(W) on (0, pi) have elementary inverses asin(A), acos(A), but the code
    generator has no rule for them and rewrite(log) is complex: right_inverse raised FormulaError "Choose a
    g whose inverse is elementary".  Checked against torch.asin / torch.acos and by the round trip."""
    import sympy

    values = torch.tensor([-0.999999, -0.9, -1e-9, 0.0, 0.3, 0.99, 0.9999], dtype=dtype)
    for g, domain, reference in (("sin(W)", (-sympy.pi / 2, sympy.pi / 2), torch.asin),
                                 ("cos(W)", (0, sympy.pi), torch.acos)):
        p = ParameterActivationParametrization(g, domain=domain)
        w = p.right_inverse(values)
        torch.testing.assert_close(w, reference(values.double()).to(dtype), rtol=4 * torch.finfo(dtype).eps, atol=0)
        torch.testing.assert_close(p(w), values)
        # a value beyond the range is still refused (its end, 1.0, is the forward's value at fl(pi/2))
        with pytest.raises(DomainError, match="cannot take the value"):
            p.right_inverse(torch.tensor([1.5], dtype=dtype))


@pytest.mark.parametrize("alpha", [0.5, "1/2", "1/3"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_powerprop_below_alpha_one_is_finite_at_zero_and_round_trips_it(alpha, dtype):
    """Powerpropagation A = W*|W|**(alpha - 1) with alpha < 1 was NaN at W = 0 (0*inf); the limit is 0.
    Its gradient alpha*|W|**(alpha - 1) tends to +inf there (a vertical tangent), which it must give, not
    NaN.  Its domain also left out W = 0 (SymPy's 0/0), so right_inverse refused the forward's own A = 0.
    Reference: the closed form sign(W)*|W|**alpha and its derivative alpha*|W|**(alpha - 1), by mpmath."""
    import mpmath
    import sympy

    p = ParameterActivationParametrization("powerprop", alpha=sympy.Rational(alpha) if isinstance(alpha, str) else alpha)
    w = torch.tensor([0.0, 1e-30, -1e-6, 0.3, -2.0, 5.0], dtype=dtype, requires_grad=True)
    a = p(w)
    a.sum().backward()
    with mpmath.workdps(40):
        e = mpmath.mpf(sympy.Rational(alpha).p) / sympy.Rational(alpha).q
        wd = [mpmath.mpf(t) for t in w.detach().tolist()]
        expected = torch.tensor([float(mpmath.sign(t) * abs(t) ** e) for t in wd], dtype=dtype)
        expected_grad = torch.tensor([float(e * abs(t) ** (e - 1)) if t != 0 else float("inf") for t in wd],
                                     dtype=dtype)
    eps = torch.finfo(dtype).eps
    torch.testing.assert_close(a.detach(), expected, rtol=8 * eps, atol=0)
    # |W|**(alpha - 1) with the exponent -2/3 rounded: relative error up to eps*|log W| (69 at W = 1e-30)
    torch.testing.assert_close(w.grad, expected_grad, rtol=64 * eps, atol=0)
    assert a[0].item() == 0.0 and w.grad[0].item() == float("inf")
    back = p.right_inverse(a.detach())
    assert back[0].item() == 0.0
    torch.testing.assert_close(p(back), a.detach(), rtol=8 * eps, atol=0)
    layer = nn.Linear(3, 2, bias=False).to(dtype)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[0.0, 0.5, -1.0], [2.0, 0.0, -0.25]], dtype=dtype))
    given = layer.weight.detach().clone()
    parametrize_model(layer, p.activation)
    torch.testing.assert_close(layer.weight, given, rtol=8 * eps, atol=0)


# ---------------------------------------------------------------- the forward's own values (review round 6)
# g, its open range's finite ends
OPEN_RANGE_CASES = [
    ("exp(W) - 1", (-1.0,)), ("tanh(W)", (-1.0, 1.0)), ("sigmoid(W)", (0.0, 1.0)), ("exp", (0.0,)),
    ("softplus", (0.0,)), ("sin(W)", (-1.0, 1.0)),
    # the inverse itself rounds to the end one value inside: in float64 the cube root of 1 - 1.1e-16 is 1.0 and
    # atanh(1) = inf, so -1.0 (tanh(W)**3 for W <= -19.1) was refused as reached "at no W of its domain"
    ("tanh(W)**3", (-1.0, 1.0)),
]


@pytest.mark.parametrize("g, ends", OPEN_RANGE_CASES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_every_value_the_forward_gives_round_trips_or_is_refused_as_untrainable(g, ends, dtype):
    """right_inverse refused the forward's own outputs at the open ends of g's range: A = exp(W) - 1 is -1.0
    in float32 for W <= -17.33 (tanh(W) = 1.0 for W >= 9.01, sigmoid(W) = 1.0 for W >= 16.6), and
    right_inverse(-1.0) raised 'cannot take the value(s) [-1.0] ... its range is (-1, oo)'.  Now every A the
    forward gives comes back through a W with g(W) == A in the same dtype, except where every such W has
    g'(W) = 0 or subnormal (exp(W) = 0.0 in float32 for W <= -103.97), which is refused saying so; the test
    checks that claim against autograd's g' at each W of the grid that gave A."""
    import sympy
    import warnings

    kwargs = {"domain": (-sympy.pi / 2, sympy.pi / 2)} if g == "sin(W)" else {}
    p = ParameterActivationParametrization(g, **kwargs)
    if g == "sin(W)":
        # fl(pi/2) < pi/2, but the open float bounds leave it out: the next doubles below it give sin = 1.0
        grid = torch.cat([torch.linspace(-1.5707963267948963, 1.5707963267948963, 101, dtype=torch.float64),
                          torch.tensor([1.5707963, -1.57079632679])])
    else:
        grid = torch.cat([torch.linspace(-800, 800, 161, dtype=torch.float64),
                          torch.tensor([-745.2, -745.0, -120.0, -104.0, -103.5, -40.0, -37.0, -20.0, -17.5, -17.0,
                                        -9.5, 9.5, 17.0, 17.5, 20.0, 37.0])])
    w = grid.to(dtype).requires_grad_(True)
    a = p(w)
    (slope,) = torch.autograd.grad(a.sum(), w)
    a, w = a.detach(), w.detach()
    keep = torch.isfinite(a)             # exp(800) overflows: not a value the forward gives
    a, w, slope = a[keep], w[keep], slope[keep]
    at_end = torch.isin(a, torch.tensor(ends, dtype=dtype))
    assert bool(at_end.any()), "the grid must reach an end of the range in this dtype"
    eps = torch.finfo(dtype).eps
    inside = a[~at_end]
    # subnormal values (softplus(-103.3) = 1.4e-45 in float32) have no relative precision left
    torch.testing.assert_close(p(p.right_inverse(inside)), inside, rtol=8 * eps, atol=torch.finfo(dtype).tiny)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for end in torch.unique(a[at_end]).tolist():
            value = torch.tensor([end], dtype=dtype)
            try:
                back = p.right_inverse(value)
            except DomainError as err:
                assert "could never train" in str(err), str(err)
                tiny = torch.finfo(dtype).tiny
                assert bool((slope[a == end].abs() < tiny).all()), (end, w[a == end], slope[a == end])
                continue
            assert bool(torch.isfinite(back).all()) and p(back).item() == end, (end, back)


def test_a_saturated_weight_is_copied_into_another_parametrised_layer_with_a_warning():
    """Assigning one tanh-parametrised layer's weights to another calls right_inverse on the forward's
    output; a weight W = 12 gives A = 1.0 in float32, which was refused (outside the open range (-1, 1))."""
    source = nn.Linear(3, 1, bias=False)
    parametrize_model(source, "tanh(W)")
    with torch.no_grad():
        source.parametrizations.weight.original.copy_(torch.tensor([[12.0, -0.5, -30.0]]))
    target = nn.Linear(3, 1, bias=False)
    parametrize_model(target, "tanh(W)")
    with pytest.warns(RuntimeWarning, match="saturated"):
        target.weight = source.weight.detach()
    torch.testing.assert_close(target.weight, source.weight, rtol=0, atol=0)
    w = target.parametrizations.weight.original
    assert 9.0 < w[0, 0].item() < 9.1 and -9.1 < w[0, 2].item() < -9.0   # the least saturated W giving +-1.0
    # exact zeros for exp are still refused: exp'(W) = 0 wherever exp(W) rounds to 0
    zeros = nn.Linear(2, 2, bias=False)
    nn.init.zeros_(zeros.weight)
    with pytest.raises(DomainError, match="could never train"):
        parametrize_model(zeros, "exp")


@pytest.mark.parametrize("signed", ["difference", "soft_sign", "second_layer"])
def test_signed_forms_of_powerprop_below_alpha_one_have_a_finite_offset(signed):
    """The signed forms add c = g(0); for powerprop at alpha = 1/2 that was W/sqrt(|W|) at W = 0 = nan, so
    every weight was refused ('cannot take the value(s) [nan, ...]', c = nan).  c is g's limit there, 0."""
    p = parametrization("powerprop", signed=signed, alpha=0.5)
    assert p.base.offset() == 0.0
    a = torch.tensor([[-1.0, 0.0, 0.5], [2.0, -0.25, 1e-3]], dtype=torch.float64)
    torch.testing.assert_close(p(*p.right_inverse(a)), a, rtol=1e-14, atol=1e-300)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_a_turning_cubic_on_a_monotone_piece_round_trips(dtype):
    """W**3 - 3*W on (1, oo) had no inverse (Cardano's formula is complex for -2 < A < 2); its real form
    2*cos(acos(A/2)/3) / 2*cosh(acosh(A/2)/3) needs acosh, which the code generator has no rule for.  The
    right inverse is checked against the root computed by numpy's polynomial roots (largest real root)."""
    import numpy as np
    import sympy

    p = ParameterActivationParametrization("W**3 - 3*W", domain=(1, sympy.oo))
    w_true = torch.tensor([1.001, 1.2, 1.7, 1.999, 2.0, 2.001, 2.5, 7.0, 300.0], dtype=torch.float64)
    values = (w_true**3 - 3 * w_true).to(dtype)
    reference = torch.tensor([max(r.real for r in np.roots([1.0, 0.0, -3.0, -float(a)]) if abs(r.imag) < 1e-6)
                              for a in values.double()], dtype=torch.float64)
    w = p.right_inverse(values)
    assert w.dtype == dtype and torch.isfinite(w).all()
    torch.testing.assert_close(w.double(), reference, rtol=50 * torch.finfo(dtype).eps, atol=0)
    torch.testing.assert_close(p(w), values)


@pytest.mark.parametrize("model, kwargs, match", [
    (nn.Sequential(nn.ReLU(), nn.Bilinear(2, 2, 2)), {}, r"no layer of the types Linear, Conv1d, Conv2d, Conv3d.*"
                                                         r"its modules are Bilinear, ReLU, Sequential.*include="),
    (nn.Linear(2, 2), {"include": nn.Conv2d}, r"no layer of the types Conv2d in Linear"),
    (nn.Linear(2, 2), {"tensor_names": ("weights",)}, r"no Linear.* layer of the model has a tensor named 'weights'"),
    (nn.Linear(2, 2), {"tensor_names": ("weight", "bais")}, r"tensor named 'bais'"),
    (nn.Linear(2, 2, bias=False), {"tensor_names": ("bias",)}, r"every \('bias',\) tensor .* is None"),
    (nn.Linear(2, 2), {"include": "Linear"}, r"include='Linear' must be a layer class"),
])
def test_a_model_with_nothing_to_parametrise_is_refused_not_returned_unchanged(model, kwargs, match):
    """parametrize_model returned the model untouched, without a word, when no layer matched `include` (a model
    of Bilinear layers), when a tensor name was misspelt (tensor_names=("weights",)), or when every named tensor
    was None: the caller then trained plain weights believing them parametrised."""
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(DomainError, match=match):
        parametrize_model(model, "exp", signed="difference", **kwargs)
    assert not any(parametrize.is_parametrized(m) for m in model.modules())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_include_may_be_any_iterable_of_layer_types_and_none_tensors_are_skipped():
    net = nn.Sequential(nn.Linear(2, 3, bias=False), nn.Tanh(), nn.Conv1d(1, 1, 3), nn.Linear(3, 1))
    parametrize_model(net, "exp", signed="difference", include={nn.Linear}, tensor_names=("weight", "bias"))
    assert parametrize.is_parametrized(net[0], "weight") and not parametrize.is_parametrized(net[0], "bias")
    assert parametrize.is_parametrized(net[3], "weight") and parametrize.is_parametrized(net[3], "bias")
    assert not parametrize.is_parametrized(net[2])


def test_a_refusal_leaves_the_model_unparametrised_so_the_suggested_retry_works():
    """A refusal at the second layer left the first one parametrised (exp); the retry with signed="difference"
    that the refusal recommends then stacked a two-tensor parametrisation on it: a bare TypeError from torch
    ("forward() missing 1 required positional argument: 'w_minus'")."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 3), nn.ReLU(), nn.Linear(3, 2)).double()
    with torch.no_grad():
        net[0].weight.abs_()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    with pytest.raises(DomainError, match=r"changed nothing: 2\.weight: A = exp\(W\) cannot take"):
        parametrize_model(net, "exp")
    assert not any(parametrize.is_parametrized(m) for m in net.modules())
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    parametrize_model(net, "exp", signed="difference")
    for i in (0, 2):
        assert len(net[i].parametrizations.weight) == 1
        torch.testing.assert_close(net[i].weight, before[f"{i}.weight"], rtol=0, atol=1e-15)


@pytest.mark.parametrize("signed", [None, "difference"])
def test_a_parametrised_tensor_is_not_parametrised_again(signed):
    """A second parametrize_model call stacked a second parametrisation, A = exp(exp(W)) (mirror descent with
    another potential), without a word (or, signed, failed with a bare TypeError)."""
    layer = nn.Linear(3, 2).double()
    with torch.no_grad():
        layer.weight.abs_()
    parametrize_model(layer, "exp")
    with pytest.raises(DomainError, match=r"parametrised already \(by ParameterActivationParametrization\).*"
                                          r"remove_parametrizations"):
        parametrize_model(layer, "exp", signed=signed)
    assert len(layer.parametrizations.weight) == 1


def test_tied_weights_are_refused_and_a_module_used_twice_is_parametrised_once():
    """Registering a parametrisation writes W = g^-1(A) into the tensor it replaces; where another layer holds
    the same tensor (tied weights, such as an embedding and the output layer) that layer silently read W: with
    A = W**3 both Linear layers of a tied pair ended up 0.38 away from their weights.  A module used twice is
    one holder and stays one parametrised module."""
    torch.manual_seed(0)
    a, b = nn.Linear(3, 3), nn.Linear(3, 3)
    b.weight = a.weight
    tied = nn.Sequential(a, nn.ReLU(), b)
    kept = a.weight.detach().clone()
    with pytest.raises(DomainError, match=r"0\.weight is one tensor with 2\.weight \(tied weights\)"):
        parametrize_model(tied, "W**3")
    assert torch.equal(a.weight, kept) and b.weight is a.weight
    embedding, head = nn.Embedding(5, 3), nn.Linear(3, 5, bias=False)
    head.weight = embedding.weight
    with pytest.raises(DomainError, match=r"1\.weight is one tensor with 0\.weight"):
        parametrize_model(nn.Sequential(embedding, head), "W**3")
    shared = nn.Linear(3, 3).double()
    kept = shared.weight.detach().clone()
    net = parametrize_model(nn.Sequential(shared, nn.Tanh(), shared), "W**3")
    assert net[0] is net[2] and len(shared.parametrizations.weight) == 1
    torch.testing.assert_close(shared.weight, kept, rtol=1e-15, atol=1e-16)


@pytest.mark.parametrize("g, dtype, value", [
    ("exp", torch.float16, 65504.0), ("exp", torch.float32, torch.finfo(torch.float32).max),
    ("1/W", torch.float16, 65472.0), ("W**3", torch.float32, torch.finfo(torch.float32).max),
])
def test_a_value_whose_nearest_weight_overflows_in_the_forward_is_refused_not_made_infinite(g, dtype, value):
    """right_inverse checked g(W) = A in float64, where exp(11.09375) = 65535.6 is finite; the layer computes it
    in float16, where it is inf, so a float16 weight of 65504 became an infinite weight (exp and W**3 at float32's
    largest, 1/W near float16's largest where W is subnormal, alike).  Reference: torch.exp / 1/W / W**3 of the
    weight in the weight's own dtype."""
    p = ParameterActivationParametrization(g)
    reference = {"exp": torch.exp, "1/W": torch.reciprocal, "W**3": lambda w: w * w * w}[g]
    inverse = {"exp": torch.log, "1/W": torch.reciprocal, "W**3": lambda a: a.sign() * a.abs() ** (1 / 3)}[g]
    inside = torch.tensor([value / 4, 1.0], dtype=dtype)   # a value well inside the dtype still round-trips
    w = p.right_inverse(inside)
    assert bool(torch.isfinite(reference(w)).all()) and torch.equal(p(w), reference(w))
    edge = torch.tensor([value, 1.0], dtype=dtype)
    nearest = inverse(edge.double()).to(dtype)   # g^-1 of the value, rounded: its forward in the dtype overflows
    assert not bool(torch.isfinite(reference(nearest[:1])).all())
    with pytest.raises(DomainError, match=rf"cannot hold the value\(s\) \[{re.escape(str(value))}\] in {dtype} "
                                          r"\(1 of 2 entries\).*g\(W\) = inf"):
        p.right_inverse(edge)
    layer = nn.Linear(2, 1, bias=False).to(dtype)
    with torch.no_grad():
        layer.weight.copy_(edge[None])
    with pytest.raises(DomainError, match="g\\(W\\) = inf"):
        parametrize_model(layer, g)
    assert not parametrize.is_parametrized(layer)
