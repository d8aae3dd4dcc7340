"""analysis."""

# --- kernel branch: Q/C kernel maps and the empirical check ---
from analysis.kernel import ClosedForm, ComposedKernelMaps, KernelMaps, find_closed_form, kernel_maps  # noqa: E402,F401
from analysis.empirical import EmpiricalKernel, empirical_kernel, kernel_tolerance  # noqa: E402,F401
