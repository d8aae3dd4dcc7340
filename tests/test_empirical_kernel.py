"""analysis.empirical_kernel: real random tanh MLPs against the composed extended maps.

tanh has Q(1) = 0.394 != 1, so the q values shrink layer by layer and the correct prediction uses
the extended maps c_l = C(c_{l-1}; q_{l-1}, q_{l-1}); the local (q = 1) maps must be rejected.
Tolerance (issue 3): |mean c - predicted c| < 4 sqrt(L)(1 - c^2)/sqrt(width * seeds) + 5/width.
"""

import math

import numpy as np
import pytest
import sympy

torch = pytest.importorskip("torch")

from analysis.empirical import empirical_kernel, kernel_tolerance  # noqa: E402
from analysis.kernel import kernel_maps  # noqa: E402
from symact.errors import DomainError  # noqa: E402

x = sympy.Symbol("x", real=True)
TANH = sympy.tanh(x)


def test_tolerance_formula():
    assert kernel_tolerance(0.5, 5, 1000, 20) == pytest.approx(4 * math.sqrt(5) * 0.75 / math.sqrt(20000) + 0.005)


def test_tanh_fast_extended_maps_predict_and_local_maps_fail():
    rec = empirical_kernel(TANH, depth=5, width=500, cosines=(0.0, 0.5, 0.9), seeds=10)
    assert rec.passes("extended"), rec.deviations("extended")
    assert not rec.passes("local"), rec.deviations("local")
    # the q values follow Q^l(1), the mean q within a few standard errors
    q = np.array(rec.q_mean)
    q_std = np.array(rec.q_std)
    pred = np.array(rec.predicted_q)
    assert np.all(np.abs(q - pred) < 4 * q_std / math.sqrt(rec.seeds) + 5 * pred / rec.width)
    # Q(1) of tanh by the mpmath engine, and the first predicted q
    assert rec.predicted_q[0] == pytest.approx(float(kernel_maps(TANH, dps=20).q_map(1)), rel=1e-12)
    assert "EmpiricalKernel('tanh(x)'" in repr(rec)


def test_orthogonal_init_and_relu():
    rec = empirical_kernel(TANH, depth=3, width=256, cosines=(0.3,), seeds=4, init="orthogonal")
    assert rec.passes()
    relu = empirical_kernel(sympy.Max(0, x), depth=4, width=256, cosines=(0.0, 0.7), seeds=4)
    assert relu.passes()
    # relu: q halves every layer
    assert relu.predicted_q == pytest.approx((0.5, 0.25, 0.125, 0.0625), rel=1e-12)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU on this machine")
def test_runs_on_gpu():
    rec = empirical_kernel(TANH, depth=3, width=512, cosines=(0.5,), seeds=4, device="cuda")
    assert rec.device.startswith("cuda") and rec.passes()


@pytest.mark.slow
def test_tanh_full_acceptance():
    """Issue 3: depth 5, width 1000, 20 seeds, cosines {0, 0.5, 0.9}; spread ~ 1/sqrt(width)."""
    rec = empirical_kernel(TANH, depth=5, width=1000, cosines=(0.0, 0.5, 0.9), seeds=20)
    assert rec.passes("extended"), rec.deviations("extended")
    assert not rec.passes("local"), rec.deviations("local")
    # the local maps are off by ~0.06-0.08 at depth 5 for c0 = 0.5, 0.9
    gap = np.abs(np.array(rec.predicted_c)[1:, -1] - np.array(rec.predicted_c_local)[1:, -1])
    assert np.all((gap > 0.05) & (gap < 0.1))
    wide = empirical_kernel(TANH, depth=5, width=4000, cosines=(0.0, 0.5, 0.9), seeds=20)
    assert wide.passes("extended")
    assert 1.4 <= rec.spread_ratio(wide) <= 2.9


def test_antipodal_inputs_do_not_break_the_prediction():
    """The float64 C map returned -1.0000000000000002 at c = -1 and the prediction raised."""
    rec = empirical_kernel("tanh", depth=2, width=16, seeds=2, cosines=(-1.0,))
    assert "c0=-1" in repr(rec) and rec.passes("extended")


@pytest.mark.parametrize("device, message", [("tpu", "not a torch device"), ("cuda:99", "torch sees"),
                                             ("mps", "torch sees no MPS device")])
def test_devices_torch_cannot_use_are_domain_errors(device, message):
    """torch's own error ('Expected one of cpu, cuda, ... at start of device string') escaped."""
    if device == "mps" and torch.backends.mps.is_available():
        pytest.skip("this machine has an MPS device")
    with pytest.raises(DomainError, match=message):
        empirical_kernel(TANH, depth=2, width=16, cosines=(0.5,), seeds=2, device=device)


