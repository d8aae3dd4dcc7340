"""A small, deterministic training loop for the verification experiments.

:func:`train` runs ``steps`` optimiser steps of SGD, Adam or Rprop (full batch
or seeded mini-batches), evaluates the *true network* on the training and
held-out data every ``eval_every`` steps, and returns a :class:`TrainResult`
with the curves.  A NaN or inf objective, gradient, training loss, held-out loss or parameter raises
:class:`~symact.errors.TrainingDivergedError` naming the step, where it appeared,
the value and what to try; nothing is clipped silently.  The model is then left with the
parameters (and buffers, such as batch-norm statistics) it had after the last step at which
its objective was computed and finite, and the error says which step that was.  Invalid arguments (a
learning rate that is not a finite positive number, non-finite data, inputs whose
dtype is not the model's, labels that are not one integer class index per row,
labels other than 0/1 under a BCE loss) raise :class:`~symact.errors.DomainError`
before any step.  The curves are measured in eval mode (dropout off).

The objective defaults to the output loss of ``model(x)``; a custom
``objective(step, index, x, y)`` (for example :meth:`numeric.rai.RAI.objective`)
replaces it while the recorded curves still measure the true network.

>>> import torch
>>> from numeric.train import train
>>> torch.manual_seed(0) and None
>>> model = torch.nn.Linear(1, 1)
>>> x = torch.linspace(-1, 1, 8)[:, None]; y = (x[:, 0] > 0).long()
>>> result = train(model, (x, y), loss="bce_logits", optimizer="adam", lr=0.1, steps=50)
>>> result.train_loss[-1] < result.train_loss[0]
True
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Callable, Sequence

from symact.errors import DomainError, SymactError, TrainingDivergedError

__all__ = ["TrainResult", "train", "build_mlp", "activation_module", "output_loss", "accuracy", "make_optimizer",
           "resolve_device", "LOSSES", "OPTIMIZERS"]

LOSSES = ("bce_prob", "bce_logits", "cross_entropy", "mse")
OPTIMIZERS = ("sgd", "adam", "rprop")


@dataclass(frozen=True)
class TrainResult:
    """Curves of one training run, evaluated on the true network.

    ``steps[i]`` is the number of optimiser steps taken before the evaluation
    that gave ``train_loss[i]`` etc. (so ``steps[0] == 0`` is the initial
    network).  ``objective[i]`` is the optimised quantity at the same parameters
    as ``train_loss[i]``: the value the step after that evaluation computes
    before its update (on its mini-batch), or for the final parameters one more
    evaluation of the objective on the next batch (its step index is ``steps``).  For plain
    training with a full batch it equals ``train_loss``.  Held-out
    curves are empty when there is no held-out data.
    """

    steps: tuple[int, ...]
    train_loss: tuple[float, ...]
    train_accuracy: tuple[float, ...]
    test_loss: tuple[float, ...]
    test_accuracy: tuple[float, ...]
    objective: tuple[float, ...]
    seconds: float

    @property
    def final_train_loss(self) -> float:
        return self.train_loss[-1]

    @property
    def final_test_loss(self) -> float | None:
        return self.test_loss[-1] if self.test_loss else None

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    def __repr__(self) -> str:
        test = f", test_loss={self.test_loss[-1]:.4g}" if self.test_loss else ""
        return (
            f"TrainResult(steps={self.steps[-1]}, train_loss={self.train_loss[0]:.4g}->"
            f"{self.train_loss[-1]:.4g}{test}, {self.seconds:.2f}s)"
        )


def resolve_device(device: Any = None) -> Any:
    """``torch.device(device)`` that torch can run on; ``None``: CUDA when available, else CPU.

    An unknown name (``"tpu"``) or a device torch cannot see (``"cuda"`` on a machine
    without a GPU, ``"cuda:3"`` with one GPU) is a :class:`DomainError` naming the fix,
    instead of torch's error at the first tensor.

    >>> resolve_device("cpu")
    device(type='cpu')
    """
    import torch

    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise DomainError(f"device={device!r} is not a torch device; use 'cpu', 'cuda' or 'cuda:N'") from None
    if resolved.type == "cpu":
        return resolved
    backend = getattr(torch, resolved.type, None)
    available = backend is not None and hasattr(backend, "is_available") and backend.is_available()
    if not available:
        raise DomainError(f"device={device!r}: torch sees no {resolved.type.upper()} device here; use device='cpu'")
    count = getattr(backend, "device_count", lambda: 1)()
    if resolved.index is not None and resolved.index >= count:
        raise DomainError(f"device={device!r}: torch sees {count} {resolved.type} device(s) "
                          f"({resolved.type}:0 to {resolved.type}:{count - 1})")
    return resolved


def _output_columns(output: Any, y: Any, loss: str) -> Any:
    """``output`` as an (n, columns) tensor for the labels ``y`` (n,), refusing shapes ``loss`` cannot score.

    A 1-D output of n entries (a model ending in ``squeeze(-1)``) is one column.  Left as it was, mse
    broadcast it against the (n, 1) targets into an n-by-n difference (a wrong number with only a warning)
    and accuracy took the argmax over the n examples."""
    if loss not in LOSSES:
        raise SymactError(f"Unknown loss {loss!r}; choose one of {LOSSES}.")
    n = int(y.shape[0]) if y.dim() else None
    if output.dim() == 1 and n is not None and output.shape[0] == n:
        output = output[:, None]
    if output.dim() != 2 or y.dim() != 1 or output.shape[0] != n:
        raise DomainError(f"The network's output has shape {tuple(output.shape)} for labels of shape {tuple(y.shape)}; "
                          f"loss={loss!r} needs outputs of shape (n, columns) (or (n,) for one column) with one row "
                          "per label.")
    columns = int(output.shape[1])
    if loss in ("bce_prob", "bce_logits") and columns != 1:
        raise DomainError(f"loss={loss!r} scores one output per example, but the network has {columns} output columns "
                          f"(shape {tuple(output.shape)}); use loss='cross_entropy' for {columns} class logits, or "
                          "build the network with out_features=1.")
    if loss == "cross_entropy" and columns < 2:
        # one logit column: softmax over it is 1, so the loss is 0 for every parameter (or a bare IndexError)
        raise DomainError("loss='cross_entropy' needs one output column per class (at least 2), but the network has 1 "
                          "(its softmax is identically 1, so the loss would be 0 whatever the parameters); use "
                          "loss='bce_logits' for one logit, or build the network with out_features=<classes>.")
    return output


def output_loss(output: Any, y: Any, loss: str) -> Any:
    """Mean loss of network outputs against integer labels.

    ``bce_prob``: outputs of shape (n, 1) are probabilities in (0, 1) (a sigmoid
    output layer, as in the RAI seed); ``bce_logits``: (n, 1) logits;
    ``cross_entropy``: (n, classes) logits, classes >= 2; ``mse``: one-hot regression
    ((n, 1): regression onto the 0/1 labels).  An output of shape (n,) is one column;
    other shapes, and ``bce_prob`` outputs outside [0, 1], are a :class:`DomainError`.  NaN outputs
    give a NaN loss under every loss.
    """
    import torch
    import torch.nn.functional as F

    output = _output_columns(output, y, loss)
    if loss == "bce_prob":
        p = output.reshape(-1)
        # torch refuses a NaN or a value outside [0, 1] with a bare RuntimeError (a device-side assert on
        # CUDA), so a network whose sigmoid output turned NaN escaped the loop's divergence report
        if p.numel() and not bool(((p >= 0) & (p <= 1)).all()):
            finite = p.detach()[~torch.isnan(p.detach())]
            if finite.numel() and not bool(((finite >= 0) & (finite <= 1)).all()):
                raise DomainError(
                    f"loss='bce_prob' needs outputs that are probabilities in [0, 1] (a sigmoid output layer), but "
                    f"the network's outputs range over [{float(finite.min()):.4g}, {float(finite.max()):.4g}]; end "
                    "the network with a sigmoid (build_mlp(..., output_activation='sigmoid')), or use "
                    "loss='bce_logits' for raw outputs.")
            return p.sum() * math.nan  # NaN outputs: a NaN loss, as under the other losses
        return F.binary_cross_entropy(p, y.to(output.dtype))
    if loss == "bce_logits":
        return F.binary_cross_entropy_with_logits(output.reshape(-1), y.to(output.dtype))
    if loss in ("cross_entropy", "mse") and output.shape[-1] > 1 and y.numel():
        top = int(y.max())
        if top >= output.shape[-1]:  # torch: a bare IndexError (cross_entropy) or one_hot's RuntimeError (mse)
            raise DomainError(f"Labels run up to {top} but the network has {output.shape[-1]} outputs; a "
                              f"{loss!r} loss needs one output per class: build it with out_features={top + 1}.")
    if loss == "cross_entropy":
        return F.cross_entropy(output, y)
    target = F.one_hot(y, output.shape[-1]).to(output.dtype) if output.shape[-1] > 1 else y.to(output.dtype)[:, None]
    return F.mse_loss(output, target)


def accuracy(output: Any, y: Any, loss: str) -> float:
    """Fraction of correctly classified examples for the output convention of ``loss``.

    One output column (or an output of shape (n,)) is thresholded at 0.5 for ``bce_prob`` and ``mse``
    (a probability, or a regression on the 0/1 labels) and at 0 for ``bce_logits``; several columns are
    classified by argmax.
    """
    output = _output_columns(output, y, loss)
    if output.shape[-1] == 1:
        threshold = 0.5 if loss in ("bce_prob", "mse") else 0.0
        pred = (output.reshape(-1) > threshold).long()
    else:
        pred = output.argmax(-1)
    return float((pred == y).double().mean())


def make_optimizer(name: str, params: Any, lr: float, **options: Any) -> Any:
    """``torch.optim`` optimiser by name: ``sgd`` (momentum option), ``adam``, ``rprop``.

    ``lr`` must be a finite number > 0 and no option may be NaN (:class:`DomainError` otherwise; torch accepts
    NaN for ``lr``, SGD's ``momentum``, ``dampening`` and ``weight_decay`` and Rprop's ``step_sizes``).  Adam's
    ``eps`` must not round to 0 in the parameters' dtype: its default 1e-8 is 0 in float16, where the first
    update is then NaN (pass ``eps=1e-4`` there).  An ``lr`` whose first step torch cannot convert to the dtype
    it computes in (Adam: ``lr / (1 - beta1)`` above float32's largest number 3.4e38 for float32, float16 and
    bfloat16 parameters; SGD and Rprop: ``lr`` above the largest number of the parameters' dtype) is a
    :class:`DomainError` naming the largest ``lr`` accepted; torch raised a bare ``RuntimeError`` at the first
    step."""
    import torch

    _check_lr(lr)
    for key, value in options.items():
        # torch checks momentum, dampening, weight_decay (SGD) or Rprop's step_sizes with comparisons
        # (`< 0`) that NaN passes, and inf too; every step is then NaN, reported as divergence blamed on the
        # learning rate
        entries = value if isinstance(value, (tuple, list)) else (value,)
        if any(isinstance(v, float) and not math.isfinite(v) for v in entries):
            what = "NaN" if any(isinstance(v, float) and math.isnan(v) for v in entries) else "infinite"
            raise DomainError(f"optimizer option {key}={value!r} is {what}; pass a finite number (or leave {key} out "
                              f"for torch's default).")
    if not isinstance(name, str):
        raise SymactError(f"Unknown optimizer {name!r}; choose one of {OPTIMIZERS}.")
    name = name.lower()
    classes = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "rprop": torch.optim.Rprop}
    if name not in classes:
        raise SymactError(f"Unknown optimizer {name!r}; choose one of {OPTIMIZERS}.")
    params = list(params)
    if not params:  # torch: "optimizer got an empty parameter list"
        raise DomainError("there are no parameters to train (an empty parameters= list, or a model without "
                          "parameters); pass the tensors to optimise.")
    import inspect

    valid = [k for k in inspect.signature(classes[name].__init__).parameters if k not in ("self", "params", "lr")]
    unknown = [k for k in options if k not in valid]
    if unknown:  # Adam(momentum=0.9) was a bare TypeError
        raise DomainError(f"optimizer {name!r} has no option {unknown[0]!r}; its options are {valid}.")
    if name == "adam":
        _check_adam_eps(params, options)
    try:
        opt = classes[name](params, lr=lr, **options)
    except ValueError as exc:  # torch's range checks (Adam weight_decay=-1: "Invalid weight_decay value: -1")
        raise DomainError(f"optimizer {name!r}: {exc}; pass values in the range torch.optim.{classes[name].__name__} "
                          "accepts (or leave the option out for its default).") from None
    _check_step_size_fits_dtype(name, opt)
    return opt


def _check_adam_eps(params: Sequence[Any], options: dict) -> None:
    """Adam's step is m / (sqrt(v) + eps): where a gradient is 0 (a dead unit), or its square underflows in the
    parameters' dtype (float16: |g| below about 5e-3), v rounds to 0, and an eps that rounds to 0 in that dtype
    makes the step 0/0 or m/0 at once.  Adam's default 1e-8 is 0 in float16, and torch accepts eps = 0; both
    trained into NaN that was reported as divergence with "try a smaller learning rate"."""
    import inspect

    import torch

    default = inspect.signature(torch.optim.Adam.__init__).parameters["eps"].default
    groups = params if params and isinstance(params[0], dict) else [{"params": params}]
    for group in groups:
        eps = group.get("eps", options.get("eps", default))
        if not isinstance(eps, (int, float)) or isinstance(eps, bool):
            continue   # torch checks it
        tensors = group["params"]
        tensors = [tensors] if isinstance(tensors, torch.Tensor) else list(tensors)
        for dtype in sorted({t.dtype for t in tensors if t.is_floating_point()}, key=str):
            if eps >= 0 and float(torch.tensor(eps, dtype=dtype)) == 0:
                raise DomainError(
                    f"optimizer 'adam' with {dtype} parameters: eps={eps!r} is 0 in {dtype}, so where a gradient "
                    f"is 0 or its square underflows, the step m / (sqrt(v) + eps) divides by 0 and the first "
                    "update is NaN (Adam's default eps=1e-8 is 0 in float16). Pass optimizer_options={'eps': 1e-4} "
                    f"(at least {torch.finfo(dtype).tiny:.3g}, the smallest normal number of {dtype}), or train in "
                    "float32 or bfloat16.")


def _largest_first_step_size(name: str, beta1: float, dtype: Any) -> tuple[float, Any]:
    """The largest ``lr`` torch's first step accepts for optimizer ``name`` with parameters of ``dtype``, and the
    dtype the step's scalar is converted to (see :func:`_check_step_size_fits_dtype`)."""
    import torch

    if name == "adam":  # the scalar is lr / (1 - beta1), converted to the op's compute type: float32 for 16-bit
        target = torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype
        limit, bias_correction1 = torch.finfo(target).max, 1 - beta1 ** 1
        largest = limit * bias_correction1
        # torch computes lr / bias_correction1 in double: step to the exact last lr whose quotient fits
        while largest / bias_correction1 > limit:
            largest = math.nextafter(largest, 0.0)
        while math.nextafter(largest, math.inf) / bias_correction1 <= limit:
            largest = math.nextafter(largest, math.inf)
        return largest, target
    return torch.finfo(dtype).max, dtype  # SGD's alpha=-lr and Rprop's initial step sizes are in the parameters' dtype


def _check_step_size_fits_dtype(name: str, opt: Any) -> None:
    """Refuse a learning rate whose first step torch cannot convert to the dtype it computes in.

    Torch converts one scalar per step into a compute dtype and raises a bare ``RuntimeError: value cannot be
    converted to type float without overflow`` when it exceeds that dtype's largest finite number (an inf
    scalar passes).  Measured on torch 2.13 (CPU, for-loop and ``foreach`` paths alike), with ``F`` the largest
    finite number of the dtype named:

    * ``adam``: the step size ``lr / (1 - beta1**t)``, largest at the first step ``t = 1``, converted to the
      parameters' dtype, float32 for float16 and bfloat16 parameters: refused iff ``lr / (1 - beta1) > F``
      (float32, beta1 = 0.9: lr > 3.4028234663852877e37);
    * ``sgd``: ``alpha = -lr``, in the parameters' dtype: refused iff ``lr > F`` (float16: lr > 65504);
    * ``rprop``: its initial step sizes, ``full_like(grad, lr)``: refused iff ``lr > F``.

    In float64 torch accepts an Adam step size that overflows to inf (lr > 1.797e307 with beta1 = 0.9), which
    makes every parameter inf at the first step; the same rule refuses it here.
    The rule is checked per parameter group and floating dtype, after torch has validated the options and before
    any step, so the model is unchanged."""
    import torch

    for group in opt.param_groups:
        lr = float(group["lr"])
        beta1 = float(group["betas"][0]) if name == "adam" else 0.0
        dtypes = sorted({p.dtype for p in group["params"] if p.is_floating_point()}, key=str)
        for dtype in dtypes:
            largest, target = _largest_first_step_size(name, beta1, dtype)
            if lr <= largest:
                continue
            refusal = "torch refuses the step (\"value cannot be converted ... without overflow\")"
            if name == "adam":
                step_size = lr / (1 - beta1 ** 1)
                what = (f"its first step size lr / (1 - beta1) = {step_size:.6g} (beta1={beta1}, computed in {target}) "
                        f"is larger than {target}'s largest number {torch.finfo(target).max:.6g}")
                if math.isinf(step_size):  # torch converts inf without complaint: every parameter becomes inf
                    refusal = "the first step would make every parameter with a nonzero gradient infinite"
                remedy = (f"Pass lr <= {largest!r} (that largest number times 1 - beta1); Adam's steps have size "
                          "about lr whatever the gradients' scale, so a much smaller lr is usual")
            elif name == "sgd":
                what = f"the update factor lr is larger than {target}'s largest number {torch.finfo(target).max:.6g}"
                remedy = f"Pass lr <= {largest!r}" + (", or train in float32" if largest < 1e38 else "")
            else:
                what = (f"its initial step size lr is larger than {target}'s largest number "
                        f"{torch.finfo(target).max:.6g}")
                remedy = (f"Pass lr <= {largest!r}; Rprop clamps its step sizes to step_sizes[1] = "
                          f"{group['step_sizes'][1]!r} at the first step anyway, so any larger lr takes steps of "
                          "that size")
            raise DomainError(f"lr={lr!r} is too large for optimizer {name!r} with {dtype} parameters: {what}, "
                              f"and {refusal}. {remedy}.")


def _evaluate(model: Any, x: Any, y: Any, loss: str) -> tuple[float, float]:
    """Loss and accuracy of ``model`` in eval mode (dropout off, batch-norm running statistics neither used
    from the batch nor updated), restoring its training mode afterwards."""
    import torch

    modes = [(m, m.training) for m in model.modules()] if isinstance(model, torch.nn.Module) else []
    for m, _ in modes:
        m.training = False
    try:
        with torch.no_grad():
            out = model(x)
            return float(output_loss(out, y, loss)), accuracy(out, y, loss)
    finally:
        for m, mode in modes:  # per module: a submodule the caller froze in eval mode stays so
            m.training = mode


def _check_lr(lr: Any) -> None:
    """A learning rate must be a finite number > 0 (NaN or inf would only surface later as 'divergence')."""
    try:
        if isinstance(lr, (bool, str)):  # float(True) == 1.0 would train at lr=1; "0.1" reached torch's "<="
            raise TypeError
        value = float(lr)
    except (TypeError, ValueError, RuntimeError):
        raise DomainError(f"lr must be a finite number > 0, got {lr!r}; pass e.g. lr=1e-3.") from None
    if not (math.isfinite(value) and value > 0):
        raise DomainError(f"lr must be a finite number > 0, got lr={value}; pass e.g. lr=1e-3 "
                          "(a NaN or infinite learning rate makes every step non-finite).")


def _check_finite_data(named: Sequence[tuple[str, Any]]) -> None:
    import torch

    for name, t in named:
        if isinstance(t, torch.Tensor) and (t.is_floating_point() or t.is_complex()):
            bad = int((~torch.isfinite(t)).sum())
            if bad:
                raise DomainError(f"{name} has {bad} NaN or infinite entr{'y' if bad == 1 else 'ies'}; "
                                  "remove or impute them before training (every loss computed from them is NaN).")


def _check_data(data: Sequence[Any], loss: str, params: Sequence[Any]) -> None:
    """Shapes, dtypes and labels of ``data`` before any step (torch's own errors name none of the fixes).

    Labels outside {0, 1} under a binary loss are the silent case: BCE with target -1 or 2 is a number
    (unbounded below), so training would run and report nonsense."""
    import torch

    if len(data) not in (2, 4):
        raise DomainError(f"data must be (x_train, y_train) or (x_train, y_train, x_test, y_test), got "
                          f"{len(data)} items; pass the held-out inputs together with their labels.")
    names = ("x_train", "y_train", "x_test", "y_test")
    if len(data) == 4 and data[2] is None and data[3] is None:  # (x, y, None, None): no held-out data
        data = data[:2]
    for name, t in zip(names, data):
        if not isinstance(t, torch.Tensor):
            raise DomainError(f"{name} must be a torch tensor, got {type(t).__name__}; convert it with "
                              "torch.as_tensor(...) (or use numeric.datasets.Dataset.torch()).")
    if data[0].dim() >= 1 and data[0].shape[0] == 0:  # the mean loss over no rows is NaN: a 'diverged' network
        raise DomainError("x_train has no rows; training needs at least one example (held-out data may be empty).")
    param_dtype = next((p.dtype for p in params if p.is_floating_point()), None)
    param_device = next((p.device for p in params), None)
    for xn, yn, x, y in zip(names[::2], names[1::2], data[::2], data[1::2]):
        if not x.is_floating_point():
            raise DomainError(f"{xn} has dtype {x.dtype}; inputs must be floating point: pass "
                              f"{xn}.to({param_dtype or torch.get_default_dtype()}).")
        if param_device is not None and (x.device != param_device or y.device != param_device):
            raise DomainError(f"{xn}/{yn} are on {x.device}/{y.device} but the model's parameters on {param_device}; "
                              f"move them with .to({str(param_device)!r}) (Dataset.torch(device=...) does it).")
        if param_dtype is not None and x.dtype != param_dtype:
            raise DomainError(f"{xn} has dtype {x.dtype} but the model's parameters are {param_dtype}; pass "
                              f"{xn}.to({param_dtype}) or convert the model with model.to({x.dtype}).")
        if x.dim() < 1 or y.dim() != 1 or len(x) != len(y):
            raise DomainError(f"{yn} must hold one label per row of {xn} (shape ({len(x) if x.dim() else '?'},)), "
                              f"got {xn} of shape {tuple(x.shape)} and {yn} of shape {tuple(y.shape)}.")
        if y.dtype != torch.long:  # int32 labels reached torch's "expected target dtype to be Long or Byte"
            raise DomainError(f"{yn} has dtype {y.dtype}; labels are integer class indices of dtype torch.long: "
                              f"pass {yn}.long().")
        if len(y) and loss in ("bce_prob", "bce_logits") and not bool(((y == 0) | (y == 1)).all()):
            found = sorted({int(v) for v in torch.unique(y)})[:6]
            raise DomainError(f"{yn} has labels {found} but loss={loss!r} needs labels 0 and 1; map them first "
                              f"(e.g. labels -1/+1: ({yn} > 0).long()).")
        if len(y) and int(y.min()) < 0:
            raise DomainError(f"{yn} has negative labels (min {int(y.min())}); class indices run from 0.")
    if len(data) == 4 and data[2].shape[1:] != data[0].shape[1:]:
        raise DomainError(f"x_test rows have shape {tuple(data[2].shape[1:])} but x_train rows "
                          f"{tuple(data[0].shape[1:])}; the held-out data must have the training data's features.")


def _check_finite_gradients(params: Sequence[Any], model: Any, step: int, objective_value: float) -> None:
    """Raise :class:`TrainingDivergedError` when a gradient of step ``step`` has NaN or inf entries, before the
    optimiser applies it: with a finite objective it would only show one step later, as NaN parameters."""
    import torch

    grads = [p.grad for p in params if getattr(p, "grad", None) is not None]
    if _largest_magnitude_is_finite(grads):
        return
    names = {id(p): name for name, p in getattr(model, "named_parameters", lambda: ())()}
    for i, p in enumerate(params):
        grad = getattr(p, "grad", None)
        if grad is None or bool(torch.isfinite(grad).all()):
            continue
        bad = int((~torch.isfinite(grad)).sum())
        label = f"parameter {names[id(p)]!r}" if id(p) in names else f"parameter {i} (of the {len(params)} trained)"
        raise TrainingDivergedError(
            f"The gradient became non-finite at step {step} (before its update, which was not applied): {label} "
            f"has {bad} NaN or infinite entr{'y' if bad == 1 else 'ies'} while the objective is finite "
            f"({objective_value:.6g}). The objective is not differentiable there (sqrt or log at 0, 0/0, an "
            "overflow in the backward pass): rewrite it so that its gradient is finite, or, if earlier steps moved "
            "the parameters far, try a smaller learning rate."
        )


def _largest_magnitude_is_finite(tensors: Sequence[Any]) -> bool:
    """Whether every entry of ``tensors`` is finite, with one device synchronisation: the largest |entry| over
    all of them is NaN or inf exactly when some entry is."""
    import torch

    tensors = [t.detach() for t in tensors if t.numel() and (t.is_floating_point() or t.is_complex())]
    if not tensors:
        return True
    device = tensors[0].device
    # abs().amax(), not linalg.vector_norm(t, inf): the same number (NaN propagates through both), 4 times faster on
    # one CPU thread (1.9 against 8.1 ms for the 202 tensors of a 100-layer width-100 MLP)
    return bool(torch.isfinite(torch.stack([t.abs().amax().to(device) for t in tensors]).max()))


def _check_finite_parameters(params: Sequence[Any], model: Any, step: int, optimizer: str, lr: float) -> None:
    """Raise :class:`TrainingDivergedError` when the parameters after ``step`` steps have a NaN or inf entry: the
    update to them overflowed from finite gradients (a huge learning rate, a momentum buffer that overflowed), or
    the objective wrote into them."""
    import torch

    if _largest_magnitude_is_finite(params):
        return
    names = {id(p): name for name, p in getattr(model, "named_parameters", lambda: ())()}
    for i, p in enumerate(params):
        if not p.numel() or bool(torch.isfinite(p.detach()).all()):
            continue
        bad = int((~torch.isfinite(p.detach())).sum())
        label = f"parameter {names[id(p)]!r}" if id(p) in names else f"parameter {i} (of the {len(params)} trained)"
        raise TrainingDivergedError(
            f"Training diverged at step {step}: the update to it left {label} with {bad} NaN or infinite "
            f"entr{'y' if bad == 1 else 'ies'} (its gradients were finite; {optimizer}, lr={lr}). "
            "Try a smaller learning rate, another optimizer (rprop and adam are scale-free), or a shaped/normalised "
            "initialisation."
        )


class _LastFiniteState:
    """The trained parameters and the model's buffers as they were after the last step whose objective was computed
    and finite, put back when training diverges.

    One preallocated copy of each, overwritten in place every step (memory: one more copy of the parameters and
    buffers; time: one device copy of them per step).  Buffers are held before each objective's forward pass
    (which moves batch-norm statistics) and kept once its value is finite, so they need a second copy."""

    def __init__(self, params: Sequence[Any], buffers: Sequence[Any]):
        self.params = [p for p in params if p.numel()]
        self.buffers = [b for b in buffers if b.numel()]
        self.param_copies = [p.detach().clone() for p in self.params]
        self.buffer_copies = [b.detach().clone() for b in self.buffers]
        self.held_buffers = [b.detach().clone() for b in self.buffers]
        self.steps = 0  # the copies hold the state after this many steps

    @staticmethod
    def _copy(targets: list, sources: list) -> None:
        import torch

        if targets:
            with torch.no_grad():
                torch._foreach_copy_(targets, [t.detach() for t in sources])

    def hold_buffers(self) -> None:
        self._copy(self.held_buffers, self.buffers)

    def save(self, steps: int) -> None:
        """Keep the parameters as they are now and the buffers held last: the state after ``steps`` steps."""
        self._copy(self.param_copies, self.params)
        self._copy(self.buffer_copies, self.held_buffers)
        self.steps = steps

    def restored(self, exc: TrainingDivergedError) -> TrainingDivergedError:
        """Put the kept state back; ``exc`` with a sentence saying so."""
        self._copy([p.detach() for p in self.params], self.param_copies)
        self._copy([b.detach() for b in self.buffers], self.buffer_copies)
        where = ("to its initial parameters and buffers (step 0)" if self.steps == 0 else
                 f"to its parameters and buffers after step {self.steps}, the last at which the objective was computed "
                 "and finite")
        return TrainingDivergedError(f"{exc} The model was restored {where}.")


def train(
    model: Any,
    data: Sequence[Any],
    *,
    loss: str = "cross_entropy",
    optimizer: str = "adam",
    lr: float = 1e-3,
    steps: int = 100,
    batch_size: int | None = None,
    seed: int = 0,
    eval_every: int = 1,
    optimizer_options: dict | None = None,
    objective: Callable[[int, Any, Any, Any], Any] | None = None,
    parameters: Any = None,
    progress: Callable[[int, int], None] | None = None,
) -> TrainResult:
    """Train ``model`` and return its curves (see the module docstring).

    ``data`` is ``(x_train, y_train)`` or ``(x_train, y_train, x_test, y_test)``
    (torch tensors on the model's device).  ``batch_size=None`` is full batch;
    otherwise each step draws a batch of example indices from a permutation
    seeded by ``seed`` (an epoch walks the permutation in whole batches and then draws a new one:
    when ``batch_size`` does not divide n, each epoch leaves out the last n mod batch_size
    examples of its permutation, as ``drop_last=True`` does).  ``parameters``
    defaults to ``model.parameters()``; ``progress(step, steps)`` is called after
    every step (for progress bars).

    When training diverges (:class:`TrainingDivergedError`) the model is restored to the parameters and
    buffers it had after step ``k``, the last at which the objective was computed and finite (``k = 0``: as it
    was passed in), and the error names ``k``: the state at which the curves' step ``k`` was measured.  For that :func:`train`
    keeps one copy of the trained parameters and the model's buffers, refreshed every step, and checks after
    every update that the parameters are finite.
    """
    import time

    import torch

    if loss not in LOSSES:
        raise SymactError(f"Unknown loss {loss!r}; choose one of {LOSSES}.")
    for name, value in (("steps", steps), ("eval_every", eval_every), ("batch_size", batch_size), ("seed", seed)):
        if value is not None and (isinstance(value, bool) or not hasattr(value, "__index__")):
            raise DomainError(f"{name} must be a whole number, got {value!r}; pass e.g. {name}=int({value!r}).")
    if steps < 0 or eval_every < 1:
        raise DomainError(f"steps must be >= 0 and eval_every >= 1, got steps={steps}, eval_every={eval_every}.")
    if not 0 <= seed < 2**64:  # torch takes -2**63..2**64 - 1, a negative seed s as 2**64 + s; beyond: a bare ValueError
        raise DomainError(f"seed must be a whole number in 0..2**64 - 1, got seed={seed}.")
    for name, value in (("objective", objective), ("progress", progress)):
        if value is not None and not callable(value):  # found only inside the loop, after a step's work
            raise DomainError(f"{name} must be a function (or None), got {type(value).__name__} {value!r:.40}.")
    _check_lr(lr)
    params = list(parameters if parameters is not None else model.parameters())
    _check_data(data, loss, params)
    x, y = data[0], data[1]
    x_test, y_test = (data[2], data[3]) if len(data) >= 4 else (None, None)
    has_test = x_test is not None and len(x_test) > 0
    _check_finite_data([("x_train", x), ("y_train", y)] + ([("x_test", x_test), ("y_test", y_test)] if has_test else []))
    n = len(x)
    if batch_size is not None and not 0 < batch_size <= n:
        raise DomainError(f"batch_size must lie in 1..{n} (or None for full batch), got {batch_size}.")
    opt = make_optimizer(optimizer, params, lr, **(optimizer_options or {}))
    generator = torch.Generator(device="cpu").manual_seed(int(seed))
    full_index = torch.arange(n, device=x.device)

    def default_objective(step: int, index: Any, xb: Any, yb: Any) -> Any:
        return output_loss(model(xb), yb, loss)

    objective_fn = objective or default_objective
    rec = {k: [] for k in ("steps", "train_loss", "train_accuracy", "test_loss", "test_accuracy", "objective")}

    def when(step: int) -> str:
        return f"at step {step}" + (" (the initial network)" if step == 0 else "")

    def record(step: int) -> None:
        tl, ta = _evaluate(model, x, y, loss)
        if not math.isfinite(tl):
            if step == 0:
                raise TrainingDivergedError(
                    f"The true network's training loss is {tl} at step 0 (the initial network, before any update): "
                    "check the initialisation and the inputs' scale (the data are finite), and that the outputs "
                    f"suit loss={loss!r}."
                )
            raise TrainingDivergedError(
                f"Training diverged {when(step)}: the true network's training loss became {tl} "
                f"({optimizer}, lr={lr}). Try a smaller learning rate or another optimizer."
            )
        rec["steps"].append(step)
        rec["train_loss"].append(tl)
        rec["train_accuracy"].append(ta)
        if has_test:
            vl, va = _evaluate(model, x_test, y_test, loss)
            if not math.isfinite(vl):
                raise TrainingDivergedError(
                    f"The held-out (test) loss became {vl} {when(step)}, while the training loss there is {tl:.6g} "
                    f"({optimizer}, lr={lr}): the network's outputs on x_test are not finite or outside the "
                    f"{loss!r} loss's domain. Check the held-out inputs' scale against the training data "
                    "(the held-out data are finite; a network that overflows there may need normalised inputs "
                    "or a smaller learning rate)."
                )
            rec["test_loss"].append(vl)
            rec["test_accuracy"].append(va)

    start = time.perf_counter()
    order = None
    cursor = n

    def next_index() -> Any:
        nonlocal order, cursor
        if batch_size is None:
            return full_index
        if cursor + batch_size > n:
            order = torch.randperm(n, generator=generator).to(x.device)
            cursor = 0
        index = order[cursor : cursor + batch_size]
        cursor += batch_size
        return index

    def diverged(step: int, value: float) -> TrainingDivergedError:
        if step == 0:  # no update has been made: the learning rate and optimizer cannot be the cause
            return TrainingDivergedError(
                f"The objective of the initial network is {value} (step 0, before any update): check the "
                "objective, the initialisation and the inputs' scale (the data are finite)."
            )
        return TrainingDivergedError(
            f"Training diverged {when(step)}: the objective became {value} "
            f"({optimizer}, lr={lr}). Try a smaller learning rate, another optimizer "
            f"(rprop and adam are scale-free), or a shaped/normalised initialisation."
        )

    # objective[i] is the objective at the parameters of steps[i]: the value step k computes
    # before its update belongs to the evaluation after k steps (recorded at the end of step k - 1).
    # batch-norm running statistics change with every forward pass in training mode: the initial network is
    # evaluated before step 0's objective runs, and the extra objective evaluation after the last step
    # restores the buffers, so that the curves' first and last points measure the initial and returned network
    buffers = list(model.buffers()) if isinstance(model, torch.nn.Module) else []

    def record_initial() -> None:
        try:
            record(0)
        except RuntimeError as exc:  # "mat1 and mat2 shapes cannot be multiplied": x has too few features
            if "shape" not in str(exc):
                raise
            raise DomainError(f"the model cannot take x_train's rows (shape {tuple(x.shape[1:])}): {exc}; give the "
                              "data the features the model's first layer expects, or build the model for "
                              "them.") from exc

    if steps > 0:
        record_initial()
    last_finite = _LastFiniteState(params, buffers)  # after 0 steps: the model as it was passed in
    try:
        for step in range(steps):
            index = next_index()
            opt.zero_grad(set_to_none=True)
            if step > 0:
                last_finite.hold_buffers()  # the objective's forward pass moves batch-norm statistics
            value = objective_fn(step, index, x[index], y[index])
            if not (isinstance(value, torch.Tensor) and value.numel() == 1 and value.requires_grad):
                # float(value.detach()) / value.backward() raised bare AttributeError, ValueError or RuntimeError
                got = (f"{type(value).__name__} {value!r:.40}" if not isinstance(value, torch.Tensor)
                       else f"a tensor of shape {tuple(value.shape)}" if value.numel() != 1
                       else "a tensor that does not require grad (computed under torch.no_grad() or detached)")
                raise DomainError(f"The objective returned {got} at step {step}; it must return a one-element "
                                  "tensor computed from the trained parameters, such as a mean loss.")
            objective_value = float(value.detach())
            if not math.isfinite(objective_value):
                raise diverged(step, objective_value)
            if step > 0:  # the objective is finite after `step` steps: the state to go back to from here on
                last_finite.save(step)
            if rec["steps"][-1] == step and len(rec["objective"]) < len(rec["steps"]):
                rec["objective"].append(objective_value)
            value.backward()
            _check_finite_gradients(params, model, step, objective_value)
            opt.step()
            if (step + 1) % eval_every == 0 or step + 1 == steps:
                record(step + 1)
            # after record, whose loss check names a NaN network first; this catches the steps between
            # evaluations, and parameters the losses do not see
            _check_finite_parameters(params, model, step + 1, optimizer, lr)
            if progress is not None:
                progress(step + 1, steps)
        if steps == 0 or len(rec["objective"]) < len(rec["steps"]):  # the parameters after the last step
            if steps == 0:
                record_initial()
            index = next_index()
            saved = [b.detach().clone() for b in buffers]
            try:
                with torch.no_grad():
                    value = objective_fn(steps, index, x[index], y[index])
                if not (isinstance(value, torch.Tensor) and value.numel() == 1):  # steps=0: never checked in the loop
                    got = (f"{type(value).__name__} {value!r:.40}" if not isinstance(value, torch.Tensor)
                           else f"a tensor of shape {tuple(value.shape)}")
                    raise DomainError(f"The objective returned {got} at step {steps}; it must return a one-element "
                                      "tensor computed from the trained parameters, such as a mean loss.")
                objective_value = float(value)
            finally:
                with torch.no_grad():
                    for b, v in zip(buffers, saved):
                        b.copy_(v)
            if not math.isfinite(objective_value):
                if steps == 0:
                    raise TrainingDivergedError(
                        f"The objective of the initial network is {objective_value} (steps=0): check the data, "
                        "the objective and the initialisation."
                    )
                raise diverged(steps, objective_value)
            rec["objective"].append(objective_value)
    except TrainingDivergedError as exc:
        if steps == 0:  # no step ran: nothing changed the model
            raise
        raise last_finite.restored(exc) from None
    return TrainResult(
        steps=tuple(rec["steps"]),
        train_loss=tuple(rec["train_loss"]),
        train_accuracy=tuple(rec["train_accuracy"]),
        test_loss=tuple(rec["test_loss"]),
        test_accuracy=tuple(rec["test_accuracy"]),
        objective=tuple(rec["objective"]),
        seconds=time.perf_counter() - start,
    )

_TORCH_ACTIVATIONS = {
    "tanh": ("Tanh", {}),
    "sigmoid": ("Sigmoid", {}),
    "softplus": ("Softplus", {}),
    "leaky_relu": ("LeakyReLU", {"negative_slope": 0.01}),
    "relu": ("ReLU", {}),
    "identity": ("Identity", {}),
}


def activation_module(name: str) -> Any:
    """A fresh ``torch.nn`` activation module for a few catalogue names (tanh, sigmoid, softplus, leaky_relu, relu, identity)."""
    import torch.nn as nn

    if name not in _TORCH_ACTIVATIONS:
        raise SymactError(f"No built-in torch module for activation {name!r}; choose one of {sorted(_TORCH_ACTIVATIONS)}.")
    cls, kwargs = _TORCH_ACTIVATIONS[name]
    return getattr(nn, cls)(**kwargs)


def build_mlp(in_features: int, width: int, hidden_layers: int, out_features: int, activation: str, *,
              output_activation: str | None = None, dtype: Any = None, device: Any = None) -> Any:
    """``nn.Sequential`` MLP with ``hidden_layers`` hidden layers (so ``hidden_layers + 1`` linear layers).

    ``build_mlp(2, 100, 100, 1, "sigmoid", output_activation="sigmoid")`` is the RAI
    seed's (2, 100, ..., 100, 1) network with 101 linear layers.  Weights use
    torch's default ``nn.Linear`` initialisation (the "standard init" arm); seed
    torch before calling for reproducibility.
    """
    import torch.nn as nn

    from symact.errors import is_whole_number

    counts = {"in_features": (in_features, 1), "width": (width, 1), "hidden_layers": (hidden_layers, 0),
              "out_features": (out_features, 1)}
    for name, (value, least) in counts.items():
        if not is_whole_number(value, least):
            raise DomainError(f"build_mlp needs a whole number {name} >= {least}, got {name}={value!r}; "
                              f"pass e.g. {name}={max(least, 1)}.")
    activation_module(activation)  # an unknown name is refused even without hidden layers
    if output_activation is not None:
        activation_module(output_activation)
    layers: list = []
    fan_in = in_features
    for _ in range(hidden_layers):
        layers += [nn.Linear(fan_in, width, dtype=dtype, device=device), activation_module(activation)]
        fan_in = width
    layers.append(nn.Linear(fan_in, out_features, dtype=dtype, device=device))
    if output_activation is not None:
        layers.append(activation_module(output_activation))
    return nn.Sequential(*layers)
