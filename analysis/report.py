"""``report.md`` and its PNG plots, written from the suite's records.

Every experiment module may define ``report_section(records, out_dir) -> Section``
(``records`` are all the suite's latest records; the module picks its own).  A
section holds markdown, suite-level :class:`~analysis.records.Claim` s (for example
"median over 3 seeds of DKS below plain") and the plot files it wrote.  The report
starts with the summary table of every claim: prediction, measured value,
tolerance, verdict.  A verdict is whatever was measured; a failing claim is shown
as failing, with its numbers.
"""

from __future__ import annotations

import math
import numbers
import os
import re
import sys
import textwrap
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Sequence

from analysis.records import Claim, Record, to_jsonable

__all__ = ["Section", "write_report", "report_sections", "claim_rows", "summary_table", "line_plot", "format_value", "format_measured",
           "markdown_table"]


@dataclass(frozen=True)
class Section:
    """A part of the report: ``markdown`` body, its ``claims`` and the ``figures`` it wrote (file names)."""

    title: str
    markdown: str = ""
    claims: tuple = ()
    figures: tuple = ()


def format_value(value: Any, digits: int = 4) -> str:
    """Short human form of a measured value: real numbers to ``min(digits, H)`` significant digits, where ``H`` is
    the number of decimal digits their type holds, integers exactly.

    ``H = floor((p - 1) log10 2)`` for a binary type with a ``p``-bit significand (C's ``FLT_DIG``, numpy's
    ``finfo.precision``): 15 for float64, 6 for float32, 3 for float16, 2 for bfloat16, 18 for x87 long double;
    an ``mpmath.mpf`` holds ``mpmath.mp.prec`` bits (``mp.dps`` digits) and a SymPy ``Float`` its own ``_prec``;
    a ``Fraction`` or SymPy ``Rational`` is exact (``H`` unbounded).  More digits than ``H`` would print digits
    that the type does not hold: float32's 0.1 is 0.100000001490116..., and its ``0.100000001`` only tells which
    float32 it is, not a measurement to nine digits.  Every type is rounded the same way as a Python float
    (round half to even of its exact binary value): ``m.mmm e±XX`` below 1e-3 and from 1e5 on, ``%g`` between.

    Python, numpy (any float and int type, 0-d arrays) and torch scalars (0-d tensors of any dtype), mpmath and
    SymPy numbers all print this way; complex numbers as ``(re+imj)`` with each part rounded so.  An array or
    tensor of one or more dimensions prints like a list, element by element: ``[0.1, 0.2]``, its first 6 entries
    and ``...`` after them.  ``digits`` must be an integer >= 1.
    """
    digits = _check_digits(digits)
    if type(value) is float:  # the common case first (the checks below took it from 0.7 to 3.3 us)
        return _format_real(_Real(value, 53, -1022), min(digits, 15))
    if value is None:
        return "-"
    if isinstance(value, bool) or _is_numpy_bool(value):
        return str(bool(value))
    if _is_array(value):
        if value.ndim == 0:
            return format_value(_array_scalar(value), digits)
        return _format_sequence(value, digits)
    if isinstance(value, numbers.Integral):  # exact: a width of 10000 or 12345 steps is not 1e+04 or 1.234e+04
        return str(int(value))
    real = _real_scalar(value)
    if real is not None:
        held = real.digits_held
        return _format_real(real, digits if held is None else min(digits, held))
    parts = _complex_parts(value)
    if parts is not None:
        return _format_complex(parts, digits)
    if isinstance(value, (list, tuple)):
        return _format_sequence(value, digits)
    return str(value)


def _check_digits(digits: Any) -> int:
    if type(digits) is int and digits >= 1:
        return digits
    if isinstance(digits, bool) or not isinstance(digits, numbers.Integral) or digits < 1:
        raise ValueError(f"digits={digits!r}: give the number of significant digits to print as an integer >= 1.")
    return int(digits)


def _format_sequence(values: Any, digits: int) -> str:
    shown = [format_value(values[i], digits) for i in range(min(len(values), 6))]
    return "[" + ", ".join(shown) + (", ..." if len(values) > 6 else "") + "]"


