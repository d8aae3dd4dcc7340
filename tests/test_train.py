"""numeric.train: deterministic loop, true-network curves, clear divergence errors."""

import math
import re

import pytest
import torch

from numeric.train import build_mlp, output_loss, train
from symact.errors import DomainError, SymactError, TrainingDivergedError


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _data(n=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 2, generator=g)
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).long()
    return x, y


@pytest.mark.parametrize("optimizer, lr, batch", [("sgd", 0.5, 16), ("adam", 0.05, 16), ("rprop", 0.01, None)])
def test_each_optimizer_reduces_the_loss(optimizer, lr, batch):
    x, y = _data()
    torch.manual_seed(0)
    model = build_mlp(2, 8, 1, 2, "tanh")
    res = train(model, (x, y, x[:8], y[:8]), optimizer=optimizer, lr=lr, steps=60, batch_size=batch)
    assert res.train_loss[-1] < 0.6 * res.train_loss[0]
    assert res.steps[0] == 0 and res.steps[-1] == 60
    assert len(res.test_loss) == len(res.train_loss)
    assert res.train_accuracy[-1] > 0.8


def test_full_batch_rprop_matches_a_hand_written_torch_loop():
    x, y = _data()
    torch.manual_seed(3)
    model = build_mlp(2, 5, 2, 2, "sigmoid")
    reference = build_mlp(2, 5, 2, 2, "sigmoid")
    reference.load_state_dict(model.state_dict())
    res = train(model, (x, y), optimizer="rprop", lr=0.1, steps=25)
    opt = torch.optim.Rprop(reference.parameters(), lr=0.1)
    for _ in range(25):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(reference(x), y).backward()
        opt.step()
    with torch.no_grad():
        expected = float(torch.nn.functional.cross_entropy(reference(x), y))
    assert res.train_loss[-1] == pytest.approx(expected, rel=1e-6)


def test_training_is_deterministic_for_a_seed():
    x, y = _data()
    runs = []
    for _ in range(2):
        torch.manual_seed(1)
        model = build_mlp(2, 6, 2, 2, "softplus")
        runs.append(train(model, (x, y), optimizer="adam", lr=0.01, steps=20, batch_size=10, seed=4).train_loss)
    assert runs[0] == runs[1]


def test_mini_batches_visit_every_example_once_per_epoch():
    x, y = _data(30)
    seen = []

    def objective(step, index, xb, yb):
        if step < 3:  # step 3 is the objective at the final parameters, evaluated after training
            seen.append(index.tolist())
        assert torch.equal(xb, x[index])
        return output_loss(model(xb), yb, "cross_entropy")

    model = build_mlp(2, 4, 1, 2, "tanh")
    train(model, (x, y), steps=3, batch_size=10, objective=objective)
    assert sorted(sum(seen, [])) == list(range(30))


@pytest.mark.parametrize("eval_every", [1, 3])
def test_full_batch_objective_curve_is_the_training_loss_at_the_same_step(eval_every):
    """objective[i] and train_loss[i] are measured at the same parameters (steps[i] updates).

    Before the fix objective[i] was the value computed before the update of step steps[i] - 1,
    one step behind the training loss it is plotted against (objective[1] == train_loss[0])."""
    x, y = _data(24)
    torch.manual_seed(0)
    model = build_mlp(2, 5, 1, 2, "tanh").double()
    res = train(model, (x.double(), y), optimizer="sgd", lr=0.5, steps=7, eval_every=eval_every)
    assert len(res.objective) == len(res.steps) == len(res.train_loss)
    assert res.objective == pytest.approx(res.train_loss, rel=1e-12)
    assert res.train_loss[1] < res.train_loss[0]  # the steps did move the loss, so a lag would show


def test_divergence_raises_with_the_step_and_what_to_try():
    x, y = _data()
    model = torch.nn.Linear(2, 2)

    def objective(step, index, xb, yb):
        return model(xb).sum() * (math.inf if step == 3 else 1.0)

    with pytest.raises(TrainingDivergedError, match=r"step 3.*inf.*smaller learning rate"):
        train(model, (x, y), steps=10, objective=objective)


@pytest.mark.parametrize("kwargs", [{"steps": 2.5}, {"batch_size": 2.5}, {"eval_every": 1.5}, {"steps": True}])
def test_non_integer_counts_are_refused_naming_the_argument(kwargs):
    """steps=2.5 and batch_size=2.5 used to raise torch/Python TypeErrors from inside the loop, and
    eval_every=1.5 silently evaluated at every third step."""
    x, y = _data(8)
    (name,) = kwargs
    with pytest.raises(DomainError, match=f"{name} must be a whole number"):
        train(torch.nn.Linear(2, 2), (x, y), **kwargs)


