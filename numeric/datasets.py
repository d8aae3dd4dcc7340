"""Small, deterministic data sets for the verification experiments.

Two sources:

* :func:`make_moons` reproduces scikit-learn's ``sklearn.datasets.make_moons``
  bit for bit (same points, same order, same noise) without importing
  scikit-learn.  The algorithm, as documented by scikit-learn:

  1. ``n_out = n // 2`` points on the upper half circle
     ``(cos t, sin t)``, ``t = linspace(0, pi, n_out)``, label 0, followed by
     ``n_in = n - n_out`` points on the lower, shifted half circle
     ``(1 - cos t, 1 - sin t - 1/2)``, ``t = linspace(0, pi, n_in)``, label 1;
  2. if ``shuffle``: a permutation drawn by ``RandomState(seed).shuffle`` of
     ``arange(n)`` reorders points and labels together;
  3. if ``noise``: the *same* generator then adds ``normal(scale=noise)`` to
     every coordinate.

* :func:`load_digits` is the 8x8 handwritten-digits set (1797 images, 10
  classes, UCI "optdigits" test part) that ships inside scikit-learn.  It needs
  the optional extra ``symact[verify]`` (scikit-learn); without it a
  :class:`~symact.errors.SymactError` says what to install.

Both come as :class:`Dataset` objects (float64 numpy arrays and integer labels)
with a deterministic train / held-out split.

>>> x, y = make_moons(100, noise=0.1, seed=0)
>>> x.shape, int(y.sum())
((100, 2), 50)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from symact.errors import DomainError, SymactError, is_whole_number

__all__ = [
    "Dataset",
    "make_moons",
    "moons",
    "load_digits",
    "digits",
    "split",
    "dataset",
    "DATASETS",
]


@dataclass(frozen=True, eq=False)
class Dataset:
    """A classification data set with a deterministic train / held-out split.

    ``x_*`` are float64 arrays of shape (n, features); ``y_*`` int64 labels in
    ``range(n_classes)``.  ``x_test`` may have zero rows (no held-out part).
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    n_classes: int
    spec: dict = field(default_factory=dict)

    @property
    def n_features(self) -> int:
        return int(self.x_train.shape[1])

    @property
    def n_train(self) -> int:
        return int(self.x_train.shape[0])

    @property
    def n_test(self) -> int:
        return int(self.x_test.shape[0])

    def torch(self, dtype: Any = None, device: Any = None) -> tuple:
        """``(x_train, y_train, x_test, y_test)`` as torch tensors (labels int64).

        ``dtype`` is the features' dtype, a torch floating-point dtype (default: torch's default dtype);
        anything else -- an integer dtype, a string such as ``"float64"`` -- is a :class:`DomainError`.
        """
        import torch

        dtype = torch.get_default_dtype() if dtype is None else dtype
        # the features are real-valued: torch.int32 silently truncated them to integers, and "float64" was
        # as_tensor's bare TypeError (torch dtypes are objects, as analysis.empirical_kernel also requires)
        if not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
            raise DomainError(f"Dataset.torch: dtype={dtype!r} is not a torch floating-point dtype; the features are "
                              "real numbers, so pass one such as torch.float32 or torch.float64 (an object, not a "
                              "string), or leave it out for torch's default dtype.")
        as_x = lambda a: torch.as_tensor(a, dtype=dtype, device=device)  # noqa: E731
        as_y = lambda a: torch.as_tensor(a, dtype=torch.int64, device=device)  # noqa: E731
        return as_x(self.x_train), as_y(self.y_train), as_x(self.x_test), as_y(self.y_test)

    def __repr__(self) -> str:
        return (
            f"Dataset({self.name!r}, train={self.n_train}, test={self.n_test}, "
            f"features={self.n_features}, classes={self.n_classes})"
        )