@dataclass(frozen=True)
class _Real:
    """A real number as its exact value and its type's precision.

    ``value``: a float (exact for every binary type up to float64) or an exact ``Fraction`` (long double, mpf,
    rationals).  ``bits``: the significand bits of the type, the implicit leading one included (53 for float64);
    None for an exact type.  ``min_exponent``: the binary exponent of the type's smallest normal number (-1022
    for float64; None: unbounded, as mpf)."""

    value: float | Fraction
    bits: int | None
    min_exponent: int | None = None

    @property
    def digits_held(self) -> int | None:
        """Decimal digits the type holds, ``floor((bits - 1) log10 2)``, at least 1; None: exact."""
        return None if self.bits is None else max(1, math.floor((self.bits - 1) * math.log10(2)))

    @property
    def identifying_digits(self) -> int:
        """Significant digits that always tell the stored number from its neighbours, ``ceil(bits log10 2) + 1``
        (float64 17, float32 9, float16 5, bfloat16 4); 17 for an exact type."""
        return 17 if self.bits is None else math.ceil(self.bits * math.log10(2)) + 1

    def is_finite(self) -> bool:
        return isinstance(self.value, Fraction) or math.isfinite(self.value)

    def reads_back_from(self, text: str) -> bool:
        """Whether the decimal ``text`` reads back as this very number of its type: closer to it than half the
        spacing to either neighbour (below a power of 2 the spacing halves; a text exactly half-way is not taken
        either, so True never depends on the reader's tie rule).  An exact type: ``text`` is its value."""
        exact = Fraction(self.value)
        if self.bits is None:
            return Fraction(text) == exact
        magnitude = abs(exact)
        if magnitude == 0:
            exponent = self.min_exponent if self.min_exponent is not None else 0
        else:
            # 2**exponent <= |value| < 2**(exponent + 1)
            exponent = magnitude.numerator.bit_length() - magnitude.denominator.bit_length()
            if Fraction(2) ** exponent > magnitude:
                exponent -= 1
        if self.min_exponent is not None:
            exponent = max(exponent, self.min_exponent)  # a subnormal is spaced like the smallest normals
        half_gap = Fraction(2) ** (exponent - self.bits + 1) / 2
        if magnitude == Fraction(2) ** exponent and (self.min_exponent is None or exponent > self.min_exponent):
            half_gap /= 2  # the neighbour below a power of 2 is half as far as the one above
        if magnitude == 0 and self.min_exponent is None:
            return Fraction(text) == 0  # an mpf 0 has no neighbours at a fixed spacing
        return abs(Fraction(text) - exact) < half_gap


def _is_numpy_bool(value: Any) -> bool:
    np = sys.modules.get("numpy")
    return np is not None and isinstance(value, np.bool_)


def _is_array(value: Any) -> bool:
    np, torch = sys.modules.get("numpy"), sys.modules.get("torch")
    return (np is not None and isinstance(value, np.ndarray)) or (torch is not None and isinstance(value, torch.Tensor))


def _array_scalar(value: Any) -> Any:
    """The one element of a 0-d array or tensor, keeping its dtype: a numpy scalar, or the 0-d tensor itself
    as a bool / int / float / complex with its precision."""
    np = sys.modules.get("numpy")
    if np is not None and isinstance(value, np.ndarray):
        return value[()]
    if value.dtype.is_complex or value.dtype.is_floating_point:
        return _TorchScalar(value)
    return bool(value.item()) if value.dtype == sys.modules["torch"].bool else int(value.item())


@dataclass(frozen=True)
class _TorchScalar:
    """A 0-d float or complex tensor, to be read with its dtype's precision."""

    tensor: Any


