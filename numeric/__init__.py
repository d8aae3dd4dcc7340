"""numeric."""

# --- paramact: parameter activations and the Deep Universal Regressor (issue 6) ---
from .parametrizations import (  # noqa: E402
    DifferenceParametrization,
    ParameterActivationParametrization,
    SecondLayerParametrization,
    SoftSignParametrization,
    parametrization,
    parametrize_model,
)
