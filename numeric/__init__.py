"""numeric."""

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
