"""numeric.rai: relaxed activation identity, checked against hand-built references."""

import math
import re

import pytest
import torch

from numeric.datasets import moons
import torch.nn.functional as F

from numeric.rai import PROTOCOLS, RAI, PenaltySchedule, split_stages
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
    # the defaults relax every nn.Linear output, the output layer's too (the seed's protocol)
    assert len(rai.aux) == 101 and rai.aux[0].shape == (100, 100) and rai.aux[-1].shape == (100, 1)
    assert float(parts.consistency) == 0.0
    assert abs(float(parts.total) - float(plain)) <= 1e-14


def test_consistency_matches_a_layer_by_layer_reference_after_perturbation():
    torch.manual_seed(1)
    model = build_mlp(3, 4, 3, 2, "tanh", dtype=torch.float64)
    x = torch.randn(6, 3, dtype=torch.float64)
    y = torch.tensor([0, 1, 1, 0, 1, 0])
    rai = RAI(model, x, loss="cross_entropy", penalty=0.5, **PROTOCOLS["post_activation"])
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
    assert {f"aux.{k}" for k in range(len(rai.aux))} <= names and len(rai.aux) == 3
    rai.loss_parts(torch.arange(5), x, y).total.backward()
    # at initialisation every consistency residual is 0, so only the output loss moves
    # anything: it reaches the last auxiliary (the output layer's) and no earlier one
    assert rai.aux[-1].grad is not None and rai.aux[-1].grad.abs().sum() > 0
    assert all(float(a.grad.abs().sum()) == 0.0 for a in rai.aux[:-1])


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


MODES = [dict(aux_at=a, relax_output=r, reduction=c)
         for a in ("activation", "pre_activation") for r in (False, True) for c in ("per_example", "elementwise_mean")]


@pytest.mark.parametrize("mode", MODES, ids=lambda m: "-".join(str(v) for v in m.values()))
def test_every_mode_equals_the_plain_loss_at_initialisation_on_the_seed_network(mode):
    model = _seed_net()
    x, y = _seed_data()
    with torch.no_grad():
        plain = F.binary_cross_entropy(model(x)[:, 0], y.double())  # torch built-in on the true network
        parts = RAI(model, x, loss="bce_prob", penalty=3.0, **mode).loss_parts(torch.arange(100), x, y)
    assert float(parts.consistency) == 0.0
    assert abs(float(parts.total) - float(plain)) <= 1e-14


def test_seed_protocol_relaxes_every_linear_output_including_the_output_layer():
    model = _seed_net()
    x, _ = _seed_data()
    rai = RAI.seed_protocol(model, x)
    assert (rai.aux_at, rai.relax_output, rai.reduction) == ("pre_activation", True, "elementwise_mean")
    assert PROTOCOLS["seed"] == {"aux_at": "pre_activation", "relax_output": True, "reduction": "elementwise_mean"}
    assert [tuple(a.shape) for a in rai.aux] == [(100, 100)] * 100 + [(100, 1)]
    # Each auxiliary starts at its nn.Linear's output in the forward pass (a pre-activation, not a sigmoid value).
    linears = [m for m in model if isinstance(m, torch.nn.Linear)]
    with torch.no_grad():
        a0 = x @ linears[0].weight.T + linears[0].bias
        a1 = torch.sigmoid(a0) @ linears[1].weight.T + linears[1].bias
    assert torch.allclose(rai.aux[0], a0, rtol=0, atol=1e-14) and torch.allclose(rai.aux[1], a1, rtol=0, atol=1e-14)
    assert rai.aux[0].min() < 0  # outside (0, 1): really pre-activation


def _hand_pre_activation_loss(linears, act, aux, x, y, index, relax_output, reduction):
    """The pre-activation RAI objective written out with torch ops (weights used directly, no nn.Linear call)."""
    def lin(layer, h):
        return h @ layer.weight.T + layer.bias

    def reduce(d):
        return (d ** 2).mean() if reduction == "elementwise_mean" else (d ** 2).sum(1).mean()

    z = [a[index] for a in aux]
    consistency = reduce(z[0] - lin(linears[0], x[index]))
    for k in range(1, len(z)):
        consistency = consistency + reduce(z[k] - lin(linears[k], act(z[k - 1])))
    last = z[-1] if relax_output else lin(linears[-1], act(z[-1]))
    output = F.binary_cross_entropy(torch.sigmoid(last)[:, 0], y[index].double())
    return output, consistency