def _real_scalar(value: Any) -> _Real | None:
    """``value`` as a :class:`_Real`, or None when it is not a real number this module knows the precision of."""
    np, torch = sys.modules.get("numpy"), sys.modules.get("torch")
    if isinstance(value, _TorchScalar):
        if value.tensor.dtype.is_complex:
            return None
        info = torch.finfo(value.tensor.dtype)
        # eps = 2**(1 - bits) and tiny = 2**min_exponent exactly; float64 holds every torch float exactly
        return _Real(float(value.tensor.item()), 1 - round(math.log2(info.eps)), round(math.log2(info.tiny)))
    if np is not None and isinstance(value, np.floating):
        info = np.finfo(value.dtype)
        if value.dtype.itemsize <= 8 or not np.isfinite(value):
            return _Real(float(value), info.nmant + 1, info.minexp)
        return _Real(Fraction(*value.as_integer_ratio()), info.nmant + 1, info.minexp)  # long double: exactly
    if isinstance(value, float):
        return _Real(value, 53, -1022)
    mpf_tuple = getattr(value, "_mpf_", None)
    if isinstance(mpf_tuple, tuple) and len(mpf_tuple) == 4:  # mpmath.mpf, sympy.Float
        mpmath = sys.modules.get("mpmath") or __import__("mpmath")
        bits = getattr(value, "_prec", None) or mpmath.mp.prec  # an mpf carries the context's precision
        sign, mantissa, exponent, _ = mpf_tuple
        if not mantissa:  # 0, or an inf / nan (a zero mantissa with a special exponent)
            return _Real(float(mpmath.mpf(mpf_tuple)), bits)
        magnitude = Fraction(mantissa * 2**exponent) if exponent >= 0 else Fraction(mantissa, 2**-exponent)
        return _Real(-magnitude if sign else magnitude, bits)
    if isinstance(value, numbers.Rational):  # Fraction, sympy.Rational: exact
        return _Real(Fraction(int(value.numerator), int(value.denominator)), None)
    return None


def _complex_parts(value: Any) -> tuple | None:
    """(real part, imaginary part) of a complex scalar, each a :class:`_Real` of the part's type."""
    np = sys.modules.get("numpy")
    if isinstance(value, _TorchScalar) and value.tensor.dtype.is_complex:
        return _real_scalar(_TorchScalar(value.tensor.real)), _real_scalar(_TorchScalar(value.tensor.imag))
    if isinstance(value, complex) or (np is not None and isinstance(value, np.complexfloating)):
        return _real_scalar(value.real), _real_scalar(value.imag)
    if hasattr(value, "_mpc_"):  # mpmath.mpc
        return _real_scalar(value.real), _real_scalar(value.imag)
    return None


def _format_complex(parts: tuple, digits: int) -> str:
    real, imag = (_format_real(p, digits if p.digits_held is None else min(digits, p.digits_held)) for p in parts)
    sign = "+"
    if imag.startswith("-"):
        sign, imag = "-", imag[1:]
    return f"({real}{sign}{imag}j)"


def _format_real(real: _Real, digits: int) -> str:
    """``real`` to ``digits`` significant digits (no cap): ``m.mmm e±XX`` below 1e-3 and from 1e5 on, else
    ``%g``.  A Fraction is rounded exactly as a float of the same value would be by Python."""
    v = real.value
    if isinstance(v, float):
        if not math.isfinite(v):
            return str(v)
        if v != 0 and (abs(v) < 1e-3 or abs(v) >= 1e5):
            return f"{v:.{digits - 1}e}"
        return f"{v:.{digits}g}"
    if v != 0 and (abs(v) < Fraction(1, 1000) or abs(v) >= 100000):
        return _fraction_scientific(v, digits)
    return _fraction_general(v, digits)


def _round_significant(q: Fraction, digits: int) -> tuple[str, int]:
    """(sign, n, e): |q| rounded half to even to ``digits`` significant digits is ``n * 10**(e - digits + 1)``
    with ``10**(digits - 1) <= n < 10**digits`` (n = 0, e = 0 for q = 0)."""
    sign = "-" if q < 0 else ""
    q = abs(q)
    if q == 0:
        return sign, 0, 0
    e = len(str(q.numerator)) - len(str(q.denominator))  # within 1 of floor(log10 q)
    while Fraction(10) ** e > q:
        e -= 1
    while Fraction(10) ** (e + 1) <= q:
        e += 1
    n = round(q / Fraction(10) ** (e - digits + 1))  # round() of a Fraction: half to even
    if n == 10**digits:  # 9.9995 -> 10.00: one more digit in front
        n, e = 10 ** (digits - 1), e + 1
    return sign, n, e


def _fraction_scientific(q: Fraction, digits: int) -> str:
    """``format(float(q), f".{digits - 1}e")`` without going through a float."""
    sign, n, e = _round_significant(q, digits)
    mantissa = str(n).rjust(digits, "0")
    mantissa = mantissa[0] + ("." + mantissa[1:] if digits > 1 else "")
    return f"{sign}{mantissa}e{'-' if e < 0 else '+'}{abs(e):02d}"


