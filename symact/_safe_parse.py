"""Parse formula strings without running them as Python code.

SymPy's ``parse_expr`` ends in ``eval``: with its default global namespace (every SymPy name plus
Python's builtins) a "formula" such as ``__import__("os").system(...)`` runs.  Every formula string
symact reads goes through :func:`safe_parse`, which

* evaluates in a global dict that holds only an explicit vocabulary of SymPy names and an empty
  ``__builtins__`` (so ``__import__``, ``open``, ``eval`` ... do not exist);
* refuses, before evaluation, the token shapes that reach code without a builtin: string literals
  (SymPy functions sympify a string argument, which is itself an ``eval``), attribute access
  (``x.name``, ``f._repr_latex_()`` yield strings; ``obj.__class__`` walks to any class) and
  dunder names.

The vocabulary holds SymPy's expression classes and constants (``sin``, ``Piecewise``, ``pi`` ...) and
a few constructor functions (``sqrt``, ``root``); it leaves out SymPy's functions that parse strings
or return them (``sympify``, ``S``, ``latex``, ``lambdify``, ...).
"""

from __future__ import annotations

import functools
import io
import keyword
import re
import tokenize
from typing import Any, Mapping

import sympy
from sympy.core.function import AppliedUndef, FunctionClass
from sympy.parsing.sympy_parser import convert_xor, parse_expr, rationalize, standard_transformations

from .errors import FormulaError

__all__ = ["safe_globals", "sympy_vocabulary", "check_formula_tokens", "safe_parse", "safe_number", "safe_sympify",
           "check_exact_arguments"]

# Names the parser's own transformations emit (auto_symbol, auto_number, lambda_notation, ...).
_PARSER_NAMES = ("Symbol", "Function", "Integer", "Float", "Rational", "Lambda", "factorial")
# Plain functions (not classes) that only build expressions from expressions.
_EXPRESSION_FUNCTIONS = ("sqrt", "cbrt", "root", "real_root")


def safe_globals(vocabulary: Mapping[str, Any] = ()) -> dict:
    """A fresh global dict for ``parse_expr``: ``vocabulary`` plus the parser's own names, no builtins."""
    env: dict[str, Any] = {name: getattr(sympy, name) for name in _PARSER_NAMES}
    env.update(vocabulary)
    for name, value in env.items():  # a call Pow(9, 9**9) would compute its 3.7e8 digits
        if value is sympy.Pow:
            env[name] = _size_checked_pow
        elif is_exactly_evaluated(value):  # factorial(10**7), bell(3000): exact values that take for ever
            env[name] = _argument_checked(value)
    env["__builtins__"] = {}  # without it eval() would insert the real builtins module
    return env


@functools.lru_cache(maxsize=1)
def _sympy_vocabulary() -> Mapping[str, Any]:
    env = {}
    for name in sympy.__all__:
        obj = getattr(sympy, name, None)
        if isinstance(obj, sympy.Basic) or isinstance(obj, FunctionClass) or (
            isinstance(obj, type) and issubclass(obj, sympy.Basic)
        ):
            env[name] = obj
    env.update({name: getattr(sympy, name) for name in _EXPRESSION_FUNCTIONS})
    env.update(max=sympy.Max, min=sympy.Min, pow=sympy.Pow)
    return env


def sympy_vocabulary() -> dict:
    """SymPy's expression classes and constants, and ``sqrt``/``cbrt``/``root`` (a copy)."""
    return dict(_sympy_vocabulary())


# Keywords a formula has no use for (lambda is worded by parse_formula; True/False/None are values).
_REFUSED_KEYWORDS = frozenset(keyword.kwlist) - {"lambda", "True", "False", "None"}


_CLOSING = {"(": ")", "[": "]", "{": "}"}


def _bracket_problem(text: str) -> str | None:
    """What is wrong with the brackets of ``text`` (a closer with no opener, a pair that does not
    match, an opener never closed), with the counts of each kind that does not balance; None if
    they nest.  Checked before Python's tokenizer, whose words differ between versions (3.11:
    "EOF in multi-line statement" for 'tanh(x'; 3.12: "unmatched ')'" for 'x*sigmoid(x))')."""
    stack: list[tuple[str, int]] = []
    problem = None
    for position, char in enumerate(text.split("#", 1)[0]):
        if char in _CLOSING:
            stack.append((char, position))
        elif char in _CLOSING.values():
            if not stack:
                problem = f"{char!r} at position {position} closes no bracket"
                break
            opener, opened_at = stack.pop()
            if _CLOSING[opener] != char:
                problem = f"{opener!r} at position {opened_at} is closed by {char!r} at position {position}"
                break
    if problem is None and stack:
        opener, opened_at = stack[-1]
        problem = f"{opener!r} at position {opened_at} is never closed"
    if problem is None:
        return None
    counts = [(o, text.count(o), c, text.count(c)) for o, c in _CLOSING.items()]
    unbalanced = [f"{n_o} '{o}' against {n_c} '{c}'" for o, n_o, c, n_c in counts if n_o != n_c]
    return (f"the brackets do not {'balance (' + ', '.join(unbalanced) + ')' if unbalanced else 'nest'}: "
            f"{problem}; each opening bracket needs exactly one closing bracket of its kind, after it")


