"""Verification jobs, their records, and the append-only JSON-lines store.

A :class:`Job` is a small serialisable spec (experiment name + parameters); running
it gives a :class:`Record` holding the measured numbers and the :class:`Claim`
verdicts.  :class:`RecordStore` appends one JSON line per finished job and flushes
it to disk at once, so an interrupted suite loses at most the job in flight, and a
re-run skips every job whose latest record is ``ok``.

>>> job = Job("rai_init", {"depth": 3})
>>> job.id == Job("rai_init", {"depth": 3}).id
True
>>> Claim("x < 1", measured=0.5, tolerance="< 1", passed=True).verdict
'pass'
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sys
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable

from symact.errors import SymactError

__all__ = ["Job", "Claim", "Record", "RecordStore", "ExperimentUnavailable", "FINISHED", "to_jsonable",
           "from_jsonable"]

FINISHED = ("ok",)  # failed and unavailable jobs are cheap to retry and may succeed after a fix or merge


class ExperimentUnavailable(SymactError):
    """An experiment (or arm) whose backing code is not installed or merged yet.

    Recorded with status ``"unavailable"`` and its message; never replaced by fake numbers.
    """


def to_jsonable(value: Any) -> Any:
    """Plain JSON types from numbers, tensors, arrays, tuples and dataclasses (NaN/inf become strings).

    A float of a type narrower than float64 (numpy float16/float32 scalars and arrays, torch float32, float16,
    bfloat16, ... tensors) becomes the float64 nearest to its shortest round-trip decimal, the decimal
    numpy's ``repr`` prints: float32's 0.05 is written ``0.05``, not its exact value 0.05000000074505806, and
    bfloat16's 0.10009765625 ``0.1``.  Converted back to its type, that float64 gives the same number, so
    nothing is lost; the JSON (and the report's "measured" column, read from it) then carries only the digits
    the value has in its own type.  Python floats and float64 values are written exactly, as before."""
    if type(value) is float:  # the common case first, before the checks for narrower floats
        return value if math.isfinite(value) else str(value)
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    narrow = _narrow_float_decimals(value)
    if narrow is not None:
        return to_jsonable(narrow)
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):
        return to_jsonable(value.tolist())
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int) or getattr(value, "is_Integer", False):  # a SymPy Integer exactly, not as a float
        return int(value)
    if isinstance(value, float) or hasattr(value, "__float__"):
        try:
            f = float(value)
        except (TypeError, ValueError, OverflowError):  # SymPy's x, I, zoo; 10**400 as a SymPy Integer
            return str(value)
        return f if math.isfinite(f) else str(f)
    if hasattr(value, "__dataclass_fields__"):
        return to_jsonable(asdict(value))
    return str(value)


def _narrow_float_decimals(value: Any) -> Any:
    """For a numpy or torch float scalar, array or tensor of a type narrower than float64: its values (nested
    lists for arrays) as floats read from their shortest round-trip decimals; None for anything else.

    ``tolist()`` and ``float()`` give the exact binary value, whose float64 digits (0.05000000074505806 for
    float32's 0.05) are not digits the value holds."""
    np, torch = sys.modules.get("numpy"), sys.modules.get("torch")
    if torch is not None and isinstance(value, torch.Tensor):
        if not value.dtype.is_floating_point or value.dtype.itemsize >= 8:
            return None
        value = value.detach().cpu()
        if value.dtype in (torch.float16, torch.float32):
            value = value.numpy()  # numpy's own shortest decimals, below
        else:  # bfloat16, float8: no numpy dtype
            return _shortest_by_round_trip(value, torch)
    if np is None or not isinstance(value, (np.floating, np.ndarray)) or value.dtype.kind != "f" \
            or value.dtype.itemsize >= 8:
        return None
    # numpy prints the shortest decimal that reads back as the same number (Dragon4, unique=True)
    decimals = np.asarray(value).astype(str).tolist()
    return _nested_map(float, decimals)


def _shortest_by_round_trip(tensor: Any, torch: Any) -> Any:
    """The shortest ``%.{d}g`` decimals (d = 1, 2, ...) that torch converts back to the same ``tensor``
    entries, as floats in nested lists."""
    exact = tensor.double().flatten().tolist()  # exact: float64 holds every value of a narrower float
    found = list(exact)  # NaN and inf stay as they are
    todo = [i for i, v in enumerate(exact) if math.isfinite(v)]
    for digits in range(1, 18):  # 17 significant digits read back as any float64, let alone a narrower float
        if not todo:
            break
        texts = [float(f"{exact[i]:.{digits}g}") for i in todo]
        back = torch.tensor(texts, dtype=torch.float64).to(tensor.dtype).double().tolist()
        left = []
        for i, text, b in zip(todo, texts, back):
            if b == exact[i]:
                found[i] = text
            else:
                left.append(i)
        todo = left
    return torch.tensor(found, dtype=torch.float64).reshape(tensor.shape).tolist()


def _nested_map(function: Any, values: Any) -> Any:
    return [_nested_map(function, v) for v in values] if isinstance(values, list) else function(values)


_NON_FINITE = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}


def from_jsonable(value: Any) -> Any:
    """Undo :func:`to_jsonable`'s one lossy step: the strings ``"nan"``, ``"inf"`` and ``"-inf"`` it wrote
    for non-finite floats become those floats again (recursively through lists and dicts).

    Without it a record read back held ``"inf"`` where its job had ``float("inf")``: a worker process
    (which gets its job as JSON) ran a different spec than ``workers=1``, and report code formatting the
    number (``f"{v:g}"``) raised on the string.
    """
    if isinstance(value, dict):
        return {k: from_jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [from_jsonable(v) for v in value]
    if isinstance(value, str) and value in _NON_FINITE:
        return _NON_FINITE[value]
    return value


@dataclass(frozen=True)
class Job:
    """One unit of the suite: ``experiment`` (a registry name) run on ``spec``.

    ``id`` defaults to a readable prefix plus a hash of the spec, so the same job
    has the same id in every run (that is what makes resuming work).
    """

    experiment: str
    spec: dict = field(default_factory=dict)
    id: str = ""

    def __post_init__(self) -> None:
        if not self.id:
            blob = json.dumps([self.experiment, to_jsonable(self.spec)], sort_keys=True)
            digest = hashlib.sha1(blob.encode()).hexdigest()[:10]
            object.__setattr__(self, "id", f"{self.experiment}-{digest}")

    def to_dict(self) -> dict:
        return {"id": self.id, "experiment": self.experiment, "spec": to_jsonable(self.spec)}

    @classmethod
    def from_dict(cls, d: dict) -> "Job":
        # the spec as written, non-finite floats restored: a worker gets its job as JSON
        return cls(d["experiment"], from_jsonable(dict(d.get("spec", {}))), d.get("id", ""))


@dataclass(frozen=True)
class Claim:
    """A prediction checked against a measurement.

    ``verdict`` is ``"pass"``/``"fail"`` from the measurement, or ``"unavailable"``
    when nothing could be measured (``passed is None``).
    """

    prediction: str
    measured: Any = None
    tolerance: str = ""
    passed: bool | None = None
    detail: str = ""
    key: str = ""

    @property
    def verdict(self) -> str:
        return "unavailable" if self.passed is None else ("pass" if self.passed else "fail")

    def to_dict(self) -> dict:
        d = to_jsonable(asdict(self))
        d["verdict"] = self.verdict
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Claim":
        fields = {k: d.get(k) for k in ("prediction", "measured", "tolerance", "passed", "detail", "key")}
        fields["measured"] = from_jsonable(fields["measured"])
        return cls(**{k: v for k, v in fields.items() if v is not None or k in ("measured", "passed")})


@dataclass(frozen=True)
class Record:
    """The outcome of one job: ``status`` is ``ok``, ``failed`` or ``unavailable``; ``device`` is the device the
    job was run with (``"cpu"``, ``"cuda"``, ...: experiments without GPU code compute on the CPU whatever it says;
    ``""`` in a record written before the device was kept); ``threads`` torch's CPU thread count for it (0 in a
    record written before it was kept, or without torch)."""

    job: Job
    status: str
    result: dict = field(default_factory=dict)
    claims: tuple = ()
    error: str = ""
    seconds: float = 0.0
    device: str = ""
    threads: int = 0

    @property
    def finished(self) -> bool:
        return self.status in FINISHED

    def to_dict(self) -> dict:
        return {
            **self.job.to_dict(),
            "status": self.status,
            "seconds": round(float(self.seconds), 4),
            "device": str(self.device),
            "threads": int(self.threads),
            "error": self.error,
            "claims": [c.to_dict() for c in self.claims],
            "result": to_jsonable(self.result),
        }

    @classmethod
    def from_dict(cls, d: dict) -> "Record":
        return cls(
            Job.from_dict(d),
            d["status"],
            from_jsonable(d.get("result", {})),
            tuple(Claim.from_dict(c) for c in d.get("claims", [])),
            d.get("error", ""),
            float(d.get("seconds", 0.0)),
            str(d.get("device", "")),
            int(d.get("threads", 0)),
        )

    def __repr__(self) -> str:
        verdicts = ", ".join(c.verdict for c in self.claims)
        return f"Record({self.job.id!r}, status={self.status!r}, claims=[{verdicts}], {self.seconds:.2f}s)"


class RecordStore:
    """Append-only JSON-lines file of :class:`Record` dicts (``records.jsonl`` in an output folder).

    Each :meth:`append` writes one line, flushes and fsyncs, so a Ctrl-C or a
    crash loses nothing already finished.  A torn last line (the process killed
    mid-write) is ignored on reading.  The latest record of a job id wins.
    """

    FILENAME = "records.jsonl"

    def __init__(self, directory: str | os.PathLike) -> None:
        self.directory = os.fspath(directory)
        os.makedirs(self.directory, exist_ok=True)
        self.path = os.path.join(self.directory, self.FILENAME)

    def __repr__(self) -> str:
        return f"RecordStore({self.path!r})"

    def append(self, record: Record | dict) -> None:
        line = json.dumps(record.to_dict() if isinstance(record, Record) else to_jsonable(record), sort_keys=True)
        # a line torn by a kill mid-write has no newline: without one first, this record would be glued to
        # it and skipped with it on reading (lost from this run's report and records)
        torn = False
        if os.path.exists(self.path) and os.path.getsize(self.path) > 0:
            with open(self.path, "rb") as fh:
                fh.seek(-1, os.SEEK_END)
                torn = fh.read(1) != b"\n"
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(("\n" if torn else "") + line + "\n")
            fh.flush()
            os.fsync(fh.fileno())

    def raw(self) -> list[dict]:
        """Every well-formed line, in file order."""
        if not os.path.exists(self.path):
            return []
        out = []
        with open(self.path, encoding="utf-8") as fh:
            for number, line in enumerate(fh, 1):
                line = line.strip()
                if not line:
                    continue
                try:
                    d = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a line torn by a kill mid-write: that job simply runs again
                # valid JSON that is no record (another program's file): a KeyError deep in resuming before
                if not (isinstance(d, dict) and {"experiment", "status"} <= d.keys()):
                    raise SymactError(
                        f"{self.path} line {number} is not a symact job record ({line[:60]!r}); this folder "
                        f"holds another program's {self.FILENAME}: give a new output folder.")
                out.append(d)
        return out

    def latest(self) -> dict[str, Record]:
        """Latest record per job id."""
        latest: dict[str, Record] = {}
        for d in self.raw():
            rec = Record.from_dict(d)
            latest[rec.job.id] = rec
        return latest

    def finished_ids(self) -> set[str]:
        return {jid for jid, rec in self.latest().items() if rec.finished}

    def records(self, jobs: Iterable[Job] | None = None) -> list[Record]:
        """Latest records, in the order of ``jobs`` when given (jobs without a record are left out)."""
        latest = self.latest()
        if jobs is None:
            return list(latest.values())
        return [latest[j.id] for j in jobs if j.id in latest]
