"""analysis."""

# --- branch smooth (issue 7): approximation analysis and the gradient-penalty inequality ---
from analysis.approximation import (  # noqa: E402,F401
    DominanceThreshold,
    MinimaxResult,
    asymptotic_expansion,
    dominance_threshold,
    error_expression,
    match_conditions,
    minimax,
)

try:
    from analysis.penalty import LayerPenaltyTerm, PenaltyInequality, gradient_penalty_inequality  # noqa: E402,F401
except ImportError:  # pragma: no cover - torch not installed
    pass