def check_formula_tokens(text: str, what: str = "formula") -> None:
    """Raise :class:`FormulaError` for unbalanced brackets, string literals, attribute access or dunder
    names in ``text``."""
    brackets = _bracket_problem(text)
    if brackets is not None:
        raise FormulaError(f"cannot parse the {what} {text!r}: {brackets}")
    try:
        tokens = [t for t in tokenize.generate_tokens(io.StringIO(text).readline)
                  if t.type not in (tokenize.NL, tokenize.NEWLINE, tokenize.COMMENT, tokenize.ENDMARKER)]
    except (tokenize.TokenError, SyntaxError, IndentationError) as exc:
        reason = exc.args[0] if isinstance(exc, tokenize.TokenError) and exc.args else exc
        raise FormulaError(f"cannot parse the {what} {text!r}: {reason}; write it in Python/SymPy syntax, "
                           "e.g. 'x*tanh(log(1+exp(x)))'") from None
    string_types = {tokenize.STRING} | {getattr(tokenize, n) for n in ("FSTRING_START",) if hasattr(tokenize, n)}
    for i, token in enumerate(tokens):
        problem = None
        if token.type in string_types:
            problem = f"a string literal ({token.string})"
        elif token.type == tokenize.NAME and "__" in token.string:
            problem = f"the name {token.string!r}"
        elif token.type == tokenize.NAME and token.string in _REFUSED_KEYWORDS:
            # Python's and/or/if-else test a SymPy object's truth: 'x and 1' was 1, '1 if 2 > 1 else x' 1
            problem = (f"the Python keyword {token.string!r} (conditions are Piecewise((x, x > 0), (0, True)), "
                       "Max, Min or Heaviside)")
        elif token.type == tokenize.OP and token.string == "." and i + 1 < len(tokens) and tokens[i + 1].type == tokenize.NAME:
            problem = f"attribute access (.{tokens[i + 1].string})"
        elif token.type == tokenize.NUMBER and _huge_decimal_exponent(token.string):
            # SymPy converts a decimal literal exactly: 1e100000 took seconds, 1e65657059 never returned
            raise FormulaError(
                f"the {what} {text!r} contains the number {token.string}, whose decimal exponent exceeds "
                f"{_MAX_EXACT_DIGITS} (SymPy would compute it digit by digit, for minutes or for ever); write "
                f"numbers with at most {_MAX_EXACT_DIGITS} digits, or a symbol with a value")
        if problem:
            raise FormulaError(
                f"the {what} {text!r} contains {problem}, which a formula may not use (formulas are not "
                "run as Python code); write it with numbers, the input symbol, parameters and functions "
                "such as exp, log, tanh, erf, Piecewise"
            )


_DECIMAL_EXPONENT = re.compile(r"[0-9_.]+[eE]([+-]?[0-9_]+)[jJ]?")


def _huge_decimal_exponent(number: str) -> bool:
    """Whether the number token ``number`` is a decimal literal with exponent beyond +-_MAX_EXACT_DIGITS."""
    match = _DECIMAL_EXPONENT.fullmatch(number)
    return match is not None and abs(int(match.group(1).replace("_", ""))) > _MAX_EXACT_DIGITS


