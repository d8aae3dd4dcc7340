"""numeric.datasets: make_moons matches scikit-learn; digits loads or says what to install."""

import sys

import numpy as np
import pytest

from numeric.datasets import Dataset, dataset, digits, load_digits, make_moons, moons, split
from symact.errors import DomainError, SymactError


@pytest.mark.parametrize("n, noise, seed", [(100, 0.1, 0), (101, 0.3, 7), (7, None, 3), (1000, 0.2, 123)])
def test_make_moons_identical_to_sklearn(n, noise, seed):
    sk = pytest.importorskip("sklearn.datasets")
    x, y = make_moons(n, noise=noise, seed=seed)
    xs, ys = sk.make_moons(n, noise=noise, random_state=seed)
    np.testing.assert_array_equal(x, xs)
    np.testing.assert_array_equal(y, ys)


def test_make_moons_unshuffled_points_lie_on_the_two_half_circles():
    x, y = make_moons(51, seed=0, shuffle=False)
    outer, inner = x[y == 0], x[y == 1]
    assert len(outer) == 25 and len(inner) == 26  # n // 2 on the outer moon
    np.testing.assert_allclose(np.hypot(outer[:, 0], outer[:, 1]), 1.0, atol=1e-15)
    assert (outer[:, 1] >= -1e-15).all()  # upper half circle
    np.testing.assert_allclose(np.hypot(inner[:, 0] - 1.0, inner[:, 1] - 0.5), 1.0, atol=1e-15)
    assert (inner[:, 1] <= 0.5 + 1e-15).all()  # lower half circle


def test_make_moons_noise_has_the_requested_scale_and_is_seeded():
    clean, yc = make_moons(4000, seed=5, noise=None)
    noisy, yn = make_moons(4000, seed=5, noise=0.1)
    # Same permutation (drawn first), then Gaussian noise of standard deviation 0.1.
    np.testing.assert_array_equal(yc, yn)
    assert abs(np.std(noisy - clean) - 0.1) < 0.005
    np.testing.assert_array_equal(make_moons(100, noise=0.1, seed=5)[0], make_moons(100, noise=0.1, seed=5)[0])
    assert not np.array_equal(make_moons(100, noise=0.1, seed=5)[0], make_moons(100, noise=0.1, seed=6)[0])


def test_bad_moons_arguments_raise_clear_errors():
    with pytest.raises(DomainError, match="positive integer"):
        make_moons(0)
    with pytest.raises(DomainError, match="standard deviation"):
        make_moons(10, noise=-1)
    # NaN passed the old `noise < 0` check and silently gave all-NaN points; inf gave inf/NaN points
    for bad in (float("nan"), float("inf")):
        with pytest.raises(DomainError, match="finite number >= 0"):
            make_moons(10, noise=bad)


def test_split_is_a_deterministic_partition():
    x = np.arange(20.0)[:, None]
    y = np.arange(20)
    a = split(x, y, test_fraction=0.25, seed=1)
    b = split(x, y, test_fraction=0.25, seed=1)
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u, v)
    assert len(a[0]) == 15 and len(a[2]) == 5
    assert sorted(np.concatenate([a[1], a[3]]).tolist()) == list(range(20))


def test_moons_dataset_seed_setting_and_held_out_split():
    d = moons()
    assert (d.n_train, d.n_test, d.n_features, d.n_classes) == (100, 0, 2, 2)
    big = moons(1000, test_fraction=0.5)
    assert (big.n_train, big.n_test) == (500, 500)
    assert "moons" in repr(big)
    assert dataset({"name": "moons", "n_samples": 10}).n_train == 10
    with pytest.raises(SymactError, match="Unknown data set"):
        dataset("mnist")


def test_digits_matches_the_published_shape():
    pytest.importorskip("sklearn")
    x, y = load_digits()
    # UCI optdigits as shipped by scikit-learn: 1797 images of 8x8 pixels, intensities 0..16, 10 classes.
    assert x.shape == (1797, 64) and y.shape == (1797,)
    assert x.min() == 0 and x.max() == 16
    assert sorted(set(y.tolist())) == list(range(10))
    d = digits(seed=0)
    assert isinstance(d, Dataset) and d.n_train + d.n_test == 1797 and d.x_train.max() <= 1.0
    assert digits(n_samples=100).n_train == 70


def test_digits_without_scikit_learn_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)  # import now fails
    with pytest.raises(SymactError, match=r"symact\[verify\]"):
        load_digits()


def test_split_that_would_leave_no_training_rows_is_refused():
    """test_fraction < 1 passed, but round(0.96 * 10) = 10 held out every row: an empty training set."""
    x, y = np.arange(10.0)[:, None], np.arange(10)
    assert len(split(x, y, test_fraction=0.94)[0]) == 1  # round(9.4) = 9 held out, one row left
    with pytest.raises(DomainError, match="leaving no training data"):
        split(x, y, test_fraction=0.96)
    with pytest.raises(DomainError, match="leaving no training data"):
        moons(10, test_fraction=0.99)