def test_output_losses_follow_their_conventions():
    y = torch.tensor([0, 1, 1])
    p = torch.tensor([[0.2], [0.7], [0.9]])
    expected = -(math.log(0.8) + math.log(0.7) + math.log(0.9)) / 3
    assert float(output_loss(p, y, "bce_prob")) == pytest.approx(expected, rel=1e-6)
    assert float(output_loss(torch.logit(p), y, "bce_logits")) == pytest.approx(expected, rel=1e-5)
    with pytest.raises(SymactError, match="Unknown loss"):
        output_loss(p, y, "hinge")


def test_bad_arguments_raise_clear_errors():
    x, y = _data(8)
    model = torch.nn.Linear(2, 2)
    with pytest.raises(DomainError, match="batch_size"):
        train(model, (x, y), steps=1, batch_size=9)
    with pytest.raises(SymactError, match="Unknown optimizer"):
        train(model, (x, y), steps=1, optimizer="lbfgs")
    with pytest.raises(SymactError, match="Unknown optimizer None"):  # was AttributeError: no .lower()
        train(model, (x, y), steps=1, optimizer=None)


def test_build_mlp_counts_linear_layers_like_the_rai_seed():
    model = build_mlp(2, 100, 100, 1, "sigmoid", output_activation="sigmoid")
    linears = [m for m in model if isinstance(m, torch.nn.Linear)]
    assert len(linears) == 101
    assert (linears[0].in_features, linears[-1].out_features) == (2, 1)
    assert isinstance(model[-1], torch.nn.Sigmoid)


# ----------------------------------------------------------------------------- invalid input, NaN reporting


@pytest.mark.parametrize("optimizer, lr", [("sgd", math.nan), ("adam", math.inf), ("rprop", -math.inf),
                                           ("sgd", 0.0), ("adam", -1e-3), ("sgd", "fast")])
def test_invalid_learning_rate_is_refused_before_any_step(optimizer, lr):
    """Reported: lr=nan (SGD) and lr=inf (Adam) ran and were blamed on divergence ('try a smaller lr')."""
    x, y = _data(8)
    torch.manual_seed(0)
    model = torch.nn.Linear(2, 2)
    before = [p.detach().clone() for p in model.parameters()]
    with pytest.raises(DomainError, match=r"lr must be a finite number > 0"):
        train(model, (x, y), optimizer=optimizer, lr=lr, steps=3)
    assert all(torch.equal(p, b) for p, b in zip(model.parameters(), before))


def _torch_takes_a_step(optimizer, dtype, lr):
    """Whether torch.optim itself takes one step at ``lr`` (False: its overflow RuntimeError)."""
    p = torch.nn.Parameter(torch.full((2,), 0.5, dtype=dtype))
    opt = {"adam": torch.optim.Adam, "sgd": torch.optim.SGD, "rprop": torch.optim.Rprop}[optimizer]([p], lr=lr)
    p.grad = torch.full((2,), 1e-3, dtype=dtype)
    try:
        opt.step()
    except RuntimeError as exc:
        assert "without overflow" in str(exc)
        return False
    return True


@pytest.mark.parametrize("optimizer, dtype, largest", [
    ("adam", torch.float32, torch.finfo(torch.float32).max * (1 - 0.9)),   # step size lr / (1 - beta1), in float32
    ("adam", torch.bfloat16, torch.finfo(torch.float32).max * (1 - 0.9)),  # ... computed in float32 for bfloat16
    ("sgd", torch.float16, torch.finfo(torch.float16).max),                # alpha = -lr in the parameters' dtype
    ("rprop", torch.float32, torch.finfo(torch.float32).max),              # initial step sizes full_like(grad, lr)
], ids=["adam-float32", "adam-bfloat16", "sgd-float16", "rprop-float32"])
def test_an_lr_whose_first_step_overflows_torch_is_refused_before_any_step(optimizer, dtype, largest):
    """Adam with lr=1e38 on float32 raised torch's bare "RuntimeError: value cannot be converted to type float
    without overflow" at the first step: lr / (1 - beta1) = 1e39 does not fit float32.  Reference for the
    threshold: torch.optim itself takes a step at the largest lr and refuses the next float up."""
    refused = math.nextafter(largest, math.inf)
    assert _torch_takes_a_step(optimizer, dtype, largest) and not _torch_takes_a_step(optimizer, dtype, refused)
    x = torch.linspace(-1e-3, 1e-3, 8, dtype=dtype)[:, None]
    y = (x[:, 0] > 0).long()
    torch.manual_seed(0)
    model = torch.nn.Linear(1, 1).to(dtype)
    before = [p.detach().clone() for p in model.parameters()]
    with pytest.raises(DomainError, match=rf"lr={re.escape(repr(refused))} is too large for optimizer '{optimizer}' with {dtype} "
                                          rf"parameters: .*overflow.* Pass lr <= {re.escape(repr(largest))}"):
        train(model, (x, y), loss="bce_logits", optimizer=optimizer, lr=refused, steps=3)
    assert all(torch.equal(p, b) for p, b in zip(model.parameters(), before))
    # the largest lr torch accepts runs: one step, every loss finite, the parameters moved
    result = train(model, (x, y), loss="bce_logits", optimizer=optimizer, lr=largest, steps=1)
    assert all(math.isfinite(v) for v in result.train_loss)
    assert not all(torch.equal(p, b) for p, b in zip(model.parameters(), before))


