r"""Relaxed activation identity (RAI): per-example hidden activations as trainable parameters.

Given a feed-forward network written as stages :math:`f_0, \dots, f_{T-1}` (for
an ``nn.Sequential``: each stage is one ``nn.Linear`` and the non-linear modules
that follow it, up to the next ``nn.Linear``), RAI keeps for every training
example :math:`i` and every stage boundary :math:`t = 1, \dots, T-1` an
auxiliary tensor :math:`z_t^i`, initialised from the forward pass, and breaks
the sequential dependence:

.. math::

    \hat z_{t+1}^i = f_t(z_t^i), \qquad z_0^i = x^i, \\
    \mathcal L = \frac1n \sum_i L_y(y^i, \hat z_T^i)
      + \lambda \sum_{t=1}^{T-1} \frac1n \sum_i \lVert z_t^i - \hat z_t^i \rVert^2 .

Both the network parameters and the :math:`z_t^i` are trained.  At
initialisation every consistency term is exactly zero and :math:`\hat z_T` is
the true network's output, so the RAI loss equals the plain loss.  The network
is always *evaluated* as the true network (``RAI.forward`` is the wrapped
model's forward).  The penalty weight :math:`\lambda` can follow a
:class:`PenaltySchedule` that increases it, as in the method of auxiliary
coordinates (Carreira-Perpinan and Wang, 2014), and mini-batches index the
auxiliary tensors per example.

>>> import torch
>>> torch.manual_seed(0) and None
>>> net = torch.nn.Sequential(torch.nn.Linear(2, 4), torch.nn.Sigmoid(), torch.nn.Linear(4, 1), torch.nn.Sigmoid())
>>> x = torch.randn(5, 2); y = torch.tensor([0, 1, 0, 1, 1])
>>> rai = RAI(net, x, loss="bce_prob")
>>> with torch.no_grad():
...     parts = rai.loss_parts(torch.arange(5), x, y)
>>> float(parts.consistency)
0.0
>>> bool(torch.isclose(parts.total, torch.nn.functional.binary_cross_entropy(net(x)[:, 0], y.float())))
True
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

from symact.errors import DomainError, SymactError

__all__ = ["PenaltySchedule", "RAI", "RAILoss", "split_stages"]


@dataclass(frozen=True)
class PenaltySchedule:
    r"""Consistency weight :math:`\lambda_k = \min(\lambda_{max}, \lambda_0 \cdot g^{\lfloor k / every \rfloor})` at step k.

    ``growth=1`` (default) keeps the weight constant; ``growth > 1`` increases
    it geometrically, as in the quadratic-penalty method of auxiliary
    coordinates.

    >>> PenaltySchedule(1.0, growth=2.0, every=10, maximum=8.0).weight(35)
    8.0
    """

    start: float = 1.0
    growth: float = 1.0
    every: int = 1
    maximum: float = float("inf")

    def __post_init__(self) -> None:
        if self.start < 0 or self.growth < 1 or self.every < 1 or self.maximum < self.start:
            raise DomainError(
                "PenaltySchedule needs start >= 0, growth >= 1, every >= 1 and maximum >= start; "
                f"got {self}."
            )

    def weight(self, step: int) -> float:
        return float(min(self.maximum, self.start * self.growth ** (step // self.every)))

    @classmethod
    def from_spec(cls, spec: Any) -> "PenaltySchedule":
        """A number (constant weight), a dict of the fields, or a PenaltySchedule."""
        if isinstance(spec, PenaltySchedule):
            return spec
        if isinstance(spec, (int, float)):
            return cls(float(spec))
        if isinstance(spec, dict):
            return cls(**spec)
        raise SymactError(f"A penalty is a number, a dict of PenaltySchedule fields or a PenaltySchedule; got {spec!r}.")


class RAILoss(NamedTuple):
    """The parts of the RAI objective: ``total = output + weight * consistency``."""

    total: Any
    output: Any
    consistency: Any
    weight: float


def split_stages(model: Any) -> list:
    """Split an ``nn.Sequential`` (nested ones are flattened) into stages, one per ``nn.Linear``.

    Each stage starts at an ``nn.Linear`` and holds the modules after it up to the
    next ``nn.Linear``; modules before the first linear layer join the first stage.
    """
    import torch.nn as nn

    if not isinstance(model, nn.Sequential):
        raise SymactError(
            f"RAI wraps an nn.Sequential of Linear layers and activations; got {type(model).__name__}. "
            "Rewrite the model as nn.Sequential (nested Sequentials are fine)."
        )

    def flatten(seq: Any) -> list:
        out = []
        for m in seq:
            out.extend(flatten(m) if isinstance(m, nn.Sequential) else [m])
        return out

    modules = flatten(model)
    stages: list[list] = []
    prefix: list = []
    for m in modules:
        if isinstance(m, nn.Linear):
            stages.append(prefix + [m])
            prefix = []
        elif stages:
            stages[-1].append(m)
        else:
            prefix.append(m)
    if len(stages) < 2:
        raise SymactError(
            f"RAI needs at least two nn.Linear layers (found {len(stages)}): with one there is no hidden "
            "activation to relax."
        )
    stages[-1].extend(prefix)
    return [nn.Sequential(*s) for s in stages]


def _torch_module_base() -> type:
    import torch.nn as nn

    return nn.Module


class RAI(_torch_module_base()):
    """Wrap ``model`` (an ``nn.Sequential``) for RAI training on the examples ``x_train``.

    ``aux[t - 1]`` holds :math:`z_t` for all ``n`` examples, shape
    ``(n, width_t)``, initialised to the forward pass of ``x_train``.
    ``forward`` is the true network.  ``loss`` names the output loss (see
    :func:`numeric.train.output_loss`); ``penalty`` is a number or a
    :class:`PenaltySchedule`.
    """

    def __init__(self, model: Any, x_train: Any, *, loss: str = "bce_prob", penalty: Any = 1.0) -> None:
        import torch
        import torch.nn as nn

        super().__init__()
        self.model = model
        self.stages = nn.ModuleList(split_stages(model))
        self.loss_name = loss
        self.penalty = PenaltySchedule.from_spec(penalty)
        self.n_examples = int(x_train.shape[0])
        aux = []
        with torch.no_grad():
            z = x_train
            for stage in self.stages[:-1]:
                z = stage(z)
                aux.append(nn.Parameter(z.detach().clone()))
        self.aux = nn.ParameterList(aux)

    def forward(self, x: Any) -> Any:
        """The true network (no auxiliary tensors)."""
        return self.model(x)

    def extra_repr(self) -> str:
        widths = [int(a.shape[1]) for a in self.aux]
        return f"examples={self.n_examples}, stages={len(self.stages)}, aux_widths={widths[:3]}{'...' if len(widths) > 3 else ''}, loss={self.loss_name!r}, penalty={self.penalty}"

    def loss_parts(self, index: Any, x: Any, y: Any, step: int = 0) -> RAILoss:
        """RAI objective on the examples ``index`` (``x``, ``y`` are those examples' rows).

        Consistency is the sum over stage boundaries of the mean over examples of
        the squared Euclidean distance between :math:`z_t` and :math:`f_{t-1}(z_{t-1})`.
        """
        from numeric.train import output_loss

        if int(x.shape[0]) != int(index.shape[0]):
            raise DomainError(f"RAI.loss_parts: {index.shape[0]} indices for {x.shape[0]} examples.")
        inputs = [x] + [a[index] for a in self.aux]
        consistency = x.new_zeros(())
        output = None
        for t, stage in enumerate(self.stages):
            prediction = stage(inputs[t])
            if t + 1 < len(self.stages):
                consistency = consistency + ((inputs[t + 1] - prediction) ** 2).sum(-1).mean()
            else:
                output = output_loss(prediction, y, self.loss_name)
        weight = self.penalty.weight(step)
        return RAILoss(output + weight * consistency, output, consistency, weight)

    def objective(self, step: int, index: Any, x: Any, y: Any) -> Any:
        """The scalar to minimise at ``step``, in the signature :func:`numeric.train.train` expects."""
        return self.loss_parts(index, x, y, step).total
