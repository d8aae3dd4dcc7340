"""Deep Universal Regressors I and II (numeric/regressor.py)."""

import math

import mpmath
import pytest
import torch

from numeric.regressor import SQUASH_PAIRS, DeepUniversalRegressorI, DeepUniversalRegressorII, squash_pair
from symact.errors import DomainError


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.mark.parametrize("name", sorted(SQUASH_PAIRS))
def test_squash_pairs_are_inverse(name):
    squash, unsquash = squash_pair(name)
    z = torch.linspace(-6, 6, 101, dtype=torch.float64)
    torch.testing.assert_close(unsquash(squash(z)), z, rtol=1e-9, atol=1e-9)


def test_squash_closed_forms():
    z = torch.linspace(-3, 3, 13, dtype=torch.float64)
    s, _ = squash_pair("algebraic")
    torch.testing.assert_close(s(z), z / torch.sqrt(1 + z**2))
    s, _ = squash_pair("softsign")
    torch.testing.assert_close(s(z), torch.nn.functional.softsign(z))
    # the algebraic pair still inverts far out in float64, where logit(sigmoid(z)) is already infinite
    s, u = squash_pair("algebraic")
    big = torch.tensor([1e3], dtype=torch.float64)
    assert abs(float(u(s(big))) - 1e3) < 1e-6 * 1e3
    s, u = squash_pair("sigmoid")
    assert math.isinf(float(u(s(big))))
    with pytest.raises(DomainError, match="squash"):
        squash_pair("relu")


def test_dur2_formula_and_exact_extrapolation_of_2x():
    # With read-outs (x, log x): u = 1 + log(x)/log(2) and all terms at softsign(0) = 0 give y = 2x exactly
    # (softsign: 1 - s = 1/(1 + z) keeps its digits, so the squash/unsquash round trip is exact to ~1e-15).
    model = DeepUniversalRegressorII(2, k=3, squash="softsign").double()
    with torch.no_grad():
        model.readout_u.weight.copy_(torch.tensor([[0.0, 1 / math.log(2)]], dtype=torch.float64))
        model.readout_u.bias.fill_(1.0)
        model.readout_terms.weight.zero_()
        model.readout_terms.bias.zero_()
    x = torch.logspace(0, 3, 50, dtype=torch.float64)
    torch.testing.assert_close(model(torch.stack([x, x.log()], -1)), 2 * x, rtol=1e-12, atol=0)


def test_dur2_matches_hand_computation():
    torch.manual_seed(0)
    model = DeepUniversalRegressorII(3, k=4, width=5, squash="sigmoid").double()
    x = torch.randn(7, 3, dtype=torch.float64)
    a0 = x @ model.readout_u.weight.T + model.readout_u.bias
    u = torch.logit(torch.sigmoid(a0).mean(-1))
    terms = torch.sigmoid(x @ model.readout_terms.weight.T + model.readout_terms.bias)
    expected = 2**u + sum(terms[:, i - 1] * 2 ** (u - i) for i in range(1, 5))
    torch.testing.assert_close(model(x), expected)
    torch.testing.assert_close(model.exponent(x), u)


def test_dur1_matches_hand_computation():
    torch.manual_seed(1)
    model = DeepUniversalRegressorI(2, width=3, squash="tanh").double()
    x = torch.randn(5, 2, dtype=torch.float64)
    expected = torch.atanh(torch.tanh(x @ model.readout.weight.T + model.readout.bias).mean(-1))
    torch.testing.assert_close(model(x), expected)


def test_order_penalty_value():
    model = DeepUniversalRegressorII(2, k=3).double()
    w = model.readout_terms.weight.detach()
    expected = 0.5 * sum(4.0**i * float((w[i - 1] ** 2).sum()) for i in (1, 2, 3))
    assert math.isclose(float(model.order_penalty(0.5).detach()), expected, rel_tol=1e-12)
    assert float(DeepUniversalRegressorII(2, k=0).order_penalty()) == 0.0


def test_sign_head_fits_negative_targets():
    torch.manual_seed(0)
    model = DeepUniversalRegressorII(2, k=2, sign_head=True, sign_sharpness=20.0).double()
    x = torch.linspace(1, 10, 50, dtype=torch.float64)
    feats = torch.stack([x, x.log()], -1)
    target = torch.where(x < 5, -3 * x, 3 * x)
    assert (model(feats) > 0).all() or (model(feats) < 0).all()
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    for _ in range(800):
        opt.zero_grad()
        loss = ((model(feats) - target) / target.abs()).pow(2).mean()
        loss.backward()
        opt.step()
    pred = model(feats).detach()
    assert (torch.sign(pred) == torch.sign(target)).float().mean() > 0.9
    assert model.readout_sign is not None and "sign_head=True" in repr(model)