def test_non_finite_held_out_data_is_refused():
    x, y = _data(16)
    x_test = x[:4].clone()
    x_test[1, 0] = math.nan
    with pytest.raises(DomainError, match=r"x_test has 1 NaN or infinite entry"):
        train(torch.nn.Linear(2, 2), (x, y, x_test, y[:4]), lr=0.01, steps=2)


def test_nan_held_out_loss_raises_naming_the_held_out_data_and_step():
    """Reported: a NaN held-out loss came back as TrainResult(test_loss=nan) without an error.

    The held-out inputs are finite but so large that the logits overflow to +-inf, and
    cross_entropy of [inf, -inf] is NaN (torch's own value, checked first)."""
    x, y = _data(16)
    model = torch.nn.Linear(2, 2)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[1.0, 1.0], [-1.0, -1.0]]))
        model.bias.zero_()
    x_test = torch.full((2, 2), 3e38)
    y_test = torch.tensor([0, 1])
    with torch.no_grad():
        assert math.isnan(float(torch.nn.functional.cross_entropy(model(x_test), y_test)))
        assert math.isfinite(float(torch.nn.functional.cross_entropy(model(x), y)))
    with pytest.raises(TrainingDivergedError, match=r"held-out \(test\) loss became nan at step 0 \(the initial"):
        train(model, (x, y, x_test, y_test), optimizer="sgd", lr=1e-3, steps=2)


def test_non_finite_training_loss_is_reported_at_the_step_it_appears():
    """A custom objective stays finite while the true network breaks: the error names the evaluation step."""
    x, y = _data(16)
    model = torch.nn.Linear(2, 2)

    def objective(step, index, xb, yb):
        if step == 2:
            with torch.no_grad():
                model.weight.fill_(math.inf)
        return model.bias.sum() * 0 + 1.0   # finite: only the evaluated network breaks

    # weights set inside step 2's objective; the evaluation after that step is "step 3"
    with pytest.raises(TrainingDivergedError, match=r"at step 3: the true network's training loss became nan"):
        train(model, (x, y), optimizer="sgd", lr=1e-3, steps=5, objective=objective)


@pytest.mark.parametrize("optimizer", ["sgd", "adam", "rprop"])
def test_non_finite_gradient_with_a_finite_objective_is_caught_at_its_step_before_the_update(optimizer):
    """A NaN gradient with a finite objective went into the update unnoticed: the parameters became NaN and
    the error came one step later, blaming the objective ('the objective became nan at step 3')."""
    x, y = _data(16)
    torch.manual_seed(0)
    model = torch.nn.Linear(2, 2)

    def objective(step, index, xb, yb):
        plain = torch.nn.functional.cross_entropy(model(xb), yb)
        # sqrt(0 * w) is 0 (finite) but its gradient is 0 * inf = NaN
        return plain + (torch.sqrt(model.weight.sum() * 0) if step == 2 else 0.0)

    before = {}

    def progress(step, steps):
        before.update({name: p.detach().clone() for name, p in model.named_parameters()})

    with pytest.raises(TrainingDivergedError,
                       match=r"gradient became non-finite at step 2 .*parameter 'weight' has 4 NaN or infinite "
                             r"entries while the objective is finite"):
        train(model, (x, y), optimizer=optimizer, lr=1e-2, steps=5, objective=objective, progress=progress)
    # the bad update was not applied: the parameters are those after step 1, all finite
    assert all(torch.equal(p, before[name]) for name, p in model.named_parameters())


# ----------------------------------------------------------------------------- data checked before any step


def test_plus_minus_one_labels_under_a_binary_loss_are_refused_not_trained_on():
    """BCE with target -1 is a finite number, unbounded below (torch computes it without complaint),
    so labels -1/+1 trained silently towards a meaningless minimum."""
    x, _ = _data(8)
    y = torch.tensor([-1, 1] * 4)
    logits = torch.tensor([[-5.0]])
    # the silent case: torch's BCE with target -1 is finite and *lower* for a larger logit (no minimum)
    assert float(output_loss(logits * 2, y[:1], "bce_logits")) < float(output_loss(logits, y[:1], "bce_logits"))
    torch.manual_seed(0)
    model = torch.nn.Linear(2, 1)
    before = [p.detach().clone() for p in model.parameters()]
    with pytest.raises(DomainError, match=r"labels \[-1, 1\].*needs labels 0 and 1.*\(y_train > 0\)\.long\(\)"):
        train(model, (x, y), loss="bce_logits", steps=3)
    assert all(torch.equal(p, b) for p, b in zip(model.parameters(), before))