def safe_parse(text: str, local_dict: Mapping[str, Any], vocabulary: Mapping[str, Any],
               transformations: tuple | None = None, what: str = "formula") -> Any:
    """``parse_expr(text)`` evaluated in :func:`safe_globals` after :func:`check_formula_tokens`.

    An exact power of more than 10,000 digits (``9**9**9**9``, ``Pow(10, 10**6)``), and a function SymPy
    evaluates exactly called with an exact argument above 100 (``factorial(10**7)``,
    ``binomial(10**6, 5*10**5)``, ``bell(3000)``), are a :class:`FormulaError`, raised before SymPy computes
    them.  Other parse errors propagate as
    parse_expr raises them (the caller words its message).
    """
    check_formula_tokens(text, what)
    kwargs = {} if transformations is None else {"transformations": transformations}
    try:
        if _POWER_TOKENS.search(text):
            # Python's ** calls no name the parse can guard; parsed unevaluated it becomes Pow(...) calls
            try:
                parse_expr(text, local_dict=dict(local_dict), global_dict=safe_globals(vocabulary),
                           evaluate=False, **kwargs)
            except (_ExactNumberTooLarge, _ExactArgumentTooLarge):
                raise
            except Exception:  # noqa: BLE001 - the evaluating parse below raises what the caller expects
                pass
        return parse_expr(text, local_dict=dict(local_dict), global_dict=safe_globals(vocabulary), **kwargs)
    except _ExactNumberTooLarge as exc:
        raise FormulaError(
            f"the {what} {text!r} contains {exc.power}, an exact number with about {exc.digits} digits; "
            f"write numbers with at most {_MAX_EXACT_DIGITS} digits (a float such as 1e300, or a symbol "
            "with a value)") from None
    except _ExactArgumentTooLarge as exc:
        raise FormulaError(f"the {what} {text!r} contains {_exact_argument_message(exc.call)}") from None


# SymPy evaluates the functions of these modules exactly at an exact number (factorial(10**7) multiplies out
# its 6.6e7 digits, binomial(10**6, 5*10**5) its 3e5, bell(3000) runs a quadratic recursion, legendre(1000, x)
# expands the polynomial): a formula may give them exact arguments up to this size only.
EXACTLY_EVALUATED_MODULES = (
    "sympy.functions.combinatorial", "sympy.functions.special.gamma_functions",
    "sympy.functions.special.zeta_functions", "sympy.functions.special.polynomials",
    "sympy.functions.special.beta_functions", "sympy.ntheory",
)
MAX_EXACT_ARGUMENT = 100


def is_exactly_evaluated(function: Any) -> bool:
    """Whether ``function`` (a SymPy function class) is one SymPy evaluates exactly at exact numbers."""
    return isinstance(function, FunctionClass) and function.__module__.startswith(EXACTLY_EVALUATED_MODULES)


class _ExactArgumentTooLarge(Exception):
    """Raised inside the parse by an :func:`_argument_checked` function; :func:`safe_parse` words the error."""

    def __init__(self, call: str):
        super().__init__(call)
        self.call = call


def _too_large_argument(args: tuple) -> bool:
    return any(isinstance(a, sympy.Rational) and abs(a) > MAX_EXACT_ARGUMENT for a in args)


def _argument_checked(function: FunctionClass) -> Any:
    """``function``, refusing an exact rational argument larger than MAX_EXACT_ARGUMENT in size before SymPy
    evaluates it."""
    def call(*args: Any, **kwargs: Any) -> Any:
        values = tuple(sympy.sympify(a) for a in args)
        if _too_large_argument(values):
            raise _ExactArgumentTooLarge(f"{function.__name__}({', '.join(map(str, values))})")
        return function(*values, **kwargs)

    call.__name__ = call.__qualname__ = function.__name__
    return call


def _exact_argument_message(call: str) -> str:
    return (f"{call}, which SymPy would work out exactly (a number of thousands of digits, or a polynomial of "
            f"that degree: minutes, or for ever); give such functions exact arguments of size at most "
            f"{MAX_EXACT_ARGUMENT} (a float written in the formula, as in factorial(1e7), is evaluated numerically)")


def check_exact_arguments(expr: Any, values: Mapping[Any, Any], what: str) -> None:
    """Raise :class:`FormulaError` where substituting ``values`` (symbol -> value) into ``expr`` would give an
    exactly evaluated function (factorial, binomial, bell, gamma, zeta, legendre, ...) an exact argument larger
    than MAX_EXACT_ARGUMENT (``factorial(n)`` with n = 10**7); ``what`` names the values in the message.

    Inner calls are checked first, so that each substitution only evaluates calls found small enough."""
    if not values or not isinstance(expr, sympy.Basic):
        return
    for node in sympy.postorder_traversal(expr):
        if isinstance(node, sympy.Function) and is_exactly_evaluated(type(node)) and node.has(*values):
            args = tuple(a.xreplace(dict(values)) for a in node.args)
            if _too_large_argument(args):
                call = f"{type(node).__name__}({', '.join(map(str, args))})"
                raise FormulaError(f"{what} makes the formula contain {_exact_argument_message(call)}")


# operator powers x**n and x^n (convert_xor)
_POWER_TOKENS = re.compile(r"\*\*|\^")
# An exact power with more digits than this is refused before SymPy computes it (9**9**9**9 would
# run for ever): no activation formula needs such a number.
_MAX_EXACT_DIGITS = 10_000


