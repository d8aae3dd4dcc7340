"""symact."""

# --- branch smooth (issue 7): smoothing by convolution, symbolic entropy normalisation ---
from symact import entropy, smooth  # noqa: E402,F401