@pytest.mark.parametrize("make, match", [
    (lambda x, y: (x.double(), y), r"x_train has dtype torch.float64 but the model's parameters are torch.float32"),
    (lambda x, y: (x.long(), y), r"x_train has dtype torch.int64; inputs must be floating point"),
    (lambda x, y: (x, y.float()), r"y_train has dtype torch.float32; labels are integer.*y_train.long\(\)"),
    (lambda x, y: (x, y[:5]), r"y_train must hold one label per row of x_train"),
    (lambda x, y: (x, y[:, None]), r"y_train must hold one label per row"),
    (lambda x, y: (x, y, x[:3], y[:2]), r"y_test must hold one label per row of x_test"),
    (lambda x, y: (x, y, x[:3, :1], y[:3]), r"x_test rows have shape \(1,\) but x_train rows \(2,\)"),
    (lambda x, y: (x, y, x[:3]), r"got 3 items"),
    (lambda x, y: (x.numpy(), y.numpy()), r"x_train must be a torch tensor, got ndarray"),
    (lambda x, y: (x, y - 1), r"y_train has negative labels"),
])
def test_mismatched_data_is_refused_before_any_step_naming_the_fix(make, match):
    """Each used to surface as torch's error from inside the first step (or, for a 3-tuple, the
    held-out inputs were silently ignored)."""
    x, y = _data(8)
    with pytest.raises(DomainError, match=match):
        train(torch.nn.Linear(2, 2), make(x, y), steps=2)


def test_non_integer_seed_and_boolean_lr_are_refused():
    x, y = _data(8)
    with pytest.raises(DomainError, match="seed must be a whole number"):
        train(torch.nn.Linear(2, 2), (x, y), steps=1, seed=1.5)
    with pytest.raises(DomainError, match="lr must be a finite number > 0"):
        train(torch.nn.Linear(2, 2), (x, y), steps=1, lr=True)


@pytest.mark.parametrize("args, match", [
    ((2, 2.5, 2, 1), "whole number width >= 1"), ((2, 4, 2.5, 1), "whole number hidden_layers >= 0"),
    ((0, 4, 2, 1), "whole number in_features >= 1"), ((2, 4, 2, 0), "whole number out_features >= 1"),
    ((2, 0, 2, 1), "whole number width >= 1"), ((2, 4, -1, 1), "hidden_layers >= 0"),
])
def test_build_mlp_refuses_non_integer_and_empty_layer_sizes(args, match):
    """width=2.5 raised torch's TypeError; in_features=0 / out_features=0 built a network of empty layers."""
    with pytest.raises(DomainError, match=match):
        build_mlp(*args, "tanh")


def test_build_mlp_refuses_an_unknown_activation_even_without_hidden_layers():
    with pytest.raises(SymactError, match="No built-in torch module for activation 'nope'"):
        build_mlp(2, 4, 0, 1, "nope")
    with pytest.raises(SymactError, match="No built-in torch module for activation 'nope'"):
        build_mlp(2, 4, 1, 1, "tanh", output_activation="nope")


def test_single_output_mse_accuracy_thresholds_halfway_between_the_targets():
    """mse regresses one output onto the 0/1 labels, so 0.3 is closer to class 0; the threshold was 0
    (the logit convention) and counted it as class 1."""
    from numeric.train import accuracy

    y = torch.tensor([0, 0, 1, 1])
    out = torch.tensor([[0.3], [0.1], [0.8], [0.6]])
    # the prediction is the nearer target: |o - 0| < |o - 1|  <=>  o < 1/2
    nearest = ((out[:, 0] - 1).abs() < out[:, 0].abs()).long()
    assert accuracy(out, y, "mse") == float((nearest == y).double().mean()) == 1.0
    assert accuracy(out, y, "bce_logits") == 0.5  # logits: positive means class 1


def test_curves_evaluate_the_network_in_eval_mode_and_restore_each_module_mode():
    """Evaluations ran in training mode: dropout made the recorded loss random and batch norm used (and
    updated) batch statistics during evaluation."""
    x, y = _data(16)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.BatchNorm1d(8), torch.nn.Dropout(0.5),
                                torch.nn.Linear(8, 2))
    model[1].eval()  # a frozen batch norm the caller put in eval mode on purpose
    res = train(model, (x, y), optimizer="sgd", lr=1e-3, steps=0)
    model.eval()
    with torch.no_grad():
        expected = float(torch.nn.functional.cross_entropy(model(x), y))
    assert res.train_loss[0] == pytest.approx(expected, rel=1e-6)
    model.train()
    model[1].eval()
    mean_before = model[1].running_mean.clone()
    train(model, (x, y), optimizer="sgd", lr=1e-3, steps=2)
    assert [m.training for m in model] == [True, False, True, True]
    assert torch.equal(model[1].running_mean, mean_before)  # frozen: evaluation did not update it


def test_data_on_another_device_than_the_model_is_refused_naming_the_move():
    """Raised torch's device error from inside the first step (the meta device stands in for a GPU)."""
    x, y = _data(8)
    model = torch.nn.Linear(2, 2, device="meta")
    with pytest.raises(DomainError, match=r"on cpu/cpu but the model's parameters on meta.*\.to\('meta'\)"):
        train(model, (x, y), steps=1)


