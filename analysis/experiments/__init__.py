"""analysis/experiments."""