@pytest.mark.parametrize("cls", [DeepUniversalRegressorI, DeepUniversalRegressorII])
def test_zero_width_is_refused_not_nan(cls):
    # nn.Linear(in, 0) is legal and the mean over no A_0 units is NaN for every input.
    with pytest.raises(DomainError, match="width"):
        cls(2, width=0)
    with pytest.raises(DomainError, match="k="):
        DeepUniversalRegressorII(2, k=2.5)


@pytest.mark.parametrize("cls", [DeepUniversalRegressorI, DeepUniversalRegressorII])
@pytest.mark.parametrize("in_features", [0, -1, 1.5, True])
def test_in_features_below_one_is_refused_not_a_constant_model(cls, in_features):
    # nn.Linear(0, width) is legal: the readout is its bias alone and the model ignores x.
    with pytest.raises(DomainError, match="in_features"):
        cls(in_features)
    model = cls(3)
    x = torch.randn(5, 3)
    assert not torch.equal(model(x), model(torch.zeros_like(x)))  # a real readout depends on x


def test_numpy_integer_sizes_are_accepted_and_bools_refused():
    """k=np.int64(3) (from a numpy grid of k values) was refused as 'k=np.int64(3) must be an integer', and
    k=True failed inside torch with a raw TypeError.  The model built from numpy integers is the one built
    from Python ints (same parameters for the same seed, same output)."""
    np = pytest.importorskip("numpy")
    torch.manual_seed(0)
    plain = DeepUniversalRegressorII(2, k=3, width=2).double()
    torch.manual_seed(0)
    from_numpy = DeepUniversalRegressorII(2, k=np.int64(3), width=np.int32(2)).double()
    assert from_numpy.k == 3 and type(from_numpy.k) is int
    x = torch.randn(5, 2, dtype=torch.float64)
    torch.testing.assert_close(from_numpy(x), plain(x), rtol=0, atol=0)
    assert DeepUniversalRegressorI(2, width=np.int64(3)).readout.out_features == 3
    with pytest.raises(DomainError, match="k="):
        DeepUniversalRegressorII(2, k=True)
    with pytest.raises(DomainError, match="width"):
        DeepUniversalRegressorI(2, width=True)


@pytest.mark.parametrize("sharpness", [0.0, -1.0, float("nan"), float("inf"), "2", True])
def test_degenerate_sign_sharpness_is_refused(sharpness):
    """sign_sharpness=0 gave y = tanh(0) * |y| = 0 for every input (and no gradient), nan gave nan:
    both were accepted silently; "2" raised math's bare TypeError and True was read as 1.0."""
    with pytest.raises(DomainError, match="sign_sharpness"):
        DeepUniversalRegressorII(2, k=2, sign_head=True, sign_sharpness=sharpness)


@pytest.mark.parametrize("kwargs, match", [
    ({"strength": -1.0}, r"strength=-1.0 must be a finite number >= 0"),
    ({"strength": float("nan")}, r"strength=nan must be a finite number >= 0"),
    ({"growth": -2.0}, r"growth=-2.0 must be a finite number >= 0"),
    ({"growth": float("inf")}, r"growth=inf must be a finite number >= 0"),
    ({"strength": True}, r"strength=True"),
])
def test_order_penalty_refuses_strengths_and_growths_that_make_it_a_reward(kwargs, match):
    """order_penalty(strength=-1) was -34.9 for a k=3 model (and growth=-2 made odd terms negative): added to
    the loss it rewards growing the refinement weights without bound."""
    model = DeepUniversalRegressorII(2, k=3).double()
    with pytest.raises(DomainError, match=match):
        model.order_penalty(**kwargs)
    assert float(model.order_penalty(0.0).detach()) == 0.0  # strength 0 switches the penalty off


def test_the_extrapolation_report_median_is_the_mean_of_the_two_middle_values():
    # torch.median gives the lower middle value (element 199 of 400); the statistics median is the mean
    from analysis.experiments.regressor import _median

    assert _median(torch.tensor([4.0, 1.0, 3.0, 2.0])) == 2.5
    assert _median(torch.tensor([3.0, 1.0, 2.0])) == 2.0
    assert _median(torch.tensor([1.0, 2.0, math.inf, math.inf])) == math.inf
    values = torch.rand(400, dtype=torch.float64)
    assert _median(values) == pytest.approx(float(torch.quantile(values, 0.5)), rel=0, abs=1e-15)


