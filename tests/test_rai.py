"""numeric.rai: relaxed activation identity, checked against hand-built references."""

import math

import pytest
import torch

from numeric.datasets import moons
from numeric.rai import RAI, PenaltySchedule, split_stages
from numeric.train import build_mlp, train
from symact.errors import DomainError, SymactError


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _seed_net(hidden_layers=100, width=100, dtype=torch.float64, seed=0):
    torch.manual_seed(seed)
    return build_mlp(2, width, hidden_layers, 1, "sigmoid", output_activation="sigmoid", dtype=dtype)


def _seed_data(dtype=torch.float64):
    x, y, _, _ = moons(100, noise=0.1, seed=0).torch(dtype)
    return x, y


def test_rai_loss_equals_plain_loss_at_initialisation_on_the_seed_network():
    # 101 linear layers of width 100, sigmoids everywhere, moons n=100 noise 0.1.
    model = _seed_net()
    x, y = _seed_data()
    with torch.no_grad():
        plain = torch.nn.functional.binary_cross_entropy(model(x)[:, 0], y.double())
        rai = RAI(model, x, loss="bce_prob", penalty=10.0)
        parts = rai.loss_parts(torch.arange(100), x, y)
    assert len(rai.aux) == 100 and rai.aux[0].shape == (100, 100)
    assert float(parts.consistency) == 0.0
    assert abs(float(parts.total) - float(plain)) <= 1e-14


def test_consistency_matches_a_layer_by_layer_reference_after_perturbation():
    torch.manual_seed(1)
    model = build_mlp(3, 4, 3, 2, "tanh", dtype=torch.float64)
    x = torch.randn(6, 3, dtype=torch.float64)
    y = torch.tensor([0, 1, 1, 0, 1, 0])
    rai = RAI(model, x, loss="cross_entropy", penalty=0.5)
    with torch.no_grad():
        for a in rai.aux:
            a.add_(0.1 * torch.randn_like(a))
    linears = [m for m in model if isinstance(m, torch.nn.Linear)]
    z = [x] + [a.detach() for a in rai.aux]
    expected_consistency = sum(
        ((z[t + 1] - torch.tanh(linears[t](z[t]))) ** 2).sum(1).mean() for t in range(3)
    )
    expected_output = torch.nn.functional.cross_entropy(linears[3](z[3]), y)
    idx = torch.tensor([4, 1, 2])  # a mini-batch indexes the same rows of every auxiliary tensor
    batch_consistency = sum(
        ((z[t + 1][idx] - torch.tanh(linears[t](z[t][idx]))) ** 2).sum(1).mean() for t in range(3)
    )
    with torch.no_grad():
        full = rai.loss_parts(torch.arange(6), x, y)
        batch = rai.loss_parts(idx, x[idx], y[idx])
    assert float(full.consistency) == pytest.approx(float(expected_consistency.detach()), rel=1e-12)
    assert float(full.output) == pytest.approx(float(expected_output.detach()), rel=1e-12)
    assert float(full.total) == pytest.approx(float((expected_output + 0.5 * expected_consistency).detach()), rel=1e-12)
    assert float(batch.consistency) == pytest.approx(float(batch_consistency.detach()), rel=1e-12)
    # Evaluation is the true network, untouched by the auxiliary tensors.
    assert torch.equal(rai(x), model(x))


def test_auxiliary_tensors_are_trainable_parameters_with_gradients():
    torch.manual_seed(2)
    model = build_mlp(2, 3, 2, 1, "sigmoid", output_activation="sigmoid")
    x = torch.randn(5, 2)
    y = torch.tensor([0, 1, 0, 1, 1])
    rai = RAI(model, x)
    names = {n for n, _ in rai.named_parameters()}
    assert {"aux.0", "aux.1"} <= names
    rai.loss_parts(torch.arange(5), x, y).total.backward()
    assert rai.aux[1].grad is not None and rai.aux[1].grad.abs().sum() > 0


def test_penalty_schedule_increases_geometrically_up_to_its_cap():
    s = PenaltySchedule(0.5, growth=2.0, every=10, maximum=3.0)
    assert [s.weight(k) for k in (0, 9, 10, 25, 1000)] == [0.5, 0.5, 1.0, 2.0, 3.0]
    assert PenaltySchedule.from_spec(2).weight(100) == 2.0
    assert PenaltySchedule.from_spec({"start": 1, "growth": 1.5}).weight(2) == 2.25
    with pytest.raises(DomainError):
        PenaltySchedule(1.0, growth=0.5)


def test_only_sequential_models_with_two_linear_layers_are_accepted():
    with pytest.raises(SymactError, match="nn.Sequential"):
        RAI(torch.nn.Linear(2, 2), torch.zeros(1, 2))
    with pytest.raises(SymactError, match="at least two"):
        split_stages(torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Tanh()))
    nested = torch.nn.Sequential(torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.ReLU()), torch.nn.Linear(3, 1))
    assert [len(s) for s in split_stages(nested)] == [2, 1]


def test_short_seed_setting_plain_stays_at_ln2_and_rai_objective_falls_below_it():
    """Shorter version of the seed claims on the seed's network (101 sigmoid layers, Rprop lr 0.1).

    The long version (true-network loss after 2000 steps) is test_seed_claims_long (slow) and
    the full suite; here: plain training of the 101-layer network stays within 1e-3 of ln 2 for
    20 steps, and on a 21-layer version the RAI objective (relaxed network) equals the plain
    loss at step 0 and falls below 0.3 within 60 steps.
    """
    torch.set_num_threads(1)
    x, y = _seed_data(torch.float32)
    plain = train(_seed_net(dtype=torch.float32), (x, y), loss="bce_prob", optimizer="rprop", lr=0.1, steps=20)
    assert abs(plain.train_loss[-1] - math.log(2)) <= 1e-3
    assert min(plain.train_loss) >= math.log(2) - 1e-3
    model = _seed_net(hidden_layers=20, dtype=torch.float32)
    rai = RAI(model, x, loss="bce_prob", penalty=1.0)
    res = train(rai, (x, y), loss="bce_prob", optimizer="rprop", lr=0.1, steps=60, eval_every=10,
                objective=rai.objective)
    assert res.objective[0] == pytest.approx(res.train_loss[0], rel=1e-6)  # equal at initialisation
    assert min(res.objective) < 0.3


@pytest.mark.slow
def test_seed_claims_long():
    """The seed's claims at full length, as the full suite runs them (measured, not assumed)."""
    from analysis.experiments.rai import RAI_FULL_STEPS, rai_train

    plain = rai_train({"arm": "plain", "steps": RAI_FULL_STEPS})
    (claim,) = plain["claims"]
    assert claim.passed, claim  # plain backprop stays at ln 2
    rai = rai_train({"arm": "rai", "steps": RAI_FULL_STEPS})
    (claim,) = rai["claims"]
    assert claim.passed == (rai["final_train_loss"] < 0.05)
    if not claim.passed:
        pytest.xfail(f"seed claim not reproduced: RAI true-network loss {rai['final_train_loss']:.4f} "
                     f"after {RAI_FULL_STEPS} Rprop steps (relaxed objective {rai['curve']['objective'][-1]:.2e})")
