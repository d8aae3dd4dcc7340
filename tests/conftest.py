"""Shared test fixtures."""

import os

import pytest


def pytest_configure(config):
    """Under pytest-xdist, give each worker its share of the cores for torch's intra-op threads:
    two workers each starting one thread per core oversubscribe the machine, and torch's
    spinning threads then make the parallel run slower than a serial one."""
    workers = os.environ.get("PYTEST_XDIST_WORKER_COUNT")
    if workers is None:
        return
    try:
        import torch
    except ImportError:
        return
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // int(workers)))


# Parameter rows whose code the rest of the default run covers: the whole suite was run under branch coverage
# with per-test contexts (pytest-cov, --cov-branch --cov-context=test), and every arc of these rows, taken out
# together with the rows marked slow in the test files, is covered by a test left in.  2-3 s each; they run
# with ``-m slow``, which keeps the default run within 10 minutes on 2 cores.
COVERED_BY_THE_DEFAULT_RUN = frozenset({
    'tests/test_kernel_maps.py::test_closed_c_map_agrees_with_quadrature_at_40_digits_mehler_points[sin]',
    'tests/test_kernel_maps.py::test_c_map_derivatives_price_float64_vs_mehler_mpmath[tanh]',
    'tests/test_kernel_maps.py::test_mpmath_self_consistent_and_float64_agrees[sigmoid]',
    'tests/test_kernel_maps.py::test_slope_at_1_three_ways[erf]',
    'tests/test_kernel_maps.py::test_slope_at_1_three_ways[gelu]',
    'tests/test_shaping.py::test_dps_is_honoured_for_a_per_layer_slope_close_to_one[10**-16]',
    'tests/test_shaping.py::test_dks_shapes_kinked_activations_that_are_not_relu_like[hardswish-1.0413797439924106]',
    'tests/test_shaping.py::test_dks_matches_dks_package_subset[selu-T100-z1.5]',
    'tests/test_parameter_activation.py::test_powers_of_a_function_invert_and_have_their_mirror_maps[tanh(W)**3]',
    'tests/test_parameter_activation.py::test_mirror_map_with_parameters_is_real_on_the_range[tanh(b*W)-params0]',
    'tests/test_parameter_activation.py::test_a_turning_cubic_is_inverted_in_real_trigonometric_form[-2*W**3 + 6*W + 1-domain4-points4]',
    'tests/test_parameter_activation.py::test_scaled_and_shifted_tanh_have_the_named_inverse_and_a_mirror_map[s*tanh(W)-domain3-values3]',
    'tests/test_transform_conditions.py::test_derivatives_match_finite_differences[selu]',
    'tests/test_codegen.py::test_gradient_at_a_tie_whose_slopes_depend_on_x_is_the_least_one_sided_slope[cpu-Max(0, x, x**3)-points5-slopes5]',
    'tests/test_codegen.py::test_gradient_at_a_tie_whose_slopes_depend_on_x_is_the_least_one_sided_slope[cpu-Min(1, x, 2*x)-points6-slopes6]',
})


@pytest.hookimpl(tryfirst=True)  # before the -m selection, which reads the marks
def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.nodeid in COVERED_BY_THE_DEFAULT_RUN:
            item.add_marker(pytest.mark.slow)


@pytest.fixture
def one_torch_thread():
    """Run a test on one torch thread: small tensors on a shared 2-core machine lose more to
    thread start-up and contention than they gain from parallelism."""
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def mpmath_precision_is_restored():
    """Fail a test that changes mpmath's global precision (mp.dps = 30 instead of workdps), and
    restore it: a leaked precision changed the results of unrelated later tests."""
    import mpmath

    before = mpmath.mp.prec
    yield
    leaked = mpmath.mp.prec
    mpmath.mp.prec = before
    assert leaked == before, (f"the test left mpmath.mp.prec at {leaked} (was {before}); "
                              "use mpmath.workdps/workprec")