def test_none_held_out_data_still_means_no_held_out_curves():
    x, y = _data(8)
    res = train(torch.nn.Linear(2, 2), (x, y, None, None), steps=2)
    assert res.test_loss == () and res.final_test_loss is None


@pytest.mark.parametrize("loss", ["cross_entropy", "mse"])
def test_labels_beyond_the_output_width_name_the_needed_width(loss):
    """Three classes on a two-output network: torch raised a bare IndexError ('Target 2 is out of bounds')
    or one_hot's RuntimeError."""
    x, _ = _data(9)
    y = torch.tensor([0, 1, 2] * 3)
    with pytest.raises(DomainError, match=r"Labels run up to 2 but the network has 2 outputs.*out_features=3"):
        train(torch.nn.Linear(2, 2), (x, y), loss=loss, steps=1)
    assert train(torch.nn.Linear(2, 3), (x, y), loss=loss, steps=1).train_loss[0] > 0


def test_a_non_finite_initial_network_is_not_blamed_on_the_learning_rate():
    """At step 0 no update has happened, yet the error said 'Try a smaller learning rate'."""
    x, y = _data(8)
    model = torch.nn.Linear(2, 2)
    with torch.no_grad():
        model.weight.fill_(math.inf)  # the initialisation itself is broken
    with pytest.raises(TrainingDivergedError, match=r"initial network.*before any update") as info:
        train(model, (x, y), lr=1e-3, steps=3)
    assert "smaller learning rate" not in str(info.value)

    def objective(step, index, xb, yb):
        return torch.nn.Linear(2, 2)(xb).sum() * math.nan

    with pytest.raises(TrainingDivergedError, match=r"initial network is nan \(step 0, before any update\)") as info:
        train(torch.nn.Linear(2, 2), (x, y), steps=3, objective=objective)
    assert "smaller learning rate" not in str(info.value)


def test_one_dimensional_outputs_are_one_column_for_loss_and_accuracy():
    """A model ending in squeeze(-1) gives outputs of shape (n,): mse broadcast them against the (n, 1)
    targets (0.778 instead of 1.472 for these numbers, with only a warning) and accuracy took the argmax
    over the examples (0.0 for a bce_logits model that classifies 3 of 8 right)."""
    from numeric.train import accuracy

    out = torch.tensor([0.3, -1.2, 0.9, 2.0, -0.4, 0.6, 0.1, -2.5], dtype=torch.float64)
    y = torch.tensor([0, 0, 1, 1, 1, 0, 0, 1])
    target = y.double()
    assert float(output_loss(out, y, "mse")) == pytest.approx(float(((out - target) ** 2).mean()), rel=1e-12)
    assert float(output_loss(out, y, "bce_logits")) == pytest.approx(
        float(torch.nn.functional.binary_cross_entropy_with_logits(out, target)), rel=1e-12)
    assert accuracy(out, y, "bce_logits") == float(((out > 0).long() == y).double().mean()) == 0.375
    assert accuracy(out, y, "mse") == float(((out > 0.5).long() == y).double().mean()) == 0.625
    assert accuracy(out, y, "mse") == accuracy(out[:, None], y, "mse")
    model = torch.nn.Sequential(torch.nn.Linear(2, 1), torch.nn.Flatten(0))
    x, y2 = _data(8)
    result = train(model, (x, (y2 > 0).long()), loss="bce_logits", steps=0)
    with torch.no_grad():
        expected = float((((model(x) > 0).long()) == (y2 > 0).long()).double().mean())
    assert result.train_accuracy == (expected,)


@pytest.mark.parametrize("loss, out_features, match", [
    ("cross_entropy", 1, r"cross_entropy' needs one output column per class.*bce_logits"),
    ("bce_logits", 2, r"bce_logits' scores one output per example.*2 output columns.*cross_entropy"),
    ("bce_prob", 3, r"bce_prob' scores one output per example.*3 output columns"),
])
def test_output_widths_a_loss_cannot_score_are_refused(loss, out_features, match):
    """cross_entropy on one logit column is 0 for every parameter (labels all 0) or a bare IndexError, and a
    binary loss on several columns was torch's 'Target size must be the same as input size'."""
    x, y = _data(8)
    y = (y > 0).long()
    with pytest.raises(DomainError, match=match):
        train(torch.nn.Linear(2, out_features), (x, torch.zeros_like(y) if loss == "cross_entropy" else y), loss=loss,
              steps=1)


def test_empty_training_data_is_refused_not_reported_as_a_diverged_network():
    """No training rows made the mean loss NaN, reported as 'the objective of the initial network is nan:
    check the objective, the initialisation and the inputs' scale'."""
    x, y = _data(8)
    with pytest.raises(DomainError, match=r"x_train has no rows"):
        train(torch.nn.Linear(2, 2), (x[:0], y[:0]), steps=1)
    result = train(torch.nn.Linear(2, 2), (x, y, x[:0], y[:0]), steps=1)  # empty held-out data: no held-out curve
    assert result.test_loss == ()


