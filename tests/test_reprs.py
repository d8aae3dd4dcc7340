"""At a REPL a result's repr is read as its API: every ``key=value`` it shows must be an
attribute holding that value.  MinimaxResult showed ``b=1.52`` (``result.b`` raised
AttributeError), ShapedNetwork ``targets=`` (the attribute is ``network_targets``) and
EntropyNormalization ``iterations=``/``converged=`` (only under ``report``)."""

from __future__ import annotations

import functools
import math
import re

import pytest

import analysis
import graphs
import numeric

_KEY_VALUE = re.compile(r"[(,]\s*([A-Za-z_]\w*)=([^,()]+)")


@functools.lru_cache(maxsize=None)
def _shaped_network():
    return analysis.shape("tanh", graphs.mlp(2), method="dks", zeta=1.5)


# built inside the test, not at collection (2 s in every pytest-xdist worker before any test ran)
_RESULTS = {
    "MinimaxResult": lambda: analysis.minimax("squareplus", "softplus", "b", dps=15),
    "ShapedNetwork": _shaped_network,
    "ShapedLayer": lambda: _shaped_network().layers[0],
    "EntropyNormalization": lambda: numeric.entropy_normalize(["0.5", "0.2", "0.3"], 1, dps=30),
}


@pytest.mark.parametrize("kind", sorted(_RESULTS))
def test_every_key_in_a_result_repr_is_an_attribute_with_that_value(kind):
    result = _RESULTS[kind]()
    assert type(result).__name__ == kind
    text = repr(result)
    pairs = _KEY_VALUE.findall(text)
    assert pairs, text
    for key, shown in pairs:
        assert hasattr(result, key), f"{type(result).__name__} repr shows {key}= but has no attribute {key}: {text}"
        value = getattr(result, key)
        try:
            number = float(shown)
        except ValueError:
            continue  # names, dicts: the attribute's existence is the point
        if isinstance(value, (tuple, list)):
            value = len(value)  # ShapedNetwork(layers=2): the number of layers
        assert math.isclose(float(value), number, rel_tol=1e-9, abs_tol=1e-12), (key, value, shown)


def test_kernel_maps_repr_states_the_precision_its_numbers_carry():
    # was: KernelMaps('tanh', engine='float64', dps=30), though its results are float64
    from analysis import kernel_maps

    assert repr(kernel_maps("tanh", engine="float64")) == "KernelMaps('tanh', engine='float64')"
    assert isinstance(kernel_maps("tanh", engine="float64").q_map(1.0), float)
    assert repr(kernel_maps("tanh", engine="mpmath", dps=20)) == "KernelMaps('tanh', engine='mpmath', dps=20)"
