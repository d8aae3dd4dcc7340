"""analysis/experiments."""

# --- paramact: parameter-activation and DUR experiments (issue 6) ---
# Loaded on first access (they import torch).
_PARAMACT_EXPORTS = {
    "OneStepSpec": "parameter_activation",
    "one_step_check": "parameter_activation",
    "format_one_step_table": "parameter_activation",
    "ConvergenceSpec": "parameter_activation",
    "convergence_study": "parameter_activation",
    "format_table": "parameter_activation",
    "ExtrapolationSpec": "regressor",
    "extrapolation_experiment": "regressor",
    "format_extrapolation_table": "regressor",
}


def __getattr__(name):
    if name in _PARAMACT_EXPORTS:
        import importlib

        return getattr(importlib.import_module(f".{_PARAMACT_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module 'analysis.experiments' has no attribute {name!r}")