def _fraction_general(q: Fraction, digits: int) -> str:
    """``format(float(q), f".{digits}g")`` without going through a float."""
    sign, n, e = _round_significant(q, digits)
    if not -4 <= e < digits:
        text = _fraction_scientific(q, digits)
        mantissa, exponent = text.split("e")
        if "." in mantissa:
            mantissa = mantissa.rstrip("0").rstrip(".")
        return f"{mantissa}e{exponent}"
    shown = str(n).rjust(digits, "0")
    if e >= 0:
        whole, fraction = shown[: e + 1], shown[e + 1:]
    else:
        whole, fraction = "0", "0" * (-e - 1) + shown
    fraction = fraction.rstrip("0")
    return sign + whole + ("." + fraction if fraction else "")


_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")


def format_measured(value: Any, tolerance: str) -> str:
    """``format_value`` with as many digits as it takes not to print a number of ``tolerance``
    that the value is not: 0.049996 against "< 0.05" shows as 0.049996, not as 0.05.

    It may go past the digits the value's type holds (see :func:`format_value`), but no further than the
    shortest text that reads back as that very number: float32's 0.04999999 shows as ``0.04999999``, not as
    its float64 expansion 0.049999990314245224.  An exact number (Fraction) that no 17 digits tell from a bound
    prints as ``str(value)``."""
    if _is_array(value) and value.ndim == 0:
        value = _array_scalar(value)
    real = None if isinstance(value, (bool, numbers.Integral)) else _real_scalar(value)
    # an int prints exactly at any digits (and float(10**400) overflowed)
    if real is None or not real.is_finite():
        return format_value(value)
    bounds = {float(m) for m in _NUMBER.findall(str(tolerance))}
    first = 4 if real.digits_held is None else min(4, real.digits_held)
    for digits in range(first, real.identifying_digits + 1):
        text = _format_real(real, digits)
        if float(text) not in bounds or real.reads_back_from(text):
            return text
    return str(value)


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    def cell(v: Any) -> str:
        return (v if isinstance(v, str) else format_value(v)).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def summary_table(rows: Sequence[dict]) -> str:
    """Plain-text table (for the terminal) of claim rows."""
    header = ("source", "prediction", "measured", "tolerance", "verdict")
    table = [header] + [
        (r["source"], r["prediction"], format_measured(r["measured"], r["tolerance"]), r["tolerance"],
         r["verdict"].upper()) for r in rows
    ]
    widths = [min(60, max(len(str(row[i])) for row in table)) for i in range(len(header))]

    def fmt(row: Sequence[Any]) -> str:
        # a long cell wraps onto continuation lines: cut at 60 characters, the convergence claims of
        # different targets, scales and noise levels all read "... reaches tolerance in fewe"
        cells = [textwrap.wrap(str(v), widths[i], break_long_words=True, break_on_hyphens=False) or [""]
                 for i, v in enumerate(row)]
        height = max(len(c) for c in cells)
        return "\n".join("  ".join((c[k] if k < len(c) else "").ljust(widths[i]) for i, c in enumerate(cells)).rstrip()
                         for k in range(height))

    lines = [fmt(table[0]), "  ".join("-" * w for w in widths)] + [fmt(r) for r in table[1:]]
    return "\n".join(lines)


def _claim_row(source: str, c: Claim) -> dict:
    return {"source": source, "prediction": c.prediction, "measured": to_jsonable(c.measured),
            "tolerance": c.tolerance, "verdict": c.verdict, "detail": c.detail}


def line_plot(path: str, series: Sequence[dict], *, title: str, xlabel: str, ylabel: str,
              logy: bool = False, hline: float | None = None) -> str | None:
    """Write a PNG line plot; each series is ``{"x", "y", "label", optional "lo", "hi", "style", "same_color"}``.

    ``lo``/``hi`` draw a shaded band (for example the spread over seeds).
    Returns the file name (relative to the folder of ``path``), or None when matplotlib is
    not installed (the report then says so instead of showing the plot).
    """
    try:
        import matplotlib
    except ImportError:
        return None

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    line = None
    for s in series:
        # "same_color": draw in the previous series' colour (e.g. held-out next to training curve)
        color = line.get_color() if (s.get("same_color") and line is not None) else None
        line = ax.plot(s["x"], s["y"], s.get("style", "-"), label=s.get("label"), lw=1.5, color=color)[0]
        if "lo" in s and "hi" in s:
            ax.fill_between(s["x"], s["lo"], s["hi"], color=line.get_color(), alpha=0.2, lw=0)
    if hline is not None:
        ax.axhline(hline, color="grey", ls=":", lw=1)
    if logy:
        ax.set_yscale("log")
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if any(s.get("label") for s in series):
        ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return os.path.basename(path)