@pytest.mark.parametrize("seed", [-1, 2**64, 2**70])
def test_seeds_outside_torch_range_are_refused(seed):
    """seed=-1 trained as seed 2**64 - 1 (torch wraps negative seeds) and seed=2**70 raised torch's bare
    'Overflow when unpacking long long'."""
    x, y = _data(8)
    with pytest.raises(DomainError, match=r"seed must be a whole number in 0\.\.2\*\*64 - 1"):
        train(torch.nn.Linear(2, 2), (x, y), steps=1, batch_size=2, seed=seed)


def test_largest_seed_is_accepted_and_reproducible():
    x, y = _data(8)
    runs = []
    for _ in range(2):
        torch.manual_seed(0)
        runs.append(train(torch.nn.Linear(2, 2), (x, y), steps=3, batch_size=2, seed=2**64 - 1).train_loss)
    assert runs[0] == runs[1]


def test_nan_sigmoid_outputs_under_bce_prob_are_reported_as_divergence_naming_the_step():
    """torch's binary_cross_entropy refuses NaN probabilities with a bare RuntimeError ('all elements of
    input should be between 0 and 1'), so a sigmoid network whose parameters overflowed escaped the
    divergence report."""
    x, y = _data(16)
    torch.manual_seed(0)
    model = build_mlp(2, 8, 2, 1, "relu", output_activation="sigmoid")
    with pytest.raises(TrainingDivergedError, match=r"diverged at step 1: the true network's training loss became nan"):
        train(model, (x, y), loss="bce_prob", optimizer="sgd", lr=1e30, steps=20)
    assert math.isnan(float(output_loss(torch.tensor([[float("nan")], [0.5]]), torch.tensor([0, 1]), "bce_prob")))


def test_bce_prob_outputs_outside_the_unit_interval_are_refused_naming_the_fix():
    """A network without a sigmoid output under bce_prob raised torch's bare RuntimeError."""
    x, y = _data(8)
    torch.manual_seed(0)
    with pytest.raises(DomainError, match=r"bce_prob' needs outputs that are probabilities in \[0, 1\].*bce_logits"):
        train(torch.nn.Linear(2, 1), (x, y), loss="bce_prob", steps=1)
    assert float(output_loss(torch.tensor([[0.0], [1.0]]), torch.tensor([0, 1]), "bce_prob")) == 0.0


@pytest.mark.parametrize("optimizer, options", [
    ("sgd", {"momentum": float("nan")}), ("sgd", {"weight_decay": float("nan")}),
    ("sgd", {"momentum": 0.9, "dampening": float("nan")}), ("rprop", {"step_sizes": (1e-6, float("nan"))}),
])
def test_nan_optimizer_options_are_refused_before_any_step(optimizer, options):
    """torch's `momentum < 0` style checks let NaN through: the run 'diverged at step 1' and the
    message advised a smaller learning rate."""
    x, y = _data(16)
    (key,) = [k for k, v in options.items() if v != 0.9]
    with pytest.raises(DomainError, match=rf"optimizer option {key}=.*nan.*is NaN"):
        train(torch.nn.Linear(2, 2), (x, y), optimizer=optimizer, optimizer_options=options, steps=5)
    train(torch.nn.Linear(2, 2), (x, y), optimizer="sgd", optimizer_options={"momentum": 0.9, "nesterov": True},
          steps=2)


@pytest.mark.parametrize("make, match", [
    (lambda model: (lambda s, i, xb, yb: 1.0), r"returned float 1.0 at step 0"),
    (lambda model: (lambda s, i, xb, yb: model(xb)), r"returned a tensor of shape \(16, 2\) at step 0"),
    (lambda model: (lambda s, i, xb, yb: model(xb).sum().detach()), r"does not require grad.*at step 0"),
])
def test_objectives_that_are_not_a_differentiable_scalar_are_refused_naming_the_step(make, match):
    """A float, a per-example tensor or a detached scalar raised AttributeError ('float' object has no
    attribute 'detach'), ValueError (only one element tensors...) or RuntimeError from backward."""
    x, y = _data(16)
    model = torch.nn.Linear(2, 2)
    with pytest.raises(DomainError, match=match):
        train(model, (x, y), objective=make(model), steps=2)
    if "grad" not in match:  # steps=0 evaluates the objective once, without grad (a bare ValueError before)
        with pytest.raises(DomainError, match=match):
            train(model, (x, y), objective=make(model), steps=0)


@pytest.mark.parametrize("steps", [0, 3])
def test_first_and_last_curve_points_are_the_initial_and_the_returned_network_with_batch_norm(steps):
    """Step 0's objective ran (updating batch-norm running statistics) before the initial network was
    evaluated, and the objective evaluated after the last step updated them again after the final
    evaluation: train_loss[0] was 0.6955 for an initial network whose loss is 0.6939 here, and (for
    another such network) the returned model's loss was 0.4133 where train_loss[-1] said 0.4126."""
    import copy

    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 2, generator=g) * 3 + 1
    y = (x[:, 0] > 1).long()
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.BatchNorm1d(8), torch.nn.Tanh(), torch.nn.Linear(8, 2))
    initial = copy.deepcopy(model).eval()
    result = train(model, (x, y), steps=steps, lr=0.01, batch_size=16)
    with torch.no_grad():
        assert result.train_loss[0] == float(output_loss(initial(x), y, "cross_entropy"))
        assert model.training
        assert result.train_loss[-1] == float(output_loss(model.eval()(x), y, "cross_entropy"))


