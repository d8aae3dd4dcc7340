"""numeric."""

# --- codegen branch: torch code generation (no torch import at package import time)
from .codegen import export_module, generated_source, torch_function, torch_module  # noqa: E402,F401

# --- paramact: parameter activations and the Deep Universal Regressor (issue 6) ---
# Loaded on first access so that `import numeric` still does not import torch.
_PARAMACT_EXPORTS = {
    "DifferenceParametrization": "parametrizations",
    "ParameterActivationParametrization": "parametrizations",
    "SecondLayerParametrization": "parametrizations",
    "SoftSignParametrization": "parametrizations",
    "parametrization": "parametrizations",
    "parametrize_model": "parametrizations",
    "DeepUniversalRegressorI": "regressor",
    "DeepUniversalRegressorII": "regressor",
}


def __getattr__(name):
    if name in _PARAMACT_EXPORTS:
        import importlib

        return getattr(importlib.import_module(f".{_PARAMACT_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module 'numeric' has no attribute {name!r}")
# --- branch smooth (issue 7): entropy normalisation (needs torch, an optional dependency) ---
try:
    from numeric.entropy import (  # noqa: E402,F401
        ConvergenceReport,
        EntropyNormalization,
        EntropyNormalize,
        entropy_normalize,
    )
except ImportError:  # pragma: no cover - torch not installed
    pass
