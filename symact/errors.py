"""One error family for the whole project.

Every exception symact raises on bad input derives from :class:`SymactError`, so
``except symact.SymactError`` catches them all.  Messages name the problem *and*
the fix; they are meant to be read by a person at a REPL.
"""

from __future__ import annotations

__all__ = [
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
    "is_whole_number",
    "is_integer_valued",
    "python_number",
]


def is_whole_number(value: object, least: int = 0) -> bool:
    """Whether ``value`` is a whole number (a Python or NumPy integer, not a bool, 2.5 or "3") >= ``least``.

    The one test every layer applies to counts, orders and digit settings before naming the problem
    in its own error message (``numbers.Integral`` admits numpy integers; bool is an Integral too).

    >>> is_whole_number(3), is_whole_number(True), is_whole_number(2.0), is_whole_number(-1)
    (True, False, False, False)
    """
    import numbers

    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= least


def is_integer_valued(value: object) -> bool:
    """Whether ``value`` is an integer-valued number, 2 or 2.0 (not True, 2.5, nan, inf or "2"): the looser test
    for settings that have always taken whole floats (digits, derivative orders of the kernel maps), where
    nan and inf reached int() as a bare ValueError / OverflowError.

    >>> is_integer_valued(2.0), is_integer_valued(True), is_integer_valued(float("nan"))
    (True, False, False)
    """
    try:
        return int(value) == value and not isinstance(value, bool)
    except (TypeError, ValueError, OverflowError):
        return False


class SymactError(Exception):
    """Base class of every error raised by symact on bad input."""


class FormulaError(SymactError, ValueError):
    """A formula could not be parsed or is not a valid activation."""


class UnknownSymbolError(FormulaError):
    """A formula uses symbols that are neither the input nor declared parameters.

    ``symbols``: the names of the undeclared symbols, when that is the problem (empty otherwise),
    so that a front end can state its own fix (the CLI's ``--param``)."""

    def __init__(self, *args: object, symbols: tuple = ()) -> None:
        super().__init__(*args)
        self.symbols = tuple(symbols)


class UnknownActivationError(SymactError, KeyError):
    """A catalogue name, or an activation node of a shaped network, that does not exist (the message
    names close or valid ones)."""

    def __str__(self) -> str:  # KeyError would print the repr of the message
        return str(self.args[0]) if self.args else ""


class NonRealExpressionError(FormulaError):
    """An expression that takes non-real values for real inputs."""


class NoInverseError(SymactError, ValueError):
    """A function has no inverse on the stated domain."""


class DivergentIntegralError(SymactError, ArithmeticError):
    """A Gaussian expectation or convolution integral diverges."""


class DomainError(SymactError, ValueError):
    """An argument outside the domain of a map (e.g. c outside [-1, 1], q <= 0)."""


class InfeasibleShapingError(SymactError, ValueError):
    """Kernel-shaping targets that no transformed activation can meet."""


class InvalidGraphError(SymactError, ValueError):
    """A network graph that is cyclic, disconnected, or otherwise ill-formed."""


class TrainingDivergedError(SymactError, FloatingPointError):
    """A training run produced NaN or inf."""


def python_number(value: object) -> object:
    """The Python number a NumPy scalar, 0-d array or 0-d tensor holds (``value.item()``); anything else as it is.

    The one conversion every layer applies to numbers that arrive from arrays before reading them exactly
    (np.float32(1.5) sympified to a 24-bit Float, np.float64(1.5) raised a bare TypeError in SymPy).

    >>> import numpy as np
    >>> python_number(np.float32(0.5)), python_number(np.array(2)), python_number("x")
    (0.5, 2, 'x')
    """
    if getattr(value, "ndim", None) == 0 and callable(getattr(value, "item", None)):
        return value.item()
    return value