@pytest.mark.parametrize("name", ["objective", "progress"])
def test_callbacks_that_are_not_functions_are_refused_before_any_step(name):
    """progress=3 raised "TypeError: 'int' object is not callable" after the first step had been taken
    (and objective=3 inside the loop)."""
    x, y = _data(8)
    model = torch.nn.Linear(2, 2)
    before = model.weight.detach().clone()
    with pytest.raises(DomainError, match=rf"{name} must be a function \(or None\), got int 3"):
        train(model, (x, y), steps=2, **{name: 3})
    assert torch.equal(model.weight, before)


@pytest.mark.parametrize("change, message", [
    (lambda kw: kw.update(data=(kw["data"][0], kw["data"][1].int())), r"dtype torch\.int32.*pass y_train\.long\(\)"),
    (lambda kw: kw.update(lr="0.1"), r"lr must be a finite number > 0, got '0\.1'"),
    (lambda kw: kw.update(model=torch.nn.Linear(3, 2)), r"cannot take x_train's rows \(shape \(2,\)\).*first layer"),
    (lambda kw: kw.update(parameters=[]), "no parameters to train"),
    (lambda kw: kw.update(optimizer_options={"momentum": 0.9}), r"'adam' has no option 'momentum'; its options are"),
    (lambda kw: kw.update(optimizer_options={"weight_decay": -1.0}), r"'adam': Invalid weight_decay value"),
    (lambda kw: kw.update(optimizer="sgd", optimizer_options={"weight_decay": float("inf")}),
     r"weight_decay=inf is infinite"),
], ids=["int32-labels", "lr-string", "too-few-features", "no-parameters", "unknown-option", "out-of-range-option",
        "infinite-option"])
def test_bad_training_input_is_named_before_any_step(change, message):
    """Each reached torch's own error (int32 labels: "expected target dtype to be Long or Byte"; lr "0.1": a '<='
    TypeError; 3 features for a 2-input model: "mat1 and mat2 shapes cannot be multiplied"; an empty parameter
    list; Adam(momentum=...): a bare TypeError; weight_decay=-1: a bare ValueError), and SGD weight_decay=inf
    "diverged" with advice to lower the learning rate."""
    kwargs = {"model": torch.nn.Linear(2, 2), "data": _data(16), "steps": 3}
    change(kwargs)
    with pytest.raises(DomainError, match=message):
        train(kwargs.pop("model"), kwargs.pop("data"), **kwargs)


@pytest.mark.parametrize("dtype, options", [(torch.float16, {}), (torch.float16, {"eps": 2e-8}),
                                            (torch.float32, {"eps": 0.0}), (torch.bfloat16, {"eps": 0.0})])
def test_an_adam_eps_that_vanishes_in_the_parameters_dtype_is_refused_before_any_step(dtype, options):
    """Adam's step is m / (sqrt(v) + eps), and where a gradient is 0 (a dead ReLU unit) or its square underflows
    (float16), m/eps is all that is left: Adam's default eps = 1e-8 is 0 in float16 and torch accepts eps = 0,
    so float16 Adam (and float32 Adam with eps = 0 and a dead unit) reported "Training diverged at step 1 ...
    try a smaller learning rate", which no learning rate fixes."""
    x, y = _data(32)
    torch.manual_seed(0)
    model = build_mlp(2, 8, 1, 2, "relu", dtype=dtype)
    with torch.no_grad():
        model[0].bias[0] = -100.0   # a dead unit: its incoming weights get gradient 0
    before = [p.detach().clone() for p in model.parameters()]
    with pytest.raises(DomainError, match=rf"'adam' with {dtype} parameters: eps=.* is 0 in {dtype}.*"
                                          r"optimizer_options=\{'eps': 1e-4\}"):
        train(model, (x.to(dtype), y), optimizer="adam", lr=1e-2, steps=5, optimizer_options=options)
    assert all(torch.equal(b, p) for b, p in zip(before, model.parameters()))
    # with an eps the dtype holds, the same run trains (every loss finite, and lower at the end)
    res = train(model, (x.to(dtype), y), optimizer="adam", lr=1e-2, steps=20, optimizer_options={"eps": 1e-4})
    assert all(math.isfinite(v) for v in res.train_loss) and res.train_loss[-1] < res.train_loss[0]


# ----------------------------------------------------------------------------- the model after a divergence


def _state(model):
    return {name: t.detach().clone() for name, t in [*model.named_parameters(), *model.named_buffers()]}


def _assert_state(model, reference):
    state = _state(model)
    assert state.keys() == reference.keys()
    for name, t in state.items():
        assert torch.isfinite(t.float()).all(), name
        assert torch.equal(t, reference[name]), name