@pytest.mark.parametrize("relax_output", [False, True])
@pytest.mark.parametrize("reduction", ["per_example", "elementwise_mean"])
def test_pre_activation_objective_and_gradients_match_a_hand_built_reference(relax_output, reduction):
    torch.manual_seed(3)
    model = build_mlp(3, 4, 3, 1, "tanh", output_activation="sigmoid", dtype=torch.float64)
    linears = [m for m in model if isinstance(m, torch.nn.Linear)]
    x = torch.randn(7, 3, dtype=torch.float64)
    y = torch.tensor([0, 1, 1, 0, 1, 0, 1])
    rai = RAI(model, x, loss="bce_prob", penalty=0.7, aux_at="pre_activation", relax_output=relax_output,
              reduction=reduction)
    assert len(rai.aux) == (4 if relax_output else 3)
    with torch.no_grad():
        for a in rai.aux:
            a.add_(0.2 * torch.randn_like(a))
    for index in (torch.arange(7), torch.tensor([5, 0, 3])):  # full batch and a mini-batch of rows
        rai.zero_grad()
        parts = rai.loss_parts(index, x[index], y[index])
        parts.total.backward()
        got = [p.grad.clone() for p in rai.parameters()]
        rai.zero_grad()
        output, consistency = _hand_pre_activation_loss(linears, torch.tanh, rai.aux, x, y, index, relax_output,
                                                        reduction)
        (output + 0.7 * consistency).backward()
        want = [p.grad.clone() for p in rai.parameters()]
        assert float(parts.output.detach()) == pytest.approx(float(output.detach()), rel=1e-12)
        assert float(parts.consistency.detach()) == pytest.approx(float(consistency.detach()), rel=1e-12)
        # Neither side of a consistency term is detached: all gradients agree with the reference's.
        for g, w in zip(got, want):
            assert torch.allclose(g, w, rtol=1e-10, atol=1e-13)


def test_relaxed_output_loss_is_bce_of_the_sigmoid_of_the_last_auxiliary():
    model = _seed_net(hidden_layers=3, width=5)
    x, y = _seed_data()
    rai = RAI.seed_protocol(model, x)
    with torch.no_grad():
        rai.aux[-1].copy_(torch.linspace(-3, 3, 100, dtype=torch.float64)[:, None])
        parts = rai.loss_parts(torch.arange(100), x, y)
    assert float(parts.output) == pytest.approx(
        float(F.binary_cross_entropy(torch.sigmoid(rai.aux[-1][:, 0].detach()), y.double())), rel=1e-13)
    # Post-activation mode with the output relaxed: the last auxiliary IS the output probability.
    post = RAI(model, x, aux_at="activation", relax_output=True)
    with torch.no_grad():
        post.aux[-1].copy_(torch.full((100, 1), 0.25, dtype=torch.float64))
        out = post.loss_parts(torch.arange(100), x, y).output
    assert float(out) == pytest.approx(-(math.log(0.25) + math.log(0.75)) / 2, rel=1e-13)  # half the labels are 1


def test_unknown_modes_are_rejected_with_the_choices():
    net = _seed_net(hidden_layers=1, width=2)
    with pytest.raises(SymactError, match="pre_activation"):
        RAI(net, torch.zeros(3, 2, dtype=torch.float64), aux_at="linear")
    with pytest.raises(SymactError, match="elementwise_mean"):
        RAI(net, torch.zeros(3, 2, dtype=torch.float64), reduction="sum")


