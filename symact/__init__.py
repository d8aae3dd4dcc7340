"""symact."""

# --- paramact: parameter activations (issue 6) ---
from .parametrize import (  # noqa: E402
    AutoactivationTable,
    ParameterActivation,
    SignedParametrization,
    autoactivation_table,
    parameter_activation,
    parameter_activation_names,
    signed_parametrization,
)
