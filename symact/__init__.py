"""symact: exact formulas for neural-network activation functions (SymPy only).

>>> import symact
>>> gelu = symact.activation("gelu")
>>> gelu.derivative().expr
sqrt(2)*x*exp(-x**2/2)/(2*sqrt(pi)) + erf(sqrt(2)*x/2)/2 + 1/2
>>> symact.activation("tanh").properties().odd
True
"""

from .activation import Activation, Properties, activation, parse_formula, v, x
from .catalogue import CatalogueEntry, catalogue, catalogue_names
from .parametrize import (
    AutoactivationTable,
    ParameterActivation,
    SignedParametrization,
    autoactivation_table,
    parameter_activation,
    parameter_activation_names,
    signed_parametrization,
)
from .errors import (
    DivergentIntegralError,
    DomainError,
    FormulaError,
    InfeasibleShapingError,
    InvalidGraphError,
    NoInverseError,
    NonRealExpressionError,
    SymactError,
    TrainingDivergedError,
    UnknownActivationError,
    UnknownSymbolError,
)

__version__ = "0.1.0.dev0"

__all__ = [
    "Activation",
    "Properties",
    "activation",
    "parse_formula",
    "x",
    "v",
    "CatalogueEntry",
    "catalogue",
    "catalogue_names",
    "SymactError",
    "FormulaError",
    "UnknownSymbolError",
    "UnknownActivationError",
    "NonRealExpressionError",
    "NoInverseError",
    "DivergentIntegralError",
    "DomainError",
    "InfeasibleShapingError",
    "InvalidGraphError",
    "TrainingDivergedError",
    "AutoactivationTable",
    "ParameterActivation",
    "SignedParametrization",
    "autoactivation_table",
    "parameter_activation",
    "parameter_activation_names",
    "signed_parametrization",
]

# --- branch smooth (issue 7): smoothing by convolution, symbolic entropy normalisation ---
from symact import entropy, smooth  # noqa: E402,F401