def _short_seed_claims(hidden_layers: int, width: int) -> None:
    """Plain training stays within 1e-3 of ln 2 for 20 steps; with the seed protocol the RAI objective
    equals the plain loss at step 0 and the relaxed objective is below 0.05 after 200 steps (claim (a) at
    a shorter length), while the true network is measured separately and is not asserted to be below 0.05.
    Sigmoid MLP with a sigmoid output, moons n=100, Rprop lr 0.1, float32, as the seed ran it."""
    x, y = _seed_data(torch.float32)
    net = _seed_net(hidden_layers=hidden_layers, width=width, dtype=torch.float32)
    plain = train(net, (x, y), loss="bce_prob", optimizer="rprop", lr=0.1, steps=20)
    assert abs(plain.train_loss[-1] - math.log(2)) <= 1e-3
    assert min(plain.train_loss) >= math.log(2) - 1e-3
    rai = RAI.seed_protocol(_seed_net(hidden_layers=hidden_layers, width=width, dtype=torch.float32), x)
    res = train(rai, (x, y), loss="bce_prob", optimizer="rprop", lr=0.1, steps=200, eval_every=100,
                objective=rai.objective)
    assert res.objective[0] == pytest.approx(res.train_loss[0], rel=1e-6)  # equal at initialisation
    assert res.objective[-1] < 0.05


def test_short_seed_protocol_on_a_21_layer_sigmoid_net_relaxed_objective_falls_below_005_plain_stays_at_ln2():
    """The short seed claims on the seed's network at a fifth of its depth (21 linear layers of width 32):
    plain stays within 1e-3 of ln 2 there too (final objective 0.020 at 200 steps; about 2 s).  The same code
    as the 101-layer version below (RAI.seed_protocol, Rprop through train, the relaxed objective)."""
    _short_seed_claims(hidden_layers=20, width=32)


@pytest.mark.slow
def test_short_seed_protocol_relaxed_objective_falls_below_005_while_plain_stays_at_ln2():
    """Shorter version of the seed claims on the seed's network (101 sigmoid layers, Rprop lr 0.1, float32).

    The long version (10000 steps, as the notebook ran) is test_seed_claims_long (slow) and the full
    suite.  Slow (17 s in the parallel run): covered in the default run by
    test_short_seed_protocol_on_a_21_layer_sigmoid_net_relaxed_objective_falls_below_005_plain_stays_at_ln2,
    the same claims and code on a 21-layer net.
    """
    _short_seed_claims(hidden_layers=100, width=100)


@pytest.mark.slow
def test_seed_claims_long():
    """The seed's claims at full length with the seed protocol, as the full suite runs them (measured, not assumed)."""
    from analysis.experiments.rai import RAI_FULL_STEPS, rai_train

    plain = rai_train({"arm": "plain", "steps": RAI_FULL_STEPS})
    (claim,) = plain["claims"]
    assert claim.passed, claim  # plain backprop stays at ln 2
    rai = rai_train({"arm": "rai", "protocol": "seed", "steps": RAI_FULL_STEPS})
    relaxed, true = rai["claims"]
    assert relaxed.key == "rai_relaxed_below" and true.key == "rai_train_below"
    # (a) the number the notebook printed: the relaxed objective (0.0003 published)
    assert relaxed.passed and rai["relaxed_objective"] < 0.05, relaxed
    # (b) the true network, which the notebook never printed
    assert true.passed == (rai["final_train_loss"] < 0.05)
    if not true.passed:
        pytest.xfail(f"seed claim (b) not reproduced: the TRUE network's loss is {rai['final_train_loss']:.4f} "
                     f"(accuracy {rai['final_train_accuracy']:.2f}) after {RAI_FULL_STEPS} Rprop steps, while the "
                     f"relaxed objective is {rai['relaxed_objective']:.2e}")