def make_moons(
    n_samples: int = 100, *, noise: float | None = None, seed: int | None = 0, shuffle: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Two interleaving half circles, identical to ``sklearn.datasets.make_moons``.

    ``make_moons(n, noise=s, seed=k)`` returns the same ``(X, y)`` as
    ``sklearn.datasets.make_moons(n, noise=s, random_state=k)``: ``X`` float64
    of shape (n, 2), ``y`` int64 with ``n // 2`` zeros (upper moon) and the
    rest ones (lower moon).  ``seed=None`` draws fresh entropy (not
    reproducible), as scikit-learn does.

    >>> x, y = make_moons(4, seed=0, shuffle=False)
    >>> x.round(3).tolist(), y.tolist()
    ([[1.0, 0.0], [-1.0, 0.0], [0.0, 0.5], [2.0, 0.5]], [0, 0, 1, 1])
    """
    # 2.0 is accepted as 2; NaN, inf, 2.5 and True are not (int(nan) raised a bare ValueError)
    if isinstance(n_samples, bool) or not (is_whole_number(n_samples, 1) or (
            isinstance(n_samples, float) and n_samples.is_integer() and n_samples >= 1)):
        raise DomainError(f"make_moons needs a positive integer n_samples, got {n_samples!r}.")
    _check_seed(seed, "make_moons", allow_none=True)
    if noise is not None and not (isinstance(noise, (int, float, np.number)) and not isinstance(noise, bool) and np.isfinite(noise) and noise >= 0):
        raise DomainError(f"make_moons noise is a standard deviation and must be a finite number >= 0, got {noise!r} "
                          "(None for no noise).")
    if not isinstance(shuffle, (bool, np.bool_)):
        raise DomainError(f"make_moons shuffle must be True or False, got {shuffle!r}.")
    n_samples = int(n_samples)
    n_out = n_samples // 2
    n_in = n_samples - n_out
    # The legacy RandomState (Mersenne twister) is what scikit-learn's
    # check_random_state(int) builds; using it keeps the points identical.
    rng = np.random.RandomState(seed)
    t_out = np.linspace(0.0, np.pi, n_out)
    t_in = np.linspace(0.0, np.pi, n_in)
    x = np.empty((n_samples, 2), dtype=np.float64)
    x[:n_out, 0] = np.cos(t_out)
    x[:n_out, 1] = np.sin(t_out)
    x[n_out:, 0] = 1.0 - np.cos(t_in)
    x[n_out:, 1] = 1.0 - np.sin(t_in) - 0.5
    y = np.concatenate([np.zeros(n_out, dtype=np.int64), np.ones(n_in, dtype=np.int64)])
    if shuffle:
        order = np.arange(n_samples)
        rng.shuffle(order)
        x, y = x[order], y[order]
    if noise is not None:
        x = x + rng.normal(scale=noise, size=x.shape)
    return x, y


def _check_seed(seed: Any, where: str, allow_none: bool = False) -> None:
    """A seed is a whole number in 0..2**32 - 1 (what numpy's generators take), or None where allowed."""
    if seed is None and allow_none:
        return
    if not (is_whole_number(seed) and seed < 2**32):
        raise DomainError(f"{where} seed must be a whole number in 0..2**32 - 1"
                          f"{' (or None for fresh entropy)' if allow_none else ''}, got {seed!r}.")


def _check_test_fraction(test_fraction: Any) -> None:
    if isinstance(test_fraction, bool) or not isinstance(test_fraction, (int, float, np.number)) \
            or not 0.0 <= test_fraction < 1.0:
        raise DomainError(f"test_fraction must be a number in [0, 1), got {test_fraction!r}.")


def split(
    x: np.ndarray, y: np.ndarray, *, test_fraction: float, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Deterministic shuffled split ``(x_train, y_train, x_test, y_test)``.

    The last ``round(test_fraction * n)`` rows of a seeded permutation
    (``numpy.random.default_rng(seed)``) are held out.  A fraction that would hold
    out every row (``round(test_fraction * n) == n``), or none although it is positive
    (``round(test_fraction * n) == 0``), is a :class:`DomainError`.
    """
    _check_test_fraction(test_fraction)
    _check_seed(seed, "split")
    n = len(x)
    if len(y) != n:
        raise DomainError(f"split needs one label per row: x has {n} rows, y has {len(y)} labels.")
    n_test = int(round(test_fraction * n))
    if test_fraction > 0 and n_test == 0 and n:
        # the caller asked for held-out data and would get none: train() then records no held-out curve at all
        raise DomainError(f"test_fraction={test_fraction} holds out round({test_fraction} * {n}) = 0 of {n} rows, "
                          f"so there would be no held-out data; use a test_fraction of at least {1 / n:.4g} (one "
                          "row) or more samples, or test_fraction=0 for no held-out part.")
    if n_test >= n and n:
        raise DomainError(f"test_fraction={test_fraction} holds out round({test_fraction} * {n}) = {n_test} of {n} "
                          f"rows, leaving no training data; use a test_fraction below {(n - 0.5) / n:.4g} "
                          "or more samples.")
    order = np.random.default_rng(seed).permutation(n)
    train, test = order[: n - n_test], order[n - n_test :]
    return x[train], y[train], x[test], y[test]


def moons(n_samples: int = 100, *, noise: float = 0.1, seed: int = 0, test_fraction: float = 0.0) -> Dataset:
    """The moons data as a :class:`Dataset`.

    ``moons()`` is the RAI seed's setting (n=100, noise 0.1, everything used for
    training).  ``moons(1000, test_fraction=0.5)`` is the larger split with
    held-out data used by the deep-vanilla experiments.
    """
    _check_test_fraction(test_fraction)  # None or False read as 0 and held out nothing
    x, y = make_moons(n_samples, noise=noise, seed=seed)
    if test_fraction:
        xtr, ytr, xte, yte = split(x, y, test_fraction=test_fraction, seed=seed)
    else:
        xtr, ytr, xte, yte = x, y, x[:0], y[:0]
    spec = {"name": "moons", "n_samples": n_samples, "noise": noise, "seed": seed, "test_fraction": test_fraction}
    return Dataset("moons", xtr, ytr, xte, yte, 2, spec)


def load_digits() -> tuple[np.ndarray, np.ndarray]:
    """The 8x8 digits images shipped with scikit-learn, as ``(X, y)``.

    ``X`` is float64 of shape (1797, 64) with pixel intensities 0..16, ``y``
    int64 labels 0..9.  Raises :class:`~symact.errors.SymactError` naming the
    extra to install when scikit-learn is missing.
    """
    try:
        from sklearn.datasets import load_digits as _sk_load_digits
    except ImportError as exc:  # pragma: no cover - exercised by a monkeypatched test
        raise SymactError(
            "The digits data set ships inside scikit-learn, which is not installed. "
            "Install the optional extra: pip install 'symact[verify]' (or: pip install scikit-learn)."
        ) from exc
    bunch = _sk_load_digits()
    return np.asarray(bunch.data, dtype=np.float64), np.asarray(bunch.target, dtype=np.int64)


def digits(*, seed: int = 0, test_fraction: float = 0.3, n_samples: int | None = None) -> Dataset:
    """The digits data as a :class:`Dataset`: pixels scaled to [0, 1] (divided by 16).

    ``n_samples`` keeps the first rows of a seeded permutation (for quick runs).
    """
    _check_seed(seed, "digits")  # checked before seed + 7919 (1.5 was numpy's bare TypeError)
    _check_test_fraction(test_fraction)
    x, y = load_digits()
    x = x / 16.0
    if n_samples is not None:
        if not (is_whole_number(n_samples, 1) and n_samples <= len(x)):
            raise DomainError(f"digits n_samples must lie in 1..{len(x)}, got {n_samples!r}.")
        keep = np.random.default_rng(seed + 7919).permutation(len(x))[:n_samples]
        x, y = x[keep], y[keep]
    xtr, ytr, xte, yte = split(x, y, test_fraction=test_fraction, seed=seed)
    spec = {"name": "digits", "seed": seed, "test_fraction": test_fraction, "n_samples": n_samples}
    return Dataset("digits", xtr, ytr, xte, yte, 10, spec)


DATASETS = {"moons": moons, "digits": digits}


def dataset(spec: dict | str) -> Dataset:
    """Build a :class:`Dataset` from a serialisable spec, e.g. ``{"name": "moons", "n_samples": 100}``."""
    if isinstance(spec, str):
        spec = {"name": spec}
    spec = dict(spec)
    name = spec.pop("name", None)
    if name not in DATASETS:
        raise SymactError(f"Unknown data set {name!r}; choose one of {sorted(DATASETS)}.")
    import inspect

    fields = [p for p in inspect.signature(DATASETS[name]).parameters]
    unknown = sorted(set(spec) - set(fields))
    if unknown:
        raise DomainError(f"Unknown field(s) {unknown} for data set {name!r}; its fields are {fields}.")
    return DATASETS[name](**spec)