def report_sections(records: Sequence[Record], out_dir: str | os.PathLike) -> list[Section]:
    """Every experiment module's :class:`Section` of ``records`` (its plots written into ``out_dir``).

    A section that raises becomes a section with one failing claim: its suite-level claims were never
    judged, and that must not read as "no failures"."""
    from analysis.verify import experiment_modules

    out_dir = os.fspath(out_dir)
    records = list(records)
    sections: list[Section] = []
    for mod in experiment_modules():
        if hasattr(mod, "report_section"):
            try:
                sec = mod.report_section(records, out_dir)
            except Exception as exc:  # a broken section must not hide the others
                # nor pass unseen: its suite-level claims were never judged, so it is a failing claim
                # (the run's summary, and symact verify's exit code, read "no failures" before)
                sec = Section(f"{mod.__name__} (report section failed)", f"`{type(exc).__name__}: {exc}`",
                              (Claim(f"the report section of {mod.__name__} (with its suite-level claims) is built",
                                     f"{type(exc).__name__}: {exc}", "no exception", False),))
            if sec is not None:
                sections.append(sec)
    return sections


def claim_rows(records: Sequence[Record], sections: Sequence[Section]) -> list[dict]:
    """The summary rows: every job's claims (source: the job id), then every section's suite-level claims
    (source: the section title)."""
    rows = [_claim_row(rec.job.id, c) for rec in records for c in rec.claims]
    return rows + [_claim_row(sec.title, c) for sec in sections for c in sec.claims]


def write_report(records: Sequence[Record], out_dir: str | os.PathLike) -> tuple[str, list[dict]]:
    """Write ``out_dir/report.md`` (+ PNGs) and return ``(path, summary rows)``."""
    from analysis.verify import missing_modules

    out_dir = os.fspath(out_dir)
    os.makedirs(out_dir, exist_ok=True)
    records = list(records)
    sections = report_sections(records, out_dir)
    rows = claim_rows(records, sections)
    n_pass = sum(r["verdict"] == "pass" for r in rows)
    n_fail = sum(r["verdict"] == "fail" for r in rows)
    n_unav = sum(r["verdict"] == "unavailable" for r in rows)
    status_counts: dict[str, int] = {}
    for rec in records:
        status_counts[rec.status] = status_counts.get(rec.status, 0) + 1
    parts = [
        "# symact verification report",
        "",
        f"{len(records)} job records ({', '.join(f'{v} {k}' for k, v in sorted(status_counts.items()))}); "
        f"{len(rows)} claims: {n_pass} pass, {n_fail} fail, {n_unav} unavailable. "
        "A verdict is what was measured: failing claims are reported as failing.",
        "",
        "## Summary",
        "",
        markdown_table(("source", "prediction", "measured", "tolerance", "verdict"),
                       [(r["source"], r["prediction"], format_measured(r["measured"], r["tolerance"]),
                         r["tolerance"], r["verdict"].upper())
                        for r in rows]) if rows else "_no claims were measured_",
        "",
    ]
    for sec in sections:
        parts += [f"## {sec.title}", "", sec.markdown, ""]
        parts += [f"![{fig}]({fig})" for fig in sec.figures if fig]
        parts.append("")
    bad = [r for r in records if r.status in ("failed", "unavailable")]
    if bad:
        parts += ["## Jobs that failed or were unavailable", ""]
        parts.append(markdown_table(("job", "status", "message"),
                                    [(r.job.id, r.status, r.error.splitlines()[0] if r.error else "") for r in bad]))
        parts.append("")
    missing = missing_modules()
    if missing:
        parts += ["## Experiment modules not present", ""]
        parts += [f"- `{k}`: {v}" for k, v in sorted(missing.items())]
        parts.append("")
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        parts += ["_Plots were skipped: matplotlib is not installed (pip install 'symact[verify]')._", ""]
    path = os.path.join(out_dir, "report.md")
    with open(path, "w", encoding="utf-8") as fh:
        fh.write("\n".join(parts))
    return path, rows