def test_report_states_the_relaxed_and_the_true_network_claims_separately(tmp_path):
    from analysis.experiments.rai import report_section, rai_train
    from analysis.records import Job, Record

    spec = {"arm": "rai", "protocol": "seed", "hidden_layers": 3, "width": 8, "steps": 30, "eval_every": 10}
    result = rai_train(spec)
    relaxed, true = result["claims"]
    # Each claim is judged on its own quantity: the optimised objective vs the network evaluated without auxiliaries.
    assert relaxed.measured == result["curve"]["objective"][-1] and relaxed.passed == (relaxed.measured < 0.05)
    assert true.measured == result["curve"]["train_loss"][-1] and true.passed == (true.measured < 0.05)
    # A record where (a) held and (b) did not: the report says so in words, with both numbers.
    held = relaxed.__class__(relaxed.prediction, 0.00025, relaxed.tolerance, True, "", relaxed.key)
    failed = true.__class__(true.prediction, 0.074, true.tolerance, False, "", true.key)
    rec = Record(Job("rai_train", spec), "ok", {**result, "final_train_accuracy": 0.96}, (held, failed))
    md = report_section([rec], str(tmp_path)).markdown
    # both numbers, each as a number that reads back as the measured value (never rounded onto a bound)
    relaxed_text = re.search(r"relaxed objective below 0\.05: \*\*held\*\* \(([^;]+);", md)
    true_text = re.search(r"true network's training loss below 0\.05: \*\*did not hold\*\* \(([^,]+), accuracy 0\.96\)", md)
    assert relaxed_text and float(relaxed_text.group(1)) == 0.00025, md
    assert true_text and float(true_text.group(1)) == 0.074, md


@pytest.mark.parametrize("protocol", ["seed", "post_activation"])
def test_consistency_weight_changes_no_gradient_sign_outside_the_last_auxiliary(protocol):
    # The report's statement about Rprop (sign-based): a positive weight scales every consistency term, so only
    # the tensor that also feeds the output loss (the last auxiliary) can see a different gradient sign.
    torch.manual_seed(4)
    model = build_mlp(2, 5, 4, 1, "sigmoid", output_activation="sigmoid", dtype=torch.float64)
    x = torch.randn(9, 2, dtype=torch.float64)
    y = torch.tensor([0, 1, 1, 0, 1, 0, 1, 1, 0])
    signs = []
    for weight in (1e-4, 1e4):
        rai = RAI(model, x, penalty=weight, **PROTOCOLS[protocol])
        with torch.no_grad():
            torch.manual_seed(5)
            for a in rai.aux:
                a.add_(0.3 * torch.randn_like(a))
        rai.zero_grad()
        rai.loss_parts(torch.arange(9), x, y).total.backward()
        signs.append({n: torch.sign(p.grad) for n, p in rai.named_parameters()})
    last = f"aux.{len(rai.aux) - 1}"
    assert all(torch.equal(signs[0][n], signs[1][n]) for n in signs[0] if n != last)
    assert not torch.equal(signs[0][last], signs[1][last])  # here the weight does matter


def test_last_relaxed_objective_is_the_objective_at_the_final_parameters():
    """rai_train reports result.objective[-1] as "the relaxed objective"; it must be the RAI objective of the
    final network and auxiliaries (recomputed here with loss_parts), not the value before the last update."""
    torch.manual_seed(0)
    model = build_mlp(2, 6, 2, 1, "sigmoid", output_activation="sigmoid", dtype=torch.float64)
    x, y = _seed_data()
    rai = RAI(model, x, loss="bce_prob", penalty=PenaltySchedule(1.0, growth=2.0, every=2))
    res = train(rai, (x, y), loss="bce_prob", optimizer="rprop", lr=0.1, steps=5, eval_every=2,
                objective=rai.objective)
    with torch.no_grad():
        final = rai.loss_parts(torch.arange(len(x)), x, y, step=5).total
    assert res.steps[-1] == 5
    assert res.objective[-1] == pytest.approx(float(final), rel=1e-12)
    assert res.objective[-1] != pytest.approx(res.objective[-2], rel=1e-6)  # the steps moved it


def test_penalty_schedule_cap_holds_after_growth_would_overflow_a_float():
    # 10 ** 400 is not a float; the weight is still capped at its maximum (and 0 stays 0)
    capped = PenaltySchedule(1.0, growth=10.0, every=1, maximum=1e6)
    assert capped.weight(400) == 1e6
    assert capped.weight(3) == 1e3
    assert PenaltySchedule(0.0, growth=10.0, maximum=5.0).weight(400) == 0.0


@pytest.mark.parametrize("fields", [
    {"start": float("nan")}, {"start": float("inf")}, {"start": 1.0, "maximum": float("nan")},
    {"start": 1.0, "growth": float("nan")}, {"start": "1"}, {"start": 1.0, "every": 2.5},
    {"start": 1.0, "every": 0},
])
def test_penalty_schedule_refuses_nan_and_non_numbers_naming_the_fields(fields):
    with pytest.raises(DomainError, match="finite numbers start >= 0"):
        PenaltySchedule(**fields)