class _ScaledMaps:
    """The true kernel maps with Q (or C) multiplied by a factor: a wrong prediction to be caught."""

    def __init__(self, maps, q_factor=1.0, c_value=None):
        self.maps, self.q_factor, self.c_value = maps, q_factor, c_value

    def q_map(self, q):
        return self.q_factor * self.maps.q_map(q)

    def c_map(self, c, q1, q2):
        return self.maps.c_map(c, q1, q2) if self.c_value is None else self.c_value


def test_a_wrong_q_map_fails_the_extended_check(monkeypatch):
    """A Q map 10% off moved the tanh C predictions by less than the C tolerance, so passes() stayed
    True: the q values were measured but never compared.  Now q_l is checked against Q^l(1)."""
    import analysis.empirical as empirical

    rec = empirical_kernel(TANH, depth=5, width=1000, cosines=(0.0, 0.5, 0.9), seeds=10)
    assert rec.passes(), (rec.deviations(), rec.q_deviations())
    true_maps = empirical.kernel_maps
    monkeypatch.setattr(empirical, "kernel_maps", lambda *a, **k: _ScaledMaps(true_maps(*a, **k), q_factor=1.1))
    wrong = empirical_kernel(TANH, depth=5, width=1000, cosines=(0.0, 0.5, 0.9), seeds=10)
    assert wrong.q_deviations().max() > 1 and not wrong.passes()


def test_q_tolerance_uses_the_relative_spread_of_phi_squared():
    """kappa = sd(phi(z)^2)/E[phi(z)^2]: for ReLU E[relu^4]/E[relu^2]^2 = (3/2)/(1/4), kappa = sqrt(5) at any q;
    for the identity E z^4 / E[z^2]^2 = 3, kappa = sqrt(2)."""
    relu = empirical_kernel(sympy.Max(0, x), depth=2, width=64, cosines=(0.5,), seeds=2)
    assert relu.q_kappa == pytest.approx((math.sqrt(5), math.sqrt(5)), rel=1e-9)
    ident = empirical_kernel(x, depth=1, width=64, cosines=(0.5,), seeds=2)
    assert ident.q_kappa == pytest.approx((math.sqrt(2),), rel=1e-9)


def test_an_infinite_kappa_does_not_pass_the_q_check_vacuously():
    """kappa_l = inf (phi(z)^2 averaged 0 on the nodes) made the q tolerance infinite, and any measured
    q, however far from Q^l(1), passed: |diff| / inf = 0."""
    import dataclasses

    rec = empirical_kernel(TANH, depth=2, width=64, cosines=(0.5,), seeds=2)
    far_off = tuple(tuple(10 * q + 1 for q in row) for row in rec.q_mean)
    for kappa in (math.inf, math.nan):
        bad = dataclasses.replace(rec, q_mean=far_off, q_kappa=(kappa,) * rec.depth)
        assert not np.all(bad.q_deviations() < 1)
        assert not bad.passes()
    finite = dataclasses.replace(rec, q_mean=far_off)   # the same q values with a finite kappa fail too
    assert not finite.passes()


def test_a_nan_prediction_is_not_shown_as_c_equal_1(monkeypatch):
    """min(1.0, nan) is 1.0: a C map that failed was reported as the collapsed prediction c = 1."""
    import analysis.empirical as empirical

    true_maps = empirical.kernel_maps
    monkeypatch.setattr(empirical, "kernel_maps", lambda *a, **k: _ScaledMaps(true_maps(*a, **k), c_value=math.nan))
    rec = empirical_kernel(TANH, depth=2, width=64, cosines=(0.5,), seeds=2)
    assert all(math.isnan(v) for v in rec.predicted_c[0]) and not rec.passes()


def test_no_cosine_is_an_error_not_a_vacuous_pass():
    """cosines=() measured nothing and passes() was True (np.all of an empty array)."""
    with pytest.raises(DomainError, match="at least one input cosine"):
        empirical_kernel(TANH, depth=2, width=16, cosines=(), seeds=2)


@pytest.mark.parametrize("bad, message", [
    ({"depth": 2.5}, "depth=2.5"), ({"width": 64.0}, "width=64.0"), ({"seeds": 2.0}, "seeds=2.0"),
    ({"input_dim": 0}, "input_dim=0"),   # 0 silently meant "the width"
    ({"input_dim": 1}, "input_dim=1"),   # one dimension: the second input was NaN, so was every measured c
    ({"cosines": 0.5}, "sequence of input cosines"),
    ({"dtype": "float64"}, "torch floating-point dtype"), ({"dtype": torch.int64}, "torch floating-point dtype"),
])
def test_bad_sizes_are_domain_errors_that_name_the_argument(bad, message):
    """Raw TypeErrors from range()/torch.randn, or silently wrong runs, before."""
    kwargs = {"depth": 2, "width": 16, "cosines": (0.5,), "seeds": 2, **bad}
    with pytest.raises(DomainError, match=message):
        empirical_kernel(TANH, **kwargs)


