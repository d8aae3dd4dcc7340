"""numeric: turning symact expressions into numbers and torch modules.

Nothing here is imported until used, so ``import numeric`` stays cheap and does not
import torch (an optional dependency): each public name maps to the submodule that
defines it and is loaded on first access.
"""

from __future__ import annotations

import importlib

# public name -> submodule of numeric that defines it
_EXPORTS = {
    # torch code generation
    "export_module": "codegen",
    "generated_source": "codegen",
    "torch_function": "codegen",
    "torch_module": "codegen",
    # parameter activations and the Deep Universal Regressor
    "DifferenceParametrization": "parametrizations",
    "ParameterActivationParametrization": "parametrizations",
    "SecondLayerParametrization": "parametrizations",
    "SoftSignParametrization": "parametrizations",
    "parametrization": "parametrizations",
    "parametrize_model": "parametrizations",
    "DeepUniversalRegressorI": "regressor",
    "DeepUniversalRegressorII": "regressor",
    # entropy normalisation
    "ConvergenceReport": "entropy",
    "EntropyNormalization": "entropy",
    "EntropyNormalize": "entropy",
    "MaskGapWarning": "entropy",
    "NotConvergedWarning": "entropy",
    "entropy_normalize": "entropy",
    # kernel-preserving initialisers
    "scaled_uniform_orthogonal_": "initializers",
    "delta_orthogonal_": "initializers",
    "kernel_preserving_init_": "initializers",
    "per_location_normalize": "initializers",
    "TransformedActivation": "initializers",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
        globals()[name] = value  # later look-ups skip this function
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))