def test_penalty_spec_refuses_bools_and_unknown_fields():
    with pytest.raises(SymactError, match="number, a dict"):
        PenaltySchedule.from_spec(True)
    with pytest.raises(DomainError, match="growht"):
        PenaltySchedule.from_spec({"start": 1.0, "growht": 2.0})


def test_penalty_spec_accepts_numpy_numbers():
    """from_spec(np.int64(2)) (a weight read from a config array) was refused as 'not a number'."""
    import numpy as np

    assert PenaltySchedule.from_spec(np.int64(2)) == PenaltySchedule(2.0)
    assert PenaltySchedule.from_spec(np.float32(0.5)) == PenaltySchedule(0.5)
    with pytest.raises(SymactError, match="number, a dict"):
        PenaltySchedule.from_spec(np.bool_(True))


def _small_net():
    torch.manual_seed(0)
    return build_mlp(2, 4, 1, 1, "sigmoid", output_activation="sigmoid")


def test_indices_outside_the_auxiliaries_are_refused_not_wrapped():
    """A negative index picked another example's auxiliaries (python-style wrap-around) and
    training on more rows than x_train raised torch's bare IndexError."""
    x = torch.randn(6, 2)
    y = torch.tensor([0, 1, 0, 1, 1, 0])
    rai = RAI(_small_net(), x)
    wrapped, direct = rai.aux[0][torch.tensor([-1])], rai.aux[0][torch.tensor([5])]
    assert torch.equal(wrapped, direct)  # torch's own indexing: -1 is example 5
    with pytest.raises(DomainError, match=r"indices -1\.\.0 outside 0\.\.5"):
        rai.loss_parts(torch.tensor([0, -1]), x[:2], y[:2])
    with pytest.raises(DomainError, match=r"auxiliaries for the 6 examples of its x_train"):
        train(rai, (torch.randn(10, 2), torch.tensor([0, 1] * 5)), objective=rai.objective, loss="bce_prob",
              steps=2, batch_size=4)


def test_loss_parts_names_a_wrong_dtype_an_empty_batch_and_an_infinite_weight():
    """loss_parts passed an x of another dtype to torch ("mat1 and mat2 must have the same dtype"), returned NaN
    for an empty batch, and a growing weight with no maximum reached inf: the total inf or NaN, without a word."""
    x = torch.randn(6, 2)
    y = torch.tensor([0, 1, 0, 1, 1, 0]).float()
    index = torch.arange(6)
    rai = RAI(_small_net(), x, loss="bce_logits")
    assert math.isfinite(rai.loss_parts(index, x, y).total.detach().item())
    with pytest.raises(DomainError, match=r"x has dtype torch.float64 but the model's parameters are torch.float32"):
        rai.loss_parts(index, x.double(), y)
    with pytest.raises(DomainError, match="empty batch"):
        rai.loss_parts(index[:0], x[:0], y[:0])
    growing = RAI(_small_net(), x, loss="bce_logits", penalty=PenaltySchedule(1.0, growth=2.0))
    assert growing.loss_parts(index, x, y, step=1000).weight == 2.0 ** 1000  # finite: still a number
    with pytest.raises(DomainError, match=r"weight has grown to inf.*finite maximum"):
        growing.loss_parts(index, x, y, step=1100)


@pytest.mark.parametrize("kwargs, error, match", [
    ({"x_train": torch.randn(6, 2).double()}, DomainError, r"x_train has dtype torch.float64 but the model's"),
    ({"x_train": torch.randn(6, 2).numpy()}, DomainError, r"floating-point torch tensor.*got ndarray"),
    ({"x_train": torch.randn(6)}, DomainError, r"shape \(n_examples, features\).*shape \(6,\)"),
    ({"x_train": torch.randn(6, 2), "loss": "hinge"}, SymactError, r"RAI loss='hinge' is not one of"),
    ({"x_train": torch.randn(6, 2), "relax_output": "no"}, DomainError, r"relax_output must be True or False"),
    # was torch's bare RuntimeError "mat1 and mat2 shapes cannot be multiplied (6x5 and 2x4)"
    ({"x_train": torch.randn(6, 5)}, DomainError, r"x_train has 5 features per example but the network's first "
                                                  r"nn.Linear takes 2"),
])
def test_bad_rai_arguments_are_refused_at_construction(kwargs, error, match):
    """Each was accepted (loss='hinge' until the first step, relax_output='no' as True) or failed with torch's
    error from the initial forward pass."""
    with pytest.raises(error, match=match):
        RAI(_small_net(), **kwargs)


