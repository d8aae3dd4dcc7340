r"""Relaxed activation identity (RAI): per-example hidden activations as trainable parameters.

A feed-forward ``nn.Sequential`` is cut into pieces :math:`g_0, \dots, g_K`
(:math:`g_K \circ \dots \circ g_0` is the network).  RAI keeps, for every
training example :math:`i` and every cut :math:`k = 1, \dots, K`, an auxiliary
tensor :math:`z_k^i`, initialised from the forward pass, and breaks the
sequential dependence:

.. math::

    \hat z_{k+1}^i = g_k(z_k^i), \qquad z_0^i = x^i, \\
    \mathcal L = \frac1n \sum_i L_y\bigl(y^i, g_K(z_K^i)\bigr)
      + \lambda \sum_{k=1}^{K} C\bigl(z_k, \hat z_k\bigr) .

Both the network parameters and the :math:`z_k^i` are trained.  Three options
choose the cuts and :math:`C`:

``aux_at="activation"``
    one piece per *stage* (an ``nn.Linear`` and the non-linear modules after
    it, :func:`split_stages`); :math:`z_k` is a stage's output, after its
    non-linearity.
``aux_at="pre_activation"`` (default)
    :math:`z_k` is an ``nn.Linear``'s output; a piece is the non-linearity of
    one stage followed by the next ``nn.Linear``, so the input of layer
    :math:`k` is :math:`\sigma(z_{k-1})`.
``relax_output=True`` (default) / ``False``
    whether the *last* ``nn.Linear`` (``pre_activation``) or the network
    output (``activation``) is relaxed too.  With ``True`` the output loss is
    :math:`L_y(y, g_K(z_K))` where :math:`g_K` is only what follows the last
    cut (the output non-linearity, or nothing), so with sigmoid outputs and
    ``loss="bce_prob"`` it is :math:`\mathrm{BCE}(\sigma(z_K), y)`.  With
    ``aux_at="activation"`` and ``bce_prob`` the relaxed output is itself a
    free probability; a step that takes it out of [0, 1] is a
    :class:`~symact.errors.DomainError` naming the step.
``reduction="per_example"``
    :math:`C(z, \hat z) = \frac1n \sum_i \lVert z^i - \hat z^i \rVert^2`
    (squared norm per example, averaged over examples);
``reduction="elementwise_mean"`` (default)
    :math:`C(z, \hat z) = \frac1{n\, d} \sum_{i, j} (z^i_j - \hat z^i_j)^2`,
    the mean over all elements of a width-:math:`d` tensor
    (``torch.nn.MSELoss()``'s default).

Neither side of :math:`C` is detached.  The defaults, also :meth:`RAI.seed_protocol`
and the preset ``PROTOCOLS["seed"]``, are the objective of the RAI seed's notebook
(every ``nn.Linear``'s per-example output relaxed, the last one's too, ``MSELoss``
means); on the seed's own setting its true network learns (loss 0.074 after 10000
Rprop steps) where post-activation auxiliaries (``PROTOCOLS["post_activation"]``)
leave it at 0.78.

At initialisation every consistency term is exactly zero and :math:`g_K(z_K)`
is the true network's output in every mode of a deterministic network, so the
RAI loss equals the plain loss.  A stochastic layer breaks this: with dropout in
training mode each pass draws a new mask, so the auxiliaries recorded at
construction do not match the next pass (``Dropout(0.5)`` after the first
linear layer gives a consistency of about 0.3 at initialisation).  The network is always *evaluated* as the true network
(``RAI.forward`` is the wrapped model's forward): a small relaxed objective
does not by itself mean the true network fits.  The penalty weight
:math:`\lambda` can follow a :class:`PenaltySchedule` that increases it, as in
the method of auxiliary coordinates (Carreira-Perpinan and Wang, 2014), and
mini-batches index the auxiliary tensors per example.

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
>>> seed = RAI.seed_protocol(net, x)
>>> [tuple(a.shape) for a in seed.aux]   # both Linear outputs are relaxed
[(5, 4), (5, 1)]
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, NamedTuple

from symact.errors import DomainError, SymactError, is_whole_number

__all__ = ["PenaltySchedule", "RAI", "RAILoss", "split_stages", "PROTOCOLS", "AUX_POSITIONS", "REDUCTIONS"]

AUX_POSITIONS = ("activation", "pre_activation")
REDUCTIONS = ("per_example", "elementwise_mean")

#: Named option sets for :class:`RAI` (``RAI(model, x, **PROTOCOLS[name])``), read-only.
PROTOCOLS = MappingProxyType({
    "post_activation": {"aux_at": "activation", "relax_output": False, "reduction": "per_example"},
    # The RAI seed notebook: every nn.Linear output (the last one too) relaxed, torch MSELoss() means.
    "seed": {"aux_at": "pre_activation", "relax_output": True, "reduction": "elementwise_mean"},
})


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
        import math
        import numbers

        numeric = all(isinstance(v, numbers.Real) and not isinstance(v, bool)
                      for v in (self.start, self.growth, self.maximum))
        # NaN fails every comparison, so it must be refused explicitly (it would make every objective NaN).
        if (not numeric or not is_whole_number(self.every, 1) or not math.isfinite(self.start)
                or not math.isfinite(self.growth) or math.isnan(self.maximum)
                or self.start < 0 or self.growth < 1 or self.maximum < self.start):
            raise DomainError(
                "PenaltySchedule needs finite numbers start >= 0 and growth >= 1, a whole number every >= 1 "
                f"and maximum >= start (inf for no cap); got {self}. Pass e.g. PenaltySchedule(1.0, growth=2.0, "
                "every=100, maximum=1e4)."
            )
        # Python floats from here on: NumPy integers wrap (np.int64(2) ** 63 < 0, ** 70 == 0) and a Python int
        # growth ** k past 2**1024 is an OverflowError from float(), where a float growth overflows to inf
        for name in ("start", "growth", "maximum"):
            object.__setattr__(self, name, float(getattr(self, name)))
        object.__setattr__(self, "every", int(self.every))

    def weight(self, step: int) -> float:
        if not is_whole_number(step):  # a negative step gave a weight below start (growth ** -1)
            raise DomainError(f"PenaltySchedule.weight needs a whole number step >= 0, got {step!r}.")
        # growth ** k overflows a float after a few hundred increases even when ``maximum`` caps the weight
        try:
            raw = self.start * self.growth ** (step // self.every)
        except OverflowError:
            raw = 0.0 if self.start == 0 else float("inf")
        return float(min(self.maximum, raw))

    @classmethod
    def from_spec(cls, spec: Any) -> "PenaltySchedule":
        """A number (constant weight), a dict of the fields, or a PenaltySchedule."""
        if isinstance(spec, PenaltySchedule):
            return spec
        import numbers

        # numbers.Real: a NumPy number (np.int64(2), from a config array) is a number too
        if isinstance(spec, numbers.Real) and not isinstance(spec, bool):
            return cls(float(spec))
        if isinstance(spec, dict):
            unknown = sorted(set(spec) - {"start", "growth", "every", "maximum"})
            if unknown:
                raise DomainError(f"Unknown PenaltySchedule field(s) {unknown} in {spec!r}; the fields are "
                                  "start, growth, every and maximum.")
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


def _pieces(model: Any, aux_at: str, relax_output: bool) -> list:
    """Cut ``model`` into pieces ``g_0..g_K``; the auxiliary tensors sit at the K cuts (see the module docstring)."""
    import torch.nn as nn

    stages = [list(s) for s in split_stages(model)]
    if aux_at == "activation":
        pieces = stages + ([[]] if relax_output else [])
    else:
        pieces, carry = [], []
        for stage in stages:
            i = next(j for j, m in enumerate(stage) if isinstance(m, nn.Linear))
            pieces.append(carry + stage[: i + 1])
            carry = stage[i + 1 :]
        pieces.append(carry)
        if not relax_output:
            last = pieces.pop()
            pieces[-1] = pieces[-1] + last
    # An empty nn.Sequential is the identity (the relaxed output of aux_at="activation").
    return [nn.Sequential(*p) for p in pieces]


class RAI(_torch_module_base()):
    """Wrap ``model`` (an ``nn.Sequential``) for RAI training on the examples ``x_train``.

    ``aux[k - 1]`` holds :math:`z_k` for all ``n`` examples, shape
    ``(n, width_k)``, initialised to the forward pass of ``x_train``.
    ``forward`` is the true network.  ``loss`` names the output loss (see
    :func:`numeric.train.output_loss`); ``penalty`` is a number or a
    :class:`PenaltySchedule`; ``aux_at``, ``relax_output`` and ``reduction``
    are described in the module docstring (the defaults relax every
    ``nn.Linear``'s output, the last one's too, with ``MSELoss`` means: the
    seed's protocol).
    """

    def __init__(self, model: Any, x_train: Any, *, loss: str = "bce_prob", penalty: Any = 1.0,
                 aux_at: str = "pre_activation", relax_output: bool = True,
                 reduction: str = "elementwise_mean") -> None:
        import torch
        import torch.nn as nn

        if aux_at not in AUX_POSITIONS:
            raise SymactError(f"RAI aux_at={aux_at!r} is not one of {AUX_POSITIONS}: 'activation' relaxes each "
                              "stage's output after its non-linearity, 'pre_activation' each nn.Linear's output.")
        if reduction not in REDUCTIONS:
            raise SymactError(f"RAI reduction={reduction!r} is not one of {REDUCTIONS}: 'per_example' averages "
                              "squared norms over examples, 'elementwise_mean' averages over all elements (MSELoss).")
        from numeric.train import LOSSES

        if loss not in LOSSES:
            raise SymactError(f"RAI loss={loss!r} is not one of {LOSSES} (see numeric.train.output_loss).")
        if not isinstance(relax_output, bool):
            raise DomainError(f"RAI relax_output must be True or False, got {relax_output!r}.")
        if not isinstance(x_train, torch.Tensor) or not x_train.is_floating_point() or x_train.dim() < 2:
            raise DomainError(
                "RAI x_train must be a floating-point torch tensor of shape (n_examples, features), got "
                f"{type(x_train).__name__} {getattr(x_train, 'dtype', '')} of shape "
                f"{tuple(getattr(x_train, 'shape', ()))}; convert with torch.as_tensor(x, dtype=...) "
                "(a single example is x[None, :]).")
        param_dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), None)
        if param_dtype is not None and x_train.dtype != param_dtype:
            raise DomainError(f"RAI x_train has dtype {x_train.dtype} but the model's parameters are {param_dtype}; "
                              f"pass x_train.to({param_dtype}) or convert the model with model.to({x_train.dtype}).")
        first = next((m for m in model.modules() if not isinstance(m, nn.Sequential)), None)
        if isinstance(first, nn.Linear) and x_train.dim() == 2 and x_train.shape[1] != first.in_features:
            # torch's "mat1 and mat2 shapes cannot be multiplied" named neither the data nor the layer
            raise DomainError(f"RAI x_train has {x_train.shape[1]} features per example but the network's first "
                              f"nn.Linear takes {first.in_features}; pass the training inputs the model was built for.")
        super().__init__()
        self.model = model
        self.stages = nn.ModuleList(split_stages(model))  # one per nn.Linear (kept for callers; shares modules)
        self.pieces = nn.ModuleList(_pieces(model, aux_at, bool(relax_output)))
        self.loss_name = loss
        self.penalty = PenaltySchedule.from_spec(penalty)
        self.aux_at = aux_at
        self.relax_output = bool(relax_output)
        self.reduction = reduction
        self.n_examples = int(x_train.shape[0])
        aux = []
        # the forward pass that initialises the auxiliaries must not train the model: in training mode it
        # updated batch-norm running statistics (and num_batches_tracked) of the wrapped network
        buffers = list(model.buffers())
        saved = [b.detach().clone() for b in buffers]
        with torch.no_grad():
            z = x_train
            for piece in self.pieces[:-1]:
                z = piece(z)
                aux.append(nn.Parameter(z.detach().clone()))
            for b, v in zip(buffers, saved):
                b.copy_(v)
        self.aux = nn.ParameterList(aux)

    @classmethod
    def seed_protocol(cls, model: Any, x_train: Any, *, penalty: Any = 1.0) -> "RAI":
        """The RAI seed notebook's objective: ``PROTOCOLS["seed"]`` with BCE on sigmoid outputs, weight 1."""
        return cls(model, x_train, loss="bce_prob", penalty=penalty, **PROTOCOLS["seed"])

    def forward(self, x: Any) -> Any:
        """The true network (no auxiliary tensors)."""
        return self.model(x)

    def extra_repr(self) -> str:
        widths = [int(a.shape[1]) for a in self.aux]
        return (f"examples={self.n_examples}, cuts={len(self.aux)}, aux_widths={widths[:3]}"
                f"{'...' if len(widths) > 3 else ''}, aux_at={self.aux_at!r}, relax_output={self.relax_output}, "
                f"reduction={self.reduction!r}, loss={self.loss_name!r}, penalty={self.penalty}")

    def loss_parts(self, index: Any, x: Any, y: Any, step: int = 0) -> RAILoss:
        """RAI objective on the examples ``index`` (``x``, ``y`` are those examples' rows).

        Consistency is the sum over cuts of :math:`C(z_k, g_{k-1}(z_{k-1}))`
        with the chosen ``reduction``, over the examples of the batch.
        """
        from numeric.train import output_loss

        import torch

        # a (n, 1) index gathered (n, 1, width) auxiliaries that broadcast against the (n, width) predictions
        # into an n-by-n comparison of every example with every other (a wrong consistency, no error)
        if not isinstance(index, torch.Tensor) or index.dim() != 1 or index.is_floating_point() \
                or index.is_complex() or index.dtype == torch.bool:
            raise DomainError(
                f"RAI.loss_parts: index must be a 1-D tensor of integer example indices, got "
                f"{type(index).__name__} {getattr(index, 'dtype', '')} of shape {tuple(getattr(index, 'shape', ()))}; "
                "pass e.g. torch.arange(n) or a slice of a permutation (index.reshape(-1).long()).")
        if int(x.shape[0]) != int(index.shape[0]):
            raise DomainError(f"RAI.loss_parts: {index.shape[0]} indices for {x.shape[0]} examples.")
        if not index.numel():  # the means over no examples were NaN, returned without a word
            raise DomainError("RAI.loss_parts: an empty batch (no example indices); pass at least one example.")
        model_dtype = next((p.dtype for p in self.parameters() if p.is_floating_point()), None)
        if model_dtype is not None and getattr(x, "dtype", None) != model_dtype:  # torch's bare "mat1 and mat2"
            raise DomainError(f"RAI.loss_parts: x has dtype {getattr(x, 'dtype', type(x).__name__)} but the model's "
                              f"parameters are {model_dtype}; pass x.to({model_dtype}), as x_train was.")
        if self._is_all_examples(index):
            inputs = [x] + list(self.aux)  # full batch in order: skip 2K gather/scatter copies per step
        else:
            if index.numel() and (int(index.min()) < 0 or int(index.max()) >= self.n_examples):
                # a negative index would silently pick another example's auxiliaries
                raise DomainError(
                    f"RAI.loss_parts: example indices {int(index.min())}..{int(index.max())} outside "
                    f"0..{self.n_examples - 1}; this RAI holds auxiliaries for the {self.n_examples} examples of "
                    "its x_train: train it on that same data (build a new RAI for other data).")
            inputs = [x] + [a[index] for a in self.aux]
        consistency = x.new_zeros(())
        for k, piece in enumerate(self.pieces[:-1]):
            sq = (inputs[k + 1] - piece(inputs[k])) ** 2
            consistency = consistency + (sq.mean() if self.reduction == "elementwise_mean"
                                         else sq.flatten(1).sum(-1).mean())
        final = self.pieces[-1](inputs[-1])
        if self.loss_name == "bce_prob" and len(self.pieces[-1]) == 0:
            # the relaxed output IS a free probability (aux_at="activation", relax_output=True): an optimiser
            # step can take it out of [0, 1], where torch's BCE raises a bare RuntimeError
            low, high = float(final.detach().min()), float(final.detach().max())
            if low < 0.0 or high > 1.0:
                raise DomainError(
                    f"RAI at step {step}: the relaxed output (the last auxiliary tensor, a free probability here) "
                    f"left [0, 1] (min {low:.4g}, max {high:.4g}), where loss='bce_prob' is undefined. Relax the "
                    "last nn.Linear's output instead (aux_at='pre_activation', the seed protocol: the sigmoid is "
                    "applied after the auxiliary), or use relax_output=False.")
        output = output_loss(final, y, self.loss_name)
        weight = self.penalty.weight(step)
        if weight == float("inf"):  # inf * consistency is inf, or NaN where the consistency is 0
            raise DomainError(f"RAI at step {step}: the consistency weight has grown to inf ({self.penalty}); give "
                              "the PenaltySchedule a finite maximum, e.g. maximum=1e4.")
        return RAILoss(output + weight * consistency, output, consistency, weight)

    def _is_all_examples(self, index: Any) -> bool:
        import torch

        if int(index.shape[0]) != self.n_examples:
            return False
        return bool(torch.equal(index, torch.arange(self.n_examples, device=index.device, dtype=index.dtype)))

    def objective(self, step: int, index: Any, x: Any, y: Any) -> Any:
        """The scalar to minimise at ``step``, in the signature :func:`numeric.train.train` expects."""
        return self.loss_parts(index, x, y, step).total
