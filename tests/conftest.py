"""Shared test fixtures."""

import pytest


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