def test_rai_experiment_names_its_optimizer_and_refuses_unknown_protocols():
    """The claim label said 'Rprop steps' whatever spec['optimizer'] was, and an unknown protocol in
    rai_init raised a bare KeyError."""
    from analysis.experiments.rai import rai_init, rai_train

    rec = rai_train({"arm": "plain", "hidden_layers": 2, "width": 4, "steps": 2, "optimizer": "adam", "lr": 0.01})
    assert "2 Adam steps" in rec["claims"][0].prediction
    with pytest.raises(DomainError, match=r"protocol 'seeed' is not one of"):
        rai_init({"hidden_layers": 2, "width": 4, "protocols": ("seeed",)})


def test_relaxed_output_probability_leaving_the_unit_interval_names_the_step_and_the_fix():
    """aux_at='activation' with the output relaxed makes the output a free probability; Rprop took it
    below 0 within a few steps and torch's BCE raised a bare RuntimeError ('should be between 0 and 1')."""
    x, y, _, _ = moons(40).torch()
    torch.manual_seed(0)
    net = build_mlp(2, 8, 2, 1, "sigmoid", output_activation="sigmoid")
    rai = RAI(net, x, aux_at="activation", relax_output=True)
    with pytest.raises(RuntimeError, match="between 0 and 1"):  # torch's own behaviour on such a value
        F.binary_cross_entropy(torch.tensor([1.2]), torch.tensor([1.0]))
    with pytest.raises(DomainError, match=r"RAI at step \d+: the relaxed output .* left \[0, 1\].*pre_activation"):
        train(rai, (x, y), objective=rai.objective, loss="bce_prob", optimizer="rprop", lr=0.1, steps=100)


@pytest.mark.parametrize("field, value", [("steps", 2.5), ("steps", -1), ("steps", True), ("steps", "3"),
                                          ("eval_every", 0), ("eval_every", 1.5), ("seed", 0.5)])
def test_rai_experiment_refuses_counts_that_are_not_whole_numbers(field, value):
    """rai_train ran int(spec['steps']): steps=2.5 silently trained 2 steps, True 1 step, and steps=-1 ran
    none; eval_every and the seed were truncated the same way."""
    from analysis.experiments.rai import rai_train

    spec = {"arm": "plain", "hidden_layers": 2, "width": 4, "steps": 2, field: value}
    with pytest.raises(DomainError, match=rf"{field} must be a whole number.*got {field}={value!r}"):
        rai_train(spec)


@pytest.mark.parametrize("make_index, match", [
    (lambda n: torch.arange(n)[:, None], r"1-D tensor of integer example indices.*shape \(6, 1\)"),
    (lambda n: torch.arange(n - 1, -1, -1)[:, None], r"1-D tensor.*shape \(6, 1\)"),
    (lambda n: torch.arange(n, dtype=torch.float64), r"1-D tensor of integer example indices.*torch.float64"),
    (lambda n: list(range(n)), r"1-D tensor of integer example indices, got list"),
])
def test_example_indices_must_be_a_1d_integer_tensor(make_index, match):
    """A (n, 1) index gathered (n, 1, width) auxiliaries, which broadcast against the (n, width)
    predictions: the consistency at initialisation, exactly 0, came out 0.54 for a 2-4-4-1 tanh network
    (and the output loss, flattened by bce, looked right); a float index passed on the full-batch path."""
    x = torch.randn(6, 2)
    y = torch.tensor([0, 1, 0, 1, 1, 0])
    rai = RAI(_small_net(), x)
    with torch.no_grad():
        assert float(rai.loss_parts(torch.arange(6), x, y).consistency) == 0.0
        with pytest.raises(DomainError, match=match):
            rai.loss_parts(make_index(6), x, y)