class _ExactNumberTooLarge(Exception):
    """Raised inside the parse by :func:`_size_checked_pow`; :func:`safe_parse` words the error."""

    def __init__(self, power: str, digits: str):
        super().__init__(power)
        self.power, self.digits = power, digits


def _size_checked_pow(base: Any, exponent: Any, evaluate: bool | None = None) -> Any:
    """``sympy.Pow(base, exponent)``, refused when both are exact numbers and the power has more than
    _MAX_EXACT_DIGITS digits (estimated with evalf, which works on magnitudes: 9**(9**9**9) takes
    microseconds)."""
    base, exponent = sympy.sympify(base), sympy.sympify(exponent)
    if all(isinstance(e, sympy.Expr) and e.is_number and not e.has(sympy.Float) for e in (base, exponent)):
        try:
            magnitude, power = abs(sympy.N(base, 15)), abs(sympy.N(exponent, 15))
            digits = power * abs(sympy.log(magnitude, 10).evalf(15)) if magnitude not in (0, 1) else 0
        except (TypeError, ValueError, ArithmeticError):
            digits = 0
        if getattr(digits, "is_comparable", False) and digits > _MAX_EXACT_DIGITS:
            raise _ExactNumberTooLarge(str(sympy.Pow(base, exponent, evaluate=False)), str(sympy.N(digits, 3)))
    return sympy.Pow(base, exponent) if evaluate is None else sympy.Pow(base, exponent, evaluate=evaluate)


# Decimal literals become the exact rational typed ("0.2" is 1/5), like Python floats given as parameters.
_NUMBER_TRANSFORMATIONS = standard_transformations + (convert_xor, rationalize)


def safe_number(text: str, name: str, label: str | None = None) -> sympy.Expr:
    """A numeric string (``"0.2"``, ``"1/3"``, ``"sqrt(2)"``, ``"pi/4"``) as an exact SymPy number.

    Decimals become exact rationals (``"0.2"`` is 1/5), as Python floats do for parameters.
    Raises :class:`FormulaError` naming ``label`` (default ``name``) for anything that is not a real
    finite number; the hint shows ``name=...`` keyword examples.
    """
    label = label or repr(name)
    hint = f"pass a number, e.g. {name}=0.5, {name}='1/3' or {name}='sqrt(2)'"
    try:
        value = safe_parse(text.strip(), {}, sympy_vocabulary(), _NUMBER_TRANSFORMATIONS, what=f"value of {name}")
    except FormulaError as exc:
        raise FormulaError(f"{label} = {text!r} is not a number ({exc}); {hint}") from None
    except Exception as exc:  # parse_expr raises whatever the evaluated code raises
        raise FormulaError(f"{label} = {text!r} is not a number ({type(exc).__name__}: {exc}); {hint}") from None
    if not isinstance(value, sympy.Expr) or not value.is_number or value.has(sympy.Symbol):
        raise FormulaError(f"{label} = {text!r} is not a number; {hint}")
    if value.is_real is False or value.is_finite is False or value.has(sympy.nan, sympy.zoo, sympy.oo, -sympy.oo):
        raise FormulaError(f"{label} = {text!r} is not a real finite number; {hint}")
    return value


def safe_sympify(value: Any, what: str = "value", local_dict: Mapping[str, Any] | None = None) -> Any:
    """``sympy.sympify`` that never runs a string as code: a string is parsed by :func:`safe_parse`
    (SymPy's names, ``local_dict``, new symbols for other names); anything else is sympified as is.

    >>> safe_sympify("1/2 + p")
    p + 1/2
    """
    if isinstance(value, str):
        try:
            parsed = safe_parse(value, local_dict or {}, sympy_vocabulary(), what=what)
        except FormulaError:
            raise
        except Exception as exc:  # parse_expr raises whatever the parsed text raises
            raise FormulaError(f"could not read {what} {value!r} ({type(exc).__name__}: {exc})") from None
        unknown = sorted({f.func.__name__ for f in getattr(parsed, "atoms", lambda *_: ())(AppliedUndef)})
        if unknown:
            raise FormulaError(f"{what} {value!r} calls unknown function(s) {unknown}; use SymPy's functions "
                               "(exp, log, tanh, erf, ...)")
        return parsed
    if isinstance(value, (list, tuple, set, dict)):  # sympify would eval strings inside containers
        raise FormulaError(f"{what} must be a number, expression or string, not a {type(value).__name__}")
    return sympy.sympify(value)
