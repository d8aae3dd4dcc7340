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