def test_penalty_schedule_from_numpy_or_python_integers_grows_like_floats():
    """np.int64 fields wrapped around: PenaltySchedule(np.int64(1), growth=np.int64(2)).weight(63) was
    -9.2e18 (a negative consistency weight rewards inconsistency) and weight(70) was 0.0; Python int
    fields (a JSON spec {"start": 1, "growth": 2}) raised OverflowError from weight(1100) instead of inf."""
    import numpy as np

    from_numpy = PenaltySchedule(np.int64(1), growth=np.int64(2), every=np.int64(1))
    assert from_numpy.weight(63) == 2.0**63 and from_numpy.weight(70) == 2.0**70
    assert PenaltySchedule.from_spec({"start": 1, "growth": 2}).weight(1100) == math.inf
    assert PenaltySchedule.from_spec({"start": 1, "growth": 2, "maximum": 50}).weight(1100) == 50.0
    assert PenaltySchedule.from_spec({"start": 1, "growth": 2}) == PenaltySchedule(1.0, growth=2.0)


@pytest.mark.parametrize("step", [-5, 7.5, True])
def test_penalty_schedule_weight_refuses_steps_that_are_not_whole_numbers(step):
    """weight(-5) was 0.03125 for PenaltySchedule(1.0, growth=2.0): below the start weight."""
    with pytest.raises(DomainError, match=r"whole number step >= 0"):
        PenaltySchedule(1.0, growth=2.0).weight(step)


