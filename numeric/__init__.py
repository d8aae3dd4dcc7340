"""numeric."""

# --- codegen branch: torch code generation (no torch import at package import time)
from .codegen import export_module, generated_source, torch_function, torch_module  # noqa: E402,F401
