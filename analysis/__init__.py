"""analysis: the questions users ask of an activation, and the answers.

Public names are loaded on first access (torch is optional and heavy), each from the
submodule listed in ``_EXPORTS``.
"""

from __future__ import annotations

import importlib

# public name -> submodule of analysis that defines it
_EXPORTS = {
    # smooth approximations
    "DominanceThreshold": "approximation",
    "MinimaxResult": "approximation",
    "asymptotic_expansion": "approximation",
    "dominance_threshold": "approximation",
    "error_expression": "approximation",
    "match_conditions": "approximation",
    "minimax": "approximation",
    # the gradient-penalty inequality
    "LayerPenaltyTerm": "penalty",
    "PenaltyInequality": "penalty",
    "gradient_penalty_inequality": "penalty",
    # DKS/TAT kernel shaping and the transformed activation's conditions
    "shape": "shaping",
    "ShapedNetwork": "shaping",
    "ShapedLayer": "shaping",
    "TorchShaping": "shaping",
    "LayerSolution": "shaping",
    "solve_dks_layer": "shaping",
    "solve_tat_layer": "shaping",
    "leaky_relu_c_map": "shaping",
    "transform_conditions": "transform_conditions",
    "TransformConditions": "transform_conditions",
    "ConditionSet": "transform_conditions",
    # Q/C kernel maps and the empirical check against wide random networks
    "ClosedForm": "kernel",
    "ComposedKernelMaps": "kernel",
    "KernelMaps": "kernel",
    "find_closed_form": "kernel",
    "kernel_maps": "kernel",
    "EmpiricalKernel": "empirical",
    "empirical_kernel": "empirical",
    "kernel_tolerance": "empirical",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))