def test_building_an_rai_leaves_the_wrapped_networks_batch_norm_statistics_alone():
    """The forward pass that initialises the auxiliaries ran in training mode and moved the running mean
    of a BatchNorm1d from 0 to (0.17, -0.24, 0.06, 0.24) (num_batches_tracked 0 -> 1): building the RAI
    changed the true network it evaluates."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(2, 4), torch.nn.BatchNorm1d(4), torch.nn.Tanh(), torch.nn.Linear(4, 1),
                              torch.nn.Sigmoid())
    x = torch.randn(6, 2) * 3 + 2
    y = torch.tensor([0, 1, 0, 1, 1, 0])
    before = {k: v.clone() for k, v in net.state_dict().items()}
    rai = RAI(net, x)
    for k, v in net.state_dict().items():
        assert torch.equal(v, before[k]), k
    with torch.no_grad():  # the full-batch objective in training mode still starts consistent
        assert float(rai.loss_parts(torch.arange(6), x, y).consistency) == 0.0


def test_consistency_at_initialisation_is_zero_for_a_deterministic_network_and_not_with_dropout():
    # the module docstring's claim, and its stated exception: dropout in training mode draws a
    # fresh mask per pass, so auxiliaries recorded at construction no longer match
    torch.manual_seed(0)
    x = torch.randn(6, 2)
    y = torch.randint(0, 2, (6,))
    for dropout, zero in ((0.0, True), (0.5, False)):
        net = torch.nn.Sequential(torch.nn.Linear(2, 4), torch.nn.Dropout(dropout), torch.nn.Tanh(),
                                  torch.nn.Linear(4, 1), torch.nn.Sigmoid())
        consistency = float(RAI(net, x).loss_parts(torch.arange(6), x, y).consistency.detach())
        assert (consistency == 0.0) is zero, (dropout, consistency)


@pytest.mark.parametrize("dtype", ["double", "float16", "torch.float64"])
def test_rai_experiment_refuses_a_dtype_it_does_not_run(dtype):
    """Any dtype other than "float64" ran in float32 without a word, and rai_init's claim still said
    "(float64)" in its tolerance."""
    from analysis.experiments.rai import rai_init, rai_train

    with pytest.raises(DomainError, match=rf"dtype must be 'float32' or 'float64', got dtype={dtype!r}"):
        rai_train({"arm": "plain", "hidden_layers": 2, "width": 4, "steps": 2, "dtype": dtype})
    with pytest.raises(DomainError, match="dtype must be"):
        rai_init({"hidden_layers": 2, "width": 4, "dtype": dtype})
    rec = rai_init({"hidden_layers": 2, "width": 4, "dtype": "float32"})
    assert [c.tolerance for c in rec["claims"]] == ["|RAI - plain| <= 1e-12 (float32)"] * 2
    assert rai_init({"hidden_layers": 2, "width": 4})["claims"][0].tolerance.endswith("(float64)")


@pytest.mark.parametrize("experiment, spec, unknown", [
    ("rai_train", {"arm": "plain", "hidden_layers": 2, "width": 4, "step": 2}, "step"),
    ("rai_train", {"arm": "rai", "hidden_layers": 2, "width": 4, "steps": 2, "protocols": ["seed"]}, "protocols"),
    ("rai_init", {"hidden_layers": 2, "width": 4, "protocol": "seed"}, "protocol"),
])
def test_rai_experiments_refuse_spec_keys_they_do_not_read(experiment, spec, unknown):
    """rai_train with "step": 2 trained the default 1000 steps, its record showing "step": 2; rai_init with
    "protocol" (rai_train's key) checked both protocols while the spec named one."""
    from analysis.experiments import rai as rai_experiments

    with pytest.raises(DomainError, match=rf"{experiment}: unknown spec key\(s\) \['{unknown}'\]"):
        getattr(rai_experiments, experiment)(spec)


def test_the_relaxed_objective_claim_measures_every_training_example_under_mini_batches():
    """With a batch_size the claim took result.objective[-1], the objective of one mini-batch of 10 examples
    (0.66297 here), for the training objective over all 100 (0.66330)."""
    from analysis.experiments.rai import rai_train

    out = rai_train({"arm": "rai", "hidden_layers": 3, "width": 8, "steps": 30, "batch_size": 10,
                     "optimizer": "adam", "lr": 0.01})
    claim = next(c for c in out["claims"] if c.key == "rai_relaxed_below")
    full = out["final_output_part"] + 1.0 * out["final_consistency"]  # weight 1, every example
    assert claim.measured == pytest.approx(full, rel=1e-6) and out["relaxed_objective"] == claim.measured
    assert claim.measured != pytest.approx(out["curve"]["objective"][-1], rel=1e-6)  # not the last batch's


def test_the_report_shows_the_steps_a_job_trained_when_its_spec_leaves_them_to_the_default(tmp_path):
    """rai_train without "steps" trains the default 1000; the report read the spec and showed 0 steps in its
    table, "0 steps" in the verdict line and "this run used None steps"."""
    from analysis.experiments.rai import report_section, rai_train
    from analysis.records import Job, Record

    spec = {"arm": "rai", "hidden_layers": 1, "width": 2, "n_samples": 8}
    out = rai_train(dict(spec))
    claims = tuple(out.pop("claims"))
    assert out["curve"]["steps"][-1] == 1000
    md = report_section([Record(Job("rai_train", spec), "ok", out, claims)], str(tmp_path)).markdown
    assert "this run used 1000 steps on 1 hidden layers" in md and "seed 0, 1000 steps.**" in md, md
    row = next(line for line in md.splitlines() if line.startswith("| rai_train-"))
    assert row.split(" | ")[3] == "1000", row


def test_the_training_plot_names_the_optimizer_and_rate_the_jobs_used(tmp_path, monkeypatch):
    """The plot's title said "(Rprop lr 0.1)" and its x axis "Rprop step" over curves trained with Adam at 0.01."""
    import analysis.report
    from analysis.experiments.rai import rai_train, report_section
    from analysis.records import Job, Record

    spec = {"arm": "plain", "hidden_layers": 2, "width": 4, "steps": 2, "optimizer": "adam", "lr": 0.01}
    out = rai_train(dict(spec))
    claims = tuple(out.pop("claims"))
    drawn = {}
    monkeypatch.setattr(analysis.report, "line_plot", lambda path, series, **kw: drawn.update(kw) or "plot.png")
    report_section([Record(Job("rai_train", spec), "ok", out, claims)], str(tmp_path))
    assert drawn["title"] == "RAI vs plain, 2-hidden-layer sigmoid MLP on moons (Adam lr 0.01)", drawn
    assert drawn["xlabel"] == "Adam step"