def test_relu_predictions_are_the_arc_cosine_kernel_and_the_measurement_agrees():
    """ReLU is homogeneous, so the extended and local maps are both the arc-cosine kernel
    C(c) = (sqrt(1 - c^2) + (pi - arccos c) c) / pi composed l times (independent closed form)."""
    rec = empirical_kernel(sympy.Max(0, x), depth=3, width=256, cosines=(-0.5, 0.0, 0.9), seeds=4, input_dim=2)
    for i, c0 in enumerate(rec.cosines):
        c, expected = c0, []
        for _ in range(3):
            c = (math.sqrt(1 - c * c) + (math.pi - math.acos(c)) * c) / math.pi
            expected.append(c)
        assert rec.predicted_c[i] == pytest.approx(expected, abs=1e-12)
        assert rec.predicted_c_local[i] == pytest.approx(expected, abs=1e-12)
    assert rec.passes()


def test_float64_networks_measure_the_same_kernel():
    """dtype=torch.float64 runs the networks in double precision: same draws, so the float32 and float64
    measurements differ by rounding only."""
    r32 = empirical_kernel(TANH, depth=2, width=64, cosines=(0.5,), seeds=2)
    r64 = empirical_kernel(TANH, depth=2, width=64, cosines=(0.5,), seeds=2, dtype=torch.float64)
    assert np.allclose(r32.c_mean, r64.c_mean, atol=1e-5) and r64.passes()


def test_spread_ratio_refuses_records_of_different_experiments():
    """A depth-3 record against a depth-2 one pooled the spreads of different layers into a ratio."""
    a = empirical_kernel(TANH, depth=3, width=32, cosines=(0.5,), seeds=2)
    b = empirical_kernel(TANH, depth=2, width=128, cosines=(0.5,), seeds=2)
    with pytest.raises(DomainError, match="depth 3 vs 2"):
        a.spread_ratio(b)
    c = empirical_kernel(TANH, depth=3, width=128, cosines=(0.5,), seeds=2)
    assert a.spread_ratio(c) > 0


def _record_by_hand(depth=3, cosines=(0.0, 0.5), width=100, seeds=4):
    """An EmpiricalKernel with chosen predictions (layer l's extended c = 0.1 l + 0.01 i, local c = 0.05 l)."""
    from analysis.empirical import EmpiricalKernel

    rows = tuple(tuple(0.0 for _ in range(depth)) for _ in cosines)
    return EmpiricalKernel(
        activation="tanh", depth=depth, width=width, seeds=seeds, init="gaussian", device="cpu", cosines=cosines,
        q_mean=rows, q_std=rows, c_mean=rows, c_std=rows, predicted_q=tuple(1.0 for _ in range(depth)),
        predicted_c=tuple(tuple(0.1 * (l + 1) + 0.01 * i for l in range(depth)) for i in range(len(cosines))),
        predicted_c_local=tuple(tuple(0.05 * (l + 1) for l in range(depth)) for _ in cosines),
        q_kappa=tuple(1.0 for _ in range(depth)))


def test_tolerance_takes_layers_1_to_depth_and_refuses_the_rest():
    """layer=0 read predicted_c[i][-1], the last layer's prediction, and put sqrt(0) into the formula (5/width);
    a negative layer failed in math.sqrt, a layer past depth was a bare IndexError, and a negative cosine index
    counted from the end. Reference: the documented formula 4 sqrt(l)(1 - c^2)/sqrt(width seeds) + 5/width, at the
    hand-set prediction c of cosine i at layer l."""
    rec = _record_by_hand()
    for i in range(2):
        for layer in (1, 2, 3):
            c = 0.1 * layer + 0.01 * i
            assert rec.tolerance(i, layer) == pytest.approx(4 * math.sqrt(layer) * (1 - c * c) / 20 + 0.05, rel=1e-14)
        c = 0.05 * 3
        assert rec.tolerance(i, 3, "local") == pytest.approx(4 * math.sqrt(3) * (1 - c * c) / 20 + 0.05, rel=1e-14)
    for layer in (0, -1, 4, 1.0, True):
        with pytest.raises(DomainError, match=rf"layer={layer!r} must be a whole number in 1\.\.3: layers are "
                                              r"numbered from 1"):
            rec.tolerance(0, layer)
    for i in (-1, 2, 0.0):
        with pytest.raises(DomainError, match=rf"cosine index i={i!r} must be a whole number in 0\.\.1"):
            rec.tolerance(i, 1)
    assert rec.deviations().shape == rec.q_deviations().shape == (2, 3)   # the callers' layers 1..depth still pass
