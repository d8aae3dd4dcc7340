"""Kernel-preserving initialisers: exact q preservation (fan-out >= fan-in), layout, delta taps."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from numeric.initializers import (
    delta_orthogonal_,
    kernel_preserving_init_,
    per_location_normalize,
    scaled_uniform_orthogonal_,
)
from symact.errors import DomainError


@pytest.mark.parametrize("out_f,in_f", [(64, 64), (96, 32), (33, 7)])
def test_linear_preserves_q_exactly_when_fan_out_at_least_fan_in(out_f, in_f):
    torch.manual_seed(0)
    lin = torch.nn.Linear(in_f, out_f, dtype=torch.float64)
    kernel_preserving_init_(lin)
    w = lin.weight
    assert w.shape == (out_f, in_f)  # nn.Linear layout [out, in]
    # W^T W = (out/in) I exactly
    torch.testing.assert_close(w.T @ w, torch.eye(in_f, dtype=torch.float64) * out_f / in_f, atol=1e-12, rtol=0)
    x = torch.randn(10, in_f, dtype=torch.float64)
    q_in = (x ** 2).sum(1) / in_f
    q_out = (lin(x) ** 2).sum(1) / out_f
    torch.testing.assert_close(q_out, q_in, atol=0, rtol=1e-12)
    assert torch.count_nonzero(lin.bias) == 0


def test_linear_fan_in_larger_has_orthonormal_rows_and_preserves_q_on_average():
    torch.manual_seed(1)
    w = scaled_uniform_orthogonal_(torch.empty(16, 256, dtype=torch.float64))
    torch.testing.assert_close(w @ w.T, torch.eye(16, dtype=torch.float64), atol=1e-12, rtol=0)
    x = torch.randn(4000, 256, dtype=torch.float64)
    ratio = ((x @ w.T) ** 2).sum(1) / 16 / ((x ** 2).sum(1) / 256)
    assert abs(ratio.mean().item() - 1) < 0.03  # E = 1; std of the mean ~ sqrt(2/16)/sqrt(4000)


def test_haar_distribution_is_not_sign_biased():
    # QR without the sign fix gives a positive diagonal of R, i.e. a biased first column sign.
    torch.manual_seed(2)
    signs = [scaled_uniform_orthogonal_(torch.empty(3, 3))[0, 0].sign().item() for _ in range(200)]
    assert abs(sum(signs)) < 60  # binomial(200, 1/2): std 14


def test_delta_orthogonal_conv_acts_like_dense_layer_per_location():
    torch.manual_seed(3)
    conv = torch.nn.Conv2d(8, 24, kernel_size=3, padding=1, dtype=torch.float64)
    kernel_preserving_init_(conv)
    w = conv.weight
    centre = w[:, :, 1, 1]
    mask = torch.ones_like(w, dtype=torch.bool)
    mask[:, :, 1, 1] = False
    assert torch.count_nonzero(w[mask]) == 0
    x = torch.randn(2, 8, 5, 5, dtype=torch.float64)
    y = conv(x)
    torch.testing.assert_close(y, torch.einsum("oi,bihw->bohw", centre, x), atol=1e-12, rtol=0)
    torch.testing.assert_close((y ** 2).sum(1) / 24, (x ** 2).sum(1) / 8, atol=0, rtol=1e-12)


@pytest.mark.parametrize("conv", [
    lambda: nn.Conv2d(4, 12, kernel_size=3, padding=1, groups=2, bias=False, dtype=torch.float64),
    lambda: nn.Conv1d(6, 6, kernel_size=5, padding=2, groups=3, bias=False, dtype=torch.float64),
    lambda: nn.Conv2d(8, 8, kernel_size=3, padding=1, groups=8, bias=False, dtype=torch.float64),   # depthwise
], ids=["2d-2-groups", "1d-3-groups", "depthwise"])
def test_delta_orthogonal_of_a_grouped_conv_preserves_q_at_every_location(conv):
    """delta_orthogonal_ took a grouped weight [out, in/groups, k] for one [out, in/groups] matrix, whose
    per-group blocks are not orthogonal, so q was not preserved (kernel_preserving_init_ looped over the groups
    itself). Reference: torch's own grouped convolution, ||y||^2/out = ||x||^2/in at every location, and each
    group's centre tap W_g with W_g^T W_g = (out/in) I."""
    torch.manual_seed(4)
    conv = conv()
    groups, out_c, in_c = conv.groups, conv.out_channels, conv.in_channels
    delta_orthogonal_(conv.weight, groups=groups)
    w = conv.weight
    centre = tuple(k // 2 for k in w.shape[2:])
    tap = w[(slice(None), slice(None)) + centre]
    off_centre = w.clone()
    off_centre[(slice(None), slice(None)) + centre] = 0
    assert torch.count_nonzero(off_centre) == 0
    per = out_c // groups
    for g in range(groups):
        block = tap[g * per:(g + 1) * per]
        torch.testing.assert_close(block.T @ block, torch.eye(in_c // groups, dtype=torch.float64) * out_c / in_c,
                                   atol=1e-12, rtol=0)
    x = torch.randn((3, in_c) + (7,) * (w.dim() - 2), dtype=torch.float64)
    torch.testing.assert_close((conv(x) ** 2).sum(1) / out_c, (x ** 2).sum(1) / in_c, atol=0, rtol=1e-12)


def test_delta_orthogonal_refuses_groups_that_do_not_divide_the_output_channels():
    weight = torch.ones(6, 2, 3)
    for groups in (4, 0, 1.5, True):
        with pytest.raises(DomainError, match=rf"groups={groups!r} must be the convolution's groups.*dividing the "
                                              r"6 output channels"):
            delta_orthogonal_(weight, groups=groups)
    assert torch.equal(weight, torch.ones(6, 2, 3))   # a refusal changes nothing


def test_even_kernel_and_wrong_shapes_are_rejected():
    with pytest.raises(DomainError, match="odd kernel"):
        delta_orthogonal_(torch.empty(4, 4, 2, 2))
    with pytest.raises(DomainError, match="2-D"):
        scaled_uniform_orthogonal_(torch.empty(4, 4, 3))


def test_per_location_normalize_sets_q_to_one():
    x = torch.randn(3, 5, 4, 4, dtype=torch.float64)
    y = per_location_normalize(x)
    torch.testing.assert_close((y ** 2).sum(1) / 5, torch.ones(3, 4, 4, dtype=torch.float64))



@pytest.mark.parametrize("values, dtype, rtol", [
    ([300.0, 400.0], torch.float16, 1e-3), ([1e-4, 2e-4], torch.float16, 1e-3), ([3e-23, 4e-23], torch.float32, 1e-6),
    ([3e19, 4e19], torch.float32, 1e-6), ([1e20, 3e20], torch.bfloat16, 1e-2), ([3e-170, 4e-170], torch.float64, 1e-15),
], ids=["f16-big", "f16-small", "f32-tiny", "f32-huge", "bf16-huge", "f64-tiny"])
def test_per_location_normalize_neither_overflows_nor_underflows(values, dtype, rtol):
    """The squares overflowed or underflowed: [300, 400] in float16 came out [0, 0] (300**2 is inf), [3e-23, 4e-23]
    in float32 5.5% off (subnormal squares), [3e-170, 4e-170] in float64 was refused as all-zero.  Reference:
    x/||x||*sqrt(2) for the exact values, in Python floats scaled by hand."""
    x = torch.tensor([values], dtype=dtype)
    exact = [float(v) for v in x[0].tolist()]
    scale = max(abs(v) for v in exact)
    norm = sum((v / scale) ** 2 for v in exact) ** 0.5
    expected = torch.tensor([[v / scale / norm * 2 ** 0.5 for v in exact]], dtype=torch.float64)
    torch.testing.assert_close(per_location_normalize(x).double(), expected, rtol=rtol, atol=0)


def test_per_location_normalize_refuses_all_zero_locations_unless_eps_is_given():
    x = torch.randn(2, 5, 3, dtype=torch.float64)
    x[1, :, 2] = 0  # one location with no signal: 0/0 was NaN, silently
    with pytest.raises(DomainError, match=r"1 location\(s\) of x have all-zero features.*eps > 0"):
        per_location_normalize(x)
    y = per_location_normalize(x, eps=1e-12)
    assert torch.equal(y[1, :, 2], torch.zeros(5, dtype=torch.float64))
    torch.testing.assert_close((y[0] ** 2).sum(0) / 5, torch.ones(3, dtype=torch.float64))


@pytest.mark.parametrize("bad, kind", [(float("inf"), "inf"), (-float("inf"), "inf"), (float("nan"), "NaN")])
def test_per_location_normalize_refuses_non_finite_features_naming_the_location(bad, kind):
    """One inf made its whole location NaN (inf/inf, the other features 0) and NaN passed through, silently."""
    x = torch.randn(2, 5, 3, dtype=torch.float64)
    x[1, 3, 2] = bad
    with pytest.raises(DomainError, match=rf"1 location\(s\) of x hold non-finite features \({kind}\) along dim 1, "
                                          r"the first x\[1, :, 2\]"):
        per_location_normalize(x)
    x[0, 0, 1] = float("nan")
    with pytest.raises(DomainError, match=r"2 location\(s\).* the first x\[0, :, 1\]"):
        per_location_normalize(x, dim=-2, eps=1e-12)   # eps does not make a non-finite location acceptable


@pytest.mark.parametrize("x, dim, match", [
    (torch.empty(2, 0, 3), 1, r"shape \(2, 0, 3\)\) has no features along dim 1"),
    (torch.ones(2, 3), 2, r"dim=2 is not a dimension of x \(shape \(2, 3\)\).* -2\.\.1"),
    (torch.ones(2, 3), -3, r"dim=-3 is not a dimension"),
    (torch.tensor(3.0), 0, r"0-d tensor"),
], ids=["empty-features", "dim-too-large", "dim-too-negative", "scalar"])
def test_per_location_normalize_refuses_a_missing_feature_dimension(x, dim, match):
    """An empty feature dimension was amax's bare IndexError ("Expected reduction dim 1 to have non-zero size"), a
    dimension x does not have a bare IndexError from x.shape."""
    with pytest.raises(DomainError, match=match):
        per_location_normalize(x, dim=dim)


def test_dtype_and_device_follow_the_weight():
    w = scaled_uniform_orthogonal_(torch.empty(6, 3, dtype=torch.float32))
    assert w.dtype == torch.float32
    g = torch.Generator().manual_seed(5)
    a = scaled_uniform_orthogonal_(torch.empty(6, 3), generator=g)
    g2 = torch.Generator().manual_seed(5)
    b = scaled_uniform_orthogonal_(torch.empty(6, 3), generator=g2)
    assert torch.equal(a, b)


class _GeneratorReportingCuda(torch.Generator):
    """A CPU generator that reports device cuda:0: no accelerator is needed to check that the initialisers read
    the generator's device and refuse a mismatch before drawing (the real CUDA case is the cuda test below)."""

    @property
    def device(self):
        return torch.device("cuda", 0)


def test_a_generator_on_another_device_than_the_weight_is_refused_by_name():
    """The draws were always made on the CPU: a CUDA generator failed inside torch.randn (for a CUDA weight too);
    one reporting cuda:0 for a CPU weight was used as if it were a CPU generator."""
    generator = _GeneratorReportingCuda()
    match = r"the generator is on cuda:0 but the weight is on cpu.*generator on cpu.*or a CPU generator"
    weight = torch.ones(6, 3)
    with pytest.raises(DomainError, match="scaled_uniform_orthogonal_: " + match):
        scaled_uniform_orthogonal_(weight, generator=generator)
    conv = nn.Conv2d(2, 4, 3)
    before = conv.weight.detach().clone()
    with pytest.raises(DomainError, match="delta_orthogonal_: " + match):
        delta_orthogonal_(conv.weight.data, generator=generator)
    with pytest.raises(DomainError, match=match):
        kernel_preserving_init_(conv, generator=generator)
    assert torch.equal(weight, torch.ones(6, 3)) and torch.equal(conv.weight, before)   # nothing was changed
    with pytest.raises(DomainError, match=r"generator=5 must be a torch.Generator"):
        scaled_uniform_orthogonal_(weight, generator=5)   # torch.randn's bare TypeError before


def test_a_cpu_generator_seeds_the_same_weight_on_any_device():
    """A CPU generator draws on the CPU and the result is moved: the meta device (no data) is accepted, and the
    weight is sqrt(out/in) times the Haar Q (signs fixed by R's diagonal) of the generator's own Gaussian draws."""
    assert scaled_uniform_orthogonal_(torch.empty(5, 3, device="meta"),
                                      generator=torch.Generator().manual_seed(7)).device.type == "meta"
    w = scaled_uniform_orthogonal_(torch.empty(5, 3, dtype=torch.float64), generator=torch.Generator().manual_seed(7))
    a = torch.randn(5, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(7))
    q, r = torch.linalg.qr(a)
    torch.testing.assert_close(w, (5 / 3) ** 0.5 * q * torch.sign(torch.diagonal(r)), atol=1e-15, rtol=0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU on this machine")
def test_a_cuda_generator_draws_on_the_weights_cuda_device():
    """A CUDA generator failed inside torch.randn (the draws were made on the CPU); it now draws on its device."""
    weights = [scaled_uniform_orthogonal_(torch.empty(8, 4, dtype=torch.float64, device="cuda"),
                                          generator=torch.Generator(device="cuda").manual_seed(3)) for _ in range(2)]
    assert weights[0].device.type == "cuda" and torch.equal(weights[0], weights[1])
    torch.testing.assert_close(weights[0].T @ weights[0], 2 * torch.eye(4, dtype=torch.float64, device="cuda"),
                               atol=1e-12, rtol=0)
    conv = nn.Conv2d(4, 8, 3, padding=1, groups=2, dtype=torch.float64, device="cuda")
    kernel_preserving_init_(conv, generator=torch.Generator(device="cuda").manual_seed(3))
    x = torch.randn(2, 4, 5, 5, dtype=torch.float64, device="cuda")
    torch.testing.assert_close((conv(x) ** 2).sum(1) / 8, (x ** 2).sum(1) / 4, atol=0, rtol=1e-12)
    with pytest.raises(DomainError, match=r"the generator is on cuda(:0)? but the weight is on cpu"):
        scaled_uniform_orthogonal_(torch.empty(8, 4), generator=torch.Generator(device="cuda"))


# ----------------------------------------------------------------------------- parametrised layers


def _assert_scaled_orthogonal(w, out_f, in_f):
    eye = torch.eye(in_f, dtype=w.dtype)
    torch.testing.assert_close(w.T @ w, eye * out_f / in_f, atol=1e-12, rtol=0)


@pytest.mark.parametrize("signed", ["difference", "soft_sign", "second_layer"])
def test_parametrised_linear_gets_the_init_through_its_parametrisation(signed):
    """Reported: on a parametrised layer the init wrote into the recomputed (discarded) weight."""
    import numeric

    torch.manual_seed(4)
    lin = numeric.parametrize_model(torch.nn.Linear(4, 8, dtype=torch.float64), "exp", signed=signed)
    kernel_preserving_init_(lin)
    _assert_scaled_orthogonal(lin.weight, 8, 4)  # W^T W = (out/in) I, the init's defining property
    x = torch.randn(10, 4, dtype=torch.float64)
    torch.testing.assert_close((lin(x) ** 2).sum(1) / 8, (x ** 2).sum(1) / 4, atol=0, rtol=1e-12)
    assert torch.count_nonzero(lin.bias) == 0
    # the parametrisation is still in place and trains the raw tensors
    assert torch.nn.utils.parametrize.is_parametrized(lin, "weight")


def test_parametrised_conv_and_bias_get_the_init():
    import numeric

    torch.manual_seed(5)
    conv = torch.nn.Conv2d(3, 6, kernel_size=3, padding=1, dtype=torch.float64)
    with torch.no_grad():
        conv.bias.fill_(0.7)
    numeric.parametrize_model(conv, "softplus", signed="second_layer", tensor_names=("weight", "bias"))
    kernel_preserving_init_(conv)
    w = conv.weight
    mask = torch.ones_like(w, dtype=torch.bool)
    mask[:, :, 1, 1] = False
    assert torch.count_nonzero(w[mask]) == 0
    _assert_scaled_orthogonal(w[:, :, 1, 1], 6, 3)
    assert torch.allclose(conv.bias, torch.zeros_like(conv.bias), atol=1e-15)


def test_unrepresentable_init_raises_and_leaves_the_model_unchanged():
    import numeric

    torch.manual_seed(6)
    net = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Linear(4, 4))
    numeric.parametrize_model(net[0], "exp", signed="difference")
    with torch.no_grad():
        net[1].weight.uniform_(0.5, 1.0)
    numeric.parametrize_model(net[1], "exp", tensor_names=("weight",))  # unsigned: positive weights only
    before = [m.weight.detach().clone() for m in net]
    with pytest.raises(DomainError, match="signed="):
        kernel_preserving_init_(net)
    for m, w in zip(net, before):
        assert torch.equal(m.weight, w)


class _NoInverse(torch.nn.Module):
    def forward(self, w):
        return 2 * w


class _WrongInverse(torch.nn.Module):
    def forward(self, w):
        return w.clamp(min=0)

    def right_inverse(self, a):
        return a


@pytest.mark.parametrize("param,match", [(_NoInverse, "right_inverse"), (_WrongInverse, "reproduce")])
def test_parametrisation_that_cannot_take_the_init_is_refused(param, match):
    lin = torch.nn.Linear(3, 3)
    torch.nn.utils.parametrize.register_parametrization(lin, "weight", param())
    with pytest.raises(DomainError, match=match):
        kernel_preserving_init_(lin)


def test_layers_the_init_does_not_cover_are_named_in_a_warning_not_skipped_silently():
    """A ConvTranspose or MultiheadAttention input projection was left at PyTorch's default
    init without a word, so the model was not kernel preserving.  Property checked: the
    covered Linear still satisfies W^T W = (out/in) I; embeddings, norms and parametrised
    layers raise no warning."""
    import warnings

    from numeric import parametrize_model

    model = nn.Sequential(nn.Linear(4, 8), nn.ConvTranspose1d(8, 8, 3), nn.Embedding(5, 4),
                          nn.MultiheadAttention(8, 2), nn.LayerNorm(8))
    with pytest.warns(RuntimeWarning, match=r"left 2 weight matrices unchanged: 1\.weight \(ConvTranspose1d\), "
                                            r"3\.in_proj_weight \(MultiheadAttention\)"):
        kernel_preserving_init_(model)
    w = model[0].weight.detach().double()
    assert torch.allclose(w.T @ w, 2.0 * torch.eye(4, dtype=torch.float64), atol=1e-5)
    quiet = nn.Sequential(nn.Embedding(5, 4), nn.Linear(4, 8), nn.Tanh(), nn.LayerNorm(8), nn.Linear(8, 2))
    parametrize_model(quiet[4], "exp", signed="difference")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        kernel_preserving_init_(quiet)


def test_integer_weight_is_refused_not_silently_zeroed():
    """copy_ into an integer tensor truncated the orthogonal entries (|entry| < 1 when out <= in) to 0:
    W W^T = I then failed silently, the weight being all zeros."""
    for weight in (torch.zeros(3, 5, dtype=torch.int64), torch.zeros(4, 2, 3, dtype=torch.int32)):
        init = scaled_uniform_orthogonal_ if weight.dim() == 2 else delta_orthogonal_
        with pytest.raises(DomainError, match="floating-point"):
            init(weight)


@pytest.mark.filterwarnings("ignore:Initializing zero-element tensors")  # nn.Linear(0, 3) itself
def test_zero_size_layers_are_left_as_they_are():
    """nn.Linear(0, 3) has a (3, 0) weight: sqrt(max(1, out/in)) raised a raw ZeroDivisionError."""
    lin = nn.Linear(0, 3)
    kernel_preserving_init_(lin)
    assert lin.weight.shape == (3, 0)
    assert torch.count_nonzero(lin.bias) == 0
    assert scaled_uniform_orthogonal_(torch.empty(0, 4)).shape == (0, 4)


def test_gain_scales_the_gram_matrix_by_its_square():
    """The docstring: W = gain * sqrt(max(1, out/in)) * O, so W^T W = gain**2 * out/in * I (out >= in) and
    W W^T = gain**2 * I (out < in)."""
    g = torch.Generator().manual_seed(3)
    tall = scaled_uniform_orthogonal_(torch.empty(12, 4, dtype=torch.float64), gain=1.7, generator=g)
    torch.testing.assert_close(tall.T @ tall, 1.7**2 * 3 * torch.eye(4, dtype=torch.float64), atol=1e-12, rtol=0)
    wide = scaled_uniform_orthogonal_(torch.empty(4, 12, dtype=torch.float64), gain=0.5, generator=g)
    torch.testing.assert_close(wide @ wide.T, 0.25 * torch.eye(4, dtype=torch.float64), atol=1e-12, rtol=0)


@pytest.mark.parametrize("eps", [-1e-3, float("nan"), float("inf")])
def test_per_location_normalize_refuses_a_negative_or_non_finite_eps(eps):
    """eps = -1e-3 gave NaN at every location with ||x||^2 < 1e-3 (inf gave zeros), without a word."""
    x = torch.tensor([[0.01, 0.02], [3.0, 4.0]])
    with pytest.raises(DomainError, match="eps"):
        per_location_normalize(x, eps=eps)


@pytest.mark.parametrize("gain", [float("nan"), float("inf"), -float("inf"), "2"])
def test_a_non_finite_gain_is_refused_not_written_as_nan_weights(gain):
    """gain = nan gave an all-NaN weight and gain = inf a weight of +-inf, silently (W^T W = gain**2 * I
    cannot hold); now DomainError naming gain, before anything is written."""
    weight = torch.zeros(3, 2)
    with pytest.raises(DomainError, match="gain="):
        scaled_uniform_orthogonal_(weight, gain=gain)
    conv = torch.zeros(2, 2, 3)
    with pytest.raises(DomainError, match="gain="):
        delta_orthogonal_(conv, gain=gain)
    lin = nn.Linear(2, 3)
    before = lin.weight.detach().clone()
    with pytest.raises(DomainError, match="gain="):
        kernel_preserving_init_(lin, gain=gain)
    assert torch.equal(weight, torch.zeros(3, 2)) and torch.equal(conv, torch.zeros(2, 2, 3))
    assert torch.equal(lin.weight, before)
