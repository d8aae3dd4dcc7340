"""Deep Universal Regressors I and II (numeric/regressor.py)."""

import math

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
