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
