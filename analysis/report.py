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
import os
import re
import textwrap
from dataclasses import dataclass
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
    """Short human form of a measured value (floats to ``digits`` significant digits, integers exactly)."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):  # exact: a width of 10000 or 12345 steps is not 1e+04 or 1.234e+04
        return str(value)
    if isinstance(value, float):
        v = float(value)
        if not math.isfinite(v):
            return str(v)
        if v != 0 and (abs(v) < 1e-3 or abs(v) >= 1e5):
            return f"{v:.{digits - 1}e}"
        return f"{v:.{digits}g}"
    if isinstance(value, (list, tuple)):
        return ("[" + ", ".join(format_value(v, digits) for v in value[:6])
                + (", ..." if len(value) > 6 else "") + "]")
    return str(value)


_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")


def format_measured(value: Any, tolerance: str) -> str:
    """``format_value`` with as many digits as it takes not to print a number of ``tolerance``
    that the value is not: 0.049996 against "< 0.05" shows as 0.049996, not as 0.05."""
    # an int prints exactly at any digits (and float(10**400) overflowed)
    if not isinstance(value, float) or not math.isfinite(value):
        return format_value(value)
    bounds = {float(m) for m in _NUMBER.findall(str(tolerance))}
    for digits in range(4, 18):
        text = format_value(value, digits)
        if float(text) not in bounds or float(text) == float(value):
            return text
    return repr(float(value))


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