_MP_PAIRS = {   # (squash, unsquash) in mpmath: the reference
    "sigmoid": (lambda z: 1 / (1 + mpmath.exp(-z)), lambda s: mpmath.log(s / (1 - s))),
    "tanh": (mpmath.tanh, mpmath.atanh),
    "algebraic": (lambda z: z / mpmath.sqrt(1 + z * z), lambda s: s / mpmath.sqrt(1 - s * s)),
    "softsign": (lambda z: z / (1 + abs(z)), lambda s: s / (1 - abs(s))),
}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("name", sorted(SQUASH_PAIRS))
def test_saturated_units_keep_every_digit_of_u(name, dtype):
    """u = unsquash(mean squash(A_0)) rounded s to +-1 once the units saturated: DUR-II's y = 2**u was inf from
    A_0 = 16.6 (sigmoid) and 9 (tanh) in float32 (y = 2**20 is representable) and from 37 (sigmoid) in float64,
    and 3.9% (sigmoid, A_0 = 16) or 3.4% (algebraic, A_0 = 100) off before that.  Reference: the same mean of
    the same A_0 in mpmath at 200 digits."""
    rows = [[12.0, 15.0, 18.0], [30.0, 35.0, 40.0], [60.0, 70.0, 80.0], [-3.0, 0.5, 2.0], [-40.0, -35.0, -30.0],
            [-30.0, 50.0, 60.0]]
    dur1 = DeepUniversalRegressorI(3, width=3, squash=name).to(dtype)
    dur2 = DeepUniversalRegressorII(3, k=0, width=3, squash=name).to(dtype)
    with torch.no_grad():
        for readout in (dur1.readout, dur2.readout_u):   # A_0 = x exactly
            readout.weight.copy_(torch.eye(3, dtype=dtype))
            readout.bias.zero_()
    x = torch.tensor(rows, dtype=dtype)
    squash, unsquash = _MP_PAIRS[name]
    eps = torch.finfo(dtype).eps
    with mpmath.workdps(200):   # 1 - tanh(80) = 4e-70 must be resolved
        expected = [unsquash(sum(squash(mpmath.mpf(a)) for a in row) / 3) for row in rows]
        u, y = dur1(x).tolist(), dur2(x).tolist()
        for row, ref, got_u, got_y in zip(rows, expected, u, y):
            assert abs(got_u - ref) <= 8 * eps * (1 + abs(ref)), (row, got_u, float(ref))
            assert abs(got_y / mpmath.power(2, ref) - 1) <= 8 * eps * (1 + abs(ref)), (row, got_y, float(ref))


@pytest.mark.parametrize("name", sorted(SQUASH_PAIRS))
def test_one_saturated_unit_trains_with_the_identity_gradient(name):
    """With one A_0 unit, u = unsquash(squash(A_0)) = A_0, so du/dA_0 = 1 however large A_0 is; in float32 the
    composition gave NaN (sigmoid from A_0 = 17, tanh from 9: inf * 0) or 0 there, so training stopped."""
    model = DeepUniversalRegressorI(1, width=1, squash=name)
    with torch.no_grad():
        model.readout.weight.fill_(1.0)
        model.readout.bias.zero_()
    a = torch.tensor([[-60.0], [-20.0], [-9.5], [9.5], [20.0], [60.0]], requires_grad=True)
    u = model(a)
    (grad,) = torch.autograd.grad(u.sum(), a)
    torch.testing.assert_close(u.detach(), a.detach()[:, 0], rtol=4 * torch.finfo(torch.float32).eps, atol=0)
    torch.testing.assert_close(grad, torch.ones_like(a), rtol=1e-5, atol=0)


def test_dur1_with_one_sigmoid_unit_is_affine_in_its_readout_far_out():
    """logit(sigmoid(a)) = a, so DUR-I with one unit, weight 2 and bias 0 is y = 2x everywhere; in float64 it
    was inf from x = 18.4 (sigmoid(2x) rounds to 1), and the y = 2x extrapolation experiment reported DUR-I's
    errors on [10, 1000] as inf."""
    model = DeepUniversalRegressorI(1, width=1, squash="sigmoid").double()
    with torch.no_grad():
        model.readout.weight.fill_(2.0)
        model.readout.bias.zero_()
    x = torch.logspace(0, 3, 40, dtype=torch.float64)
    torch.testing.assert_close(model(x[:, None]), 2 * x, rtol=4 * torch.finfo(torch.float64).eps, atol=0)