@pytest.mark.parametrize("eval_every", [1, 10])
def test_an_update_that_overflows_is_undone_and_the_error_names_the_step_restored_to(eval_every):
    """SGD with finite gradients of 1e38 and lr=10: the update is 1e39, -inf in float32.  The error came one step
    later ("the true network's training loss became nan", or "the objective became nan" between evaluations)
    and the model was left with -inf weights.  Now it is left as it was after step 2, the last at which the
    objective was computed and finite; reference: the same run stopped after 2 steps."""
    x, y = _data(16)

    def objective(step, index, xb, yb):
        plain = torch.nn.functional.cross_entropy(model(xb), yb)
        w = model.weight.sum()
        return plain + ((w - w.detach()) * 1e38 if step == 2 else 0.0)  # value unchanged, gradient 1e38

    torch.manual_seed(0)
    model = torch.nn.Linear(2, 2)
    with pytest.raises(TrainingDivergedError, match=r"at step 3: .*nan|at step 3: the update to it left parameter "
                                                    r"'weight' with 4 NaN or infinite entries") as info:
        train(model, (x, y), optimizer="sgd", lr=10.0, steps=6, eval_every=eval_every, objective=objective)
    diverged = _state(model)
    torch.manual_seed(0)
    model = torch.nn.Linear(2, 2)
    train(model, (x, y), optimizer="sgd", lr=10.0, steps=2, eval_every=eval_every, objective=objective)
    reference = _state(model)
    model.load_state_dict(diverged)
    _assert_state(model, reference)
    assert "The model was restored to its parameters and buffers after step 2, the last at which the objective " \
           "was computed and finite." in str(info.value)


def test_a_huge_learning_rate_leaves_the_initial_network_not_the_overflowing_one():
    """MSE with lr=1e30: the first update gives weights of ~1e30, finite, whose squared error is inf.  The model
    was left with them; now it is the initial network, since the objective was finite only there."""
    x, y = _data(16)
    torch.manual_seed(0)
    model = torch.nn.Linear(2, 2)
    initial = _state(model)
    with pytest.raises(TrainingDivergedError, match=r"diverged at step 1: the objective became inf") as info:
        train(model, (x, y), loss="mse", optimizer="sgd", lr=1e30, steps=50, eval_every=100)
    _assert_state(model, initial)
    assert "The model was restored to its initial parameters and buffers (step 0)." in str(info.value)


def test_batch_norm_statistics_poisoned_by_a_nan_forward_pass_are_restored():
    """An objective that meets an inf input at step 3 ran the forward pass in training mode: batch norm's
    running mean and variance became NaN and stayed in the model.  Reference: the model as the progress callback
    saw it after 2 steps (the objective was last finite at those parameters)."""
    x, y = _data(16)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(2, 4), torch.nn.BatchNorm1d(4), torch.nn.Linear(4, 2))
    seen = {}

    def objective(step, index, xb, yb):
        return torch.nn.functional.cross_entropy(model(xb * (math.inf if step == 3 else 1.0)), yb)

    def progress(step, steps):
        seen[step] = _state(model)

    with pytest.raises(TrainingDivergedError, match=r"diverged at step 3: the objective became nan") as info:
        train(model, (x, y), lr=0.01, steps=10, objective=objective, progress=progress)
    _assert_state(model, seen[2])
    assert "restored to its parameters and buffers after step 2," in str(info.value)
    assert seen[2]["1.num_batches_tracked"] == 2 and not torch.equal(seen[2]["1.running_mean"], seen[3]["1.running_mean"])


def test_a_held_out_loss_that_overflows_leaves_the_last_network_whose_objective_was_finite():
    """Weights that grow by 1 per step: the training loss stays finite while the held-out inputs (1e18) make the
    squared error overflow.  The model was left at the step whose held-out loss is inf; now it is the one before,
    equal to a run stopped there."""
    x, y = _data(16)
    x_test, y_test = torch.full((4, 2), 1e18), torch.tensor([0, 1, 0, 1])

    def run(steps):
        torch.manual_seed(0)
        model = torch.nn.Linear(2, 1)
        objective = lambda step, index, xb, yb: -model.weight.sum()  # noqa: E731  gradient -1: w grows by lr
        try:
            train(model, (x, y, x_test, y_test), loss="mse", optimizer="sgd", lr=1.0, steps=steps, objective=objective)
        except TrainingDivergedError as exc:
            return model, str(exc)
        return model, None

    failed, message = run(40)
    found = re.search(r"held-out \(test\) loss became inf at step (\d+)", message or "")
    assert found, message
    k = int(found.group(1))  # 5: 4 squared errors ((w1 + w2) 1e18)^2 sum past float32's 3.4e38 near w1 + w2 = 9
    assert 1 < k < 40
    reference, none = run(k - 1)
    assert none is None
    _assert_state(failed, _state(reference))
    assert f"restored to its parameters and buffers after step {k - 1}," in message