@pytest.mark.parametrize("call, match", [
    (lambda: split(np.zeros((10, 1)), np.zeros(5), test_fraction=0.5), "one label per row"),
    (lambda: split(np.zeros((10, 1)), np.zeros(10), test_fraction="0.5"), "test_fraction must be a number"),
    (lambda: split(np.zeros((10, 1)), np.zeros(10), test_fraction=0.5, seed=1.5), "seed must be a whole number"),
    (lambda: make_moons(float("nan")), "positive integer n_samples"),
    (lambda: make_moons(float("inf")), "positive integer n_samples"),
    (lambda: make_moons(True), "positive integer n_samples"),
    (lambda: make_moons(10, seed=-1), "seed must be a whole number"),
    (lambda: make_moons(10, seed=1.5), "seed must be a whole number"),
    (lambda: make_moons(10, noise=True), "standard deviation"),
    (lambda: dataset({"name": "moons", "n": 10}), r"Unknown field\(s\) \['n'\].*'n_samples'"),
])
def test_bad_dataset_arguments_raise_domain_errors_not_raw_ones(call, match):
    """Each raised numpy's or Python's own error (ValueError, OverflowError, IndexError, TypeError) or,
    for noise=True, silently used noise 1.0."""
    with pytest.raises(DomainError, match=match):
        call()


def test_whole_float_sample_counts_are_still_accepted():
    np.testing.assert_array_equal(make_moons(6.0, noise=0.1, seed=2)[0], make_moons(6, noise=0.1, seed=2)[0])


@pytest.mark.parametrize("call, match", [
    (lambda: moons(10, test_fraction=None), r"test_fraction must be a number in \[0, 1\), got None"),
    (lambda: moons(10, test_fraction=False), r"test_fraction must be a number in \[0, 1\), got False"),
    (lambda: digits(n_samples=10, seed=1.5), r"digits seed must be a whole number.*got 1.5"),
    (lambda: digits(n_samples=10, seed=-7919), r"digits seed must be a whole number.*got -7919"),
    (lambda: make_moons(4, shuffle=2), r"shuffle must be True or False, got 2"),
])
def test_arguments_read_as_defaults_or_raising_raw_errors_are_refused(call, match):
    """moons(test_fraction=None) silently held out nothing, digits(n_samples=10, seed=1.5) was numpy's
    bare TypeError (the seed was offset before split checked it) and shuffle=2 shuffled."""
    if "digits" in match:
        pytest.importorskip("sklearn")
    with pytest.raises(DomainError, match=match):
        call()


@pytest.mark.parametrize("call", [
    lambda: split(np.arange(10.0)[:, None], np.arange(10), test_fraction=0.05),
    lambda: moons(10, test_fraction=0.05),
    lambda: moons(100, test_fraction=0.004),
    lambda: digits(n_samples=20, test_fraction=0.02),
])
def test_a_positive_test_fraction_that_holds_out_no_row_is_refused(call):
    """round(0.05 * 10) = 0: moons(10, test_fraction=0.05) came back with test=0 rows and its spec saying 0.05, and
    train() then recorded no held-out curve, without a word."""
    if "digits" in call.__code__.co_names:
        pytest.importorskip("sklearn")
    with pytest.raises(DomainError, match=r"holds out round\(.*\) = 0 of \d+ rows.*at least .*test_fraction=0"):
        call()
    x, y = np.arange(10.0)[:, None], np.arange(10)
    assert [len(part) for part in split(x, y, test_fraction=0.06)] == [9, 9, 1, 1]   # round(0.6) = 1 row
    assert moons(10, test_fraction=0.0).n_test == 0                                 # none asked, none held out


@pytest.mark.parametrize("dtype", [lambda torch: torch.int32, lambda torch: torch.int64, lambda torch: torch.bool,
                                   lambda torch: torch.complex64, lambda torch: "float64", lambda torch: np.float64],
                         ids=["int32", "int64", "bool", "complex64", "string", "numpy"])
def test_dataset_torch_refuses_a_dtype_that_is_not_a_torch_floating_dtype(dtype):
    """torch.int32 silently truncated the features to integers and "float64" was as_tensor's bare
    TypeError; the features are real numbers, so anything but a torch floating dtype is refused by name."""
    dtype = dtype(pytest.importorskip("torch"))
    with pytest.raises(DomainError, match=r"dtype=.* is not a torch floating-point dtype.*torch\.float64"):
        moons(10).torch(dtype)


def test_dataset_torch_keeps_the_feature_values_in_every_floating_dtype():
    torch = pytest.importorskip("torch")
    data = moons(20, test_fraction=0.5)
    for dtype in (torch.float64, torch.float32, torch.float16, torch.bfloat16):
        x_train, y_train, x_test, y_test = data.torch(dtype)
        assert x_train.dtype == x_test.dtype == dtype and y_train.dtype == y_test.dtype == torch.int64
        # each value is the float64 feature rounded once to the dtype by torch's own cast
        np.testing.assert_array_equal(x_train.double().numpy(),
                                      torch.from_numpy(data.x_train).to(dtype).double().numpy())
    assert data.torch()[0].dtype == torch.get_default_dtype()
