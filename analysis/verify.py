"""The verification suite runner behind ``symact verify``.

An *experiment* is a function ``fn(spec: dict, *, device: str, progress) -> dict``
registered under a name; it returns a JSON-able result dict whose optional
``"claims"`` entry is a list of :class:`~analysis.records.Claim`.  A suite is a
list of :class:`~analysis.records.Job` (experiment name + spec).  :func:`run_suite`
runs the jobs one after another or in a local process pool, appends one JSON line
per finished job to ``OUT/records.jsonl`` (flushed at once), skips jobs already
finished there, records a failing job as ``failed`` and goes on, and finally writes
``OUT/report.md`` with plots.

Experiment names are registry names (``"rai"``, ``"deep_vanilla"``, ...) or
``"package.module:function"`` references, which worker processes import by name.

>>> from analysis.verify import suite_jobs
>>> sorted({j.experiment for j in suite_jobs("tiny")})  # doctest: +ELLIPSIS
[...'rai_init'...]
"""

from __future__ import annotations

import importlib
import os
import sys
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence

from analysis.records import Claim, ExperimentUnavailable, Job, Record, RecordStore, to_jsonable
from symact.errors import DomainError, SymactError, is_whole_number

__all__ = [
    "register",
    "experiment_function",
    "EXPERIMENT_MODULES",
    "LEVELS",
    "suite_jobs",
    "run_job",
    "run_suite",
    "SuiteResult",
    "Progress",
    "check_spec_keys",
    "check_run_arguments",
]

LEVELS = ("tiny", "quick", "full")

# Modules that register experiments and contribute jobs (``jobs(level)``) and a
# report section (``report_section(records, out_dir)``).  Optional ones (other
# branches' experiments) are skipped with a note when they are not importable.
EXPERIMENT_MODULES = (
    "analysis.experiments.kernel_check",
    "analysis.experiments.rai",
    "analysis.experiments.deep_vanilla",
    "analysis.experiments.external",  # wrappers for the experiments of issues 6 and 7
)

_REGISTRY: dict[str, Callable[..., dict]] = {}
_MISSING_MODULES: dict[str, str] = {}


def register(name: str) -> Callable[[Callable], Callable]:
    """Decorator: register an experiment function under ``name``."""

    def deco(fn: Callable) -> Callable:
        _REGISTRY[name] = fn
        return fn

    return deco


def check_spec_keys(experiment: str, spec: dict, known: Iterable[str]) -> None:
    """:class:`DomainError` naming the keys of ``spec`` that ``experiment`` does not read.

    A misspelt key ("step" for "steps", "cosine" for "cosines") ran the default in its place while the job's
    record showed the spec as given: a record of a run that was not the one it names."""
    known = sorted(set(known))
    unknown = sorted(set(spec) - set(known), key=str)
    if unknown:
        raise DomainError(f"{experiment}: unknown spec key(s) {unknown}; the keys it reads are {known}. Check the "
                          f"spelling: an unread key would leave its default in place.")


def experiment_modules() -> list[Any]:
    """The importable experiment modules (importing registers their experiments)."""
    mods = []
    for name in EXPERIMENT_MODULES:
        try:
            mods.append(importlib.import_module(name))
        except ImportError as exc:  # also "cannot import name" from a module merged without its partner
            if isinstance(exc, ModuleNotFoundError) and exc.name == name:
                _MISSING_MODULES[name] = "not merged on this branch"
            else:  # a real import error inside an existing module: say so
                _MISSING_MODULES[name] = f"{type(exc).__name__}: {exc}"
    return mods


def missing_modules() -> dict[str, str]:
    experiment_modules()
    return dict(_MISSING_MODULES)


def experiment_function(name: str) -> Callable[..., dict]:
    """The function of a registry name or a ``"module:function"`` reference."""
    if ":" in name:
        module, _, attr = name.partition(":")
        try:
            return getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as exc:
            raise SymactError(f"Cannot load experiment {name!r}: {exc}. Use 'package.module:function'.") from exc
    if name not in _REGISTRY:
        experiment_modules()
    if name not in _REGISTRY:
        raise SymactError(f"Unknown experiment {name!r}; registered: {sorted(_REGISTRY)}.")
    return _REGISTRY[name]


def suite_jobs(level: str = "quick", only: Sequence[str] | str | None = None) -> list[Job]:
    """Jobs of the suite at ``level`` (``tiny`` for tests, ``quick`` < 5 min on 2 cores, ``full``).

    ``only`` keeps jobs whose experiment name contains one of the given strings (or the one string given).
    """
    if level not in LEVELS:
        raise SymactError(f"Unknown suite level {level!r}; choose one of {LEVELS}.")
    if isinstance(only, str):  # only="rai" was read letter by letter: "r", "a", "i" matched nearly every job
        only = [only]
    if only is not None and any(not isinstance(s, str) or not s.strip() for s in only):
        # "" is a substring of every name: --only "" ran the whole suite as if no filter were given
        raise DomainError(f"only={list(only)!r}: an empty name matches every experiment; give part of an "
                          f"experiment's name (e.g. 'kernel_check'), or leave the filter out to run the whole suite.")
    jobs: list[Job] = []
    for mod in experiment_modules():
        if hasattr(mod, "jobs"):
            jobs.extend(mod.jobs(level))
    if only:
        jobs = [j for j in jobs if any(s in j.experiment for s in only)]
    seen: set[str] = set()
    unique = []
    for j in jobs:
        if j.id not in seen:
            seen.add(j.id)
            unique.append(j)
    return unique


# ----------------------------------------------------------------------------- progress


class WorkerDiedError(SymactError, RuntimeError):
    """A worker process of ``run_suite`` died (out of memory, a crash in C): a job failed, not bad input."""


class Progress:
    """A progress bar: tqdm when installed (and ``enabled``), else plain lines on stderr."""

    def __init__(self, total: int, desc: str, *, enabled: bool = True, position: int = 0, leave: bool = True) -> None:
        self.total, self.desc, self.enabled = max(int(total), 0), desc, enabled
        self.n = 0
        self._bar = None
        self._last_print = -1.0
        if enabled:
            try:
                from tqdm.auto import tqdm

                self._bar = tqdm(total=self.total, desc=desc, position=position, leave=leave, file=sys.stderr,
                                 dynamic_ncols=True)
            except ImportError:
                self._bar = None

    def update_to(self, n: int, total: int | None = None) -> None:
        if total is not None and total != self.total:
            self.total = total
            if self._bar is not None:
                self._bar.total = total
        delta, self.n = n - self.n, n
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.update(delta)
        else:
            now = time.monotonic()
            if n >= self.total or now - self._last_print > 5.0:
                self._last_print = now
                print(f"[{self.desc}] {n}/{self.total}", file=sys.stderr, flush=True)

    def write(self, message: str) -> None:
        if self._bar is not None:
            self._bar.write(message, file=sys.stderr)
        elif self.enabled:
            print(message, file=sys.stderr, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


# ----------------------------------------------------------------------------- running one job


def _seed_everything(seed: int) -> None:
    import random

    import numpy as np

    random.seed(seed)
    np.random.seed(seed % 2**32)
    try:
        import torch

        torch.manual_seed(seed)
    except ImportError:  # pragma: no cover - torch is optional: jobs without torch need no torch seed
        pass


#: torch CPU threads per job by default: one, so that a job's numbers do not depend on --workers or on the
#: machine's core count (see run_job)
JOB_THREADS = 1


def run_job(job: Job | dict, device: str = "cpu", progress: Callable[[int, int], None] | None = None,
            threads: int | None = JOB_THREADS) -> dict:
    """Run one job and return its record as a dict (never raises except on Ctrl-C).

    Seeds Python, NumPy and torch from ``spec["seed"]`` (default 0) first, so a job's random draws do not
    depend on which worker or in which order it runs.  The experiment gets the spec as the record stores it
    (JSON types: lists, non-finite floats restored), in this process as in a worker.

    ``threads`` sets torch's CPU thread count for the job (restored afterwards; ``None`` keeps the current one),
    and the record keeps it.  The thread count changes the numbers: torch splits a reduction of one large tensor
    between its threads, so the rounding depends on how many there are, and a deep net amplifies it as a change
    of seed would (the quick suite's 100-layer tanh net on digits: median loss 1.46 at 1 thread, 2.27 at 2;
    with --workers 1 a job ran on torch's default 2 threads, with --workers 2 on 1, so the README's command
    did not repeat the README's numbers).  Hence one thread per job by default, whatever the worker count.
    """
    # the job as its JSON record has it, here as in a worker process (which gets it as JSON): in-process a
    # tuple stayed a tuple and a string "inf" a string, while a worker got a list and float("inf")
    job = Job.from_dict(job if isinstance(job, dict) else job.to_dict())
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is optional: no torch, no torch threads to limit
        torch = None
    before = torch.get_num_threads() if torch is not None else 0
    if threads and torch is not None:
        torch.set_num_threads(int(threads))
    used = torch.get_num_threads() if torch is not None else 0
    try:
        return _run_job(job, device, progress, used)
    finally:
        if torch is not None and torch.get_num_threads() != before:  # a caller's own count, not the job's
            torch.set_num_threads(before)


def _run_job(job: Job, device: str, progress: Callable[[int, int], None] | None, threads: int) -> dict:
    start = time.perf_counter()
    try:  # a bad seed is this job's failure: it must not stop the suite (it raised here, outside the try)
        seed = job.spec.get("seed", 0)
        if not is_whole_number(seed):
            raise SymactError(f"spec seed={seed!r}: the seed must be a whole number >= 0, e.g. \"seed\": 0.")
        _seed_everything(int(seed))
        fn = experiment_function(job.experiment)
        result = dict(fn(dict(job.spec), device=device, progress=progress))
        claims = tuple(c if isinstance(c, Claim) else Claim.from_dict(c) for c in result.pop("claims", ()))
        status = result.pop("status", "ok")
        rec = Record(job, status, result, claims, result.pop("error", ""), time.perf_counter() - start, str(device),
                     threads)
    except KeyboardInterrupt:
        raise
    except ExperimentUnavailable as exc:
        rec = Record(job, "unavailable", {}, (), str(exc), time.perf_counter() - start, str(device), threads)
    except Exception as exc:  # a failing job is recorded and the suite goes on
        tb = traceback.format_exc(limit=6)
        rec = Record(job, "failed", {}, (), f"{type(exc).__name__}: {exc}\n{tb}", time.perf_counter() - start,
                     str(device), threads)
    return rec.to_dict()


def _worker_run(job_dict: dict, device: str, threads: int, queue: Any) -> dict:
    def progress(done: int, total: int) -> None:
        if queue is not None:
            queue.put((job_dict["id"], done, total))

    try:
        return run_job(job_dict, device, progress, threads)
    except KeyboardInterrupt:  # the parent handles Ctrl-C; the worker just stops
        return {**job_dict, "status": "interrupted"}


# ----------------------------------------------------------------------------- the suite


@dataclass(frozen=True)
class SuiteResult:
    """What :func:`run_suite` did: the latest records of the suite's jobs and the report."""

    out_dir: str
    records: tuple
    ran: tuple
    skipped: tuple
    interrupted: bool = False
    report_path: str | None = None
    summary: tuple = field(default=())

    @property
    def failed_claims(self) -> list:
        return [row for row in self.summary if row.get("verdict") == "fail"]

    @property
    def failed_jobs(self) -> list:
        return [r for r in self.records if r.status == "failed"]

    def __repr__(self) -> str:
        return (
            f"SuiteResult(out_dir={self.out_dir!r}, records={len(self.records)}, ran={len(self.ran)}, "
            f"skipped={len(self.skipped)}, failed_jobs={len(self.failed_jobs)}, "
            f"failed_claims={len(self.failed_claims)}, interrupted={self.interrupted})"
        )


def run_suite(
    jobs: Iterable[Job],
    out_dir: str | os.PathLike,
    *,
    workers: int = 1,
    device: str = "cpu",
    progress: bool = True,
    report: bool = True,
    retry_failed: bool = True,
    threads: int = JOB_THREADS,
) -> SuiteResult:
    """Run ``jobs``, resuming from ``out_dir/records.jsonl``; write ``out_dir/report.md``.

    Jobs whose latest record is ``ok`` are skipped; ``failed`` and ``unavailable``
    ones run again (a fix or a merge may have made them work) unless
    ``retry_failed=False``.  A record measured on another kind of device (``cpu`` vs ``cuda``) runs again
    too: a ``device="cuda"`` run resumed in a CPU run's folder reported the CPU numbers as its own (records
    written before the device was kept count as any device), and so does one run with another torch thread
    count: each job runs on ``threads`` CPU threads (default 1, whatever ``workers`` is: the thread count changes
    the numbers, see :func:`run_job`).  ``workers > 1`` uses a local process pool.  On
    Ctrl-C the finished records are already on disk; the result says
    ``interrupted=True`` and no report is written.
    """
    jobs = list(jobs)
    check_run_arguments(workers, device, threads)
    store = RecordStore(out_dir)
    latest = store.latest()
    done_status = ("ok",) if retry_failed else ("ok", "unavailable", "failed")
    kind = _device_kind(device)

    def finished(rec: Record) -> bool:
        return (rec.status in done_status and (not rec.device or _device_kind(rec.device) == kind)
                and (not rec.threads or rec.threads == threads))

    skipped = tuple(j.id for j in jobs if j.id in latest and finished(latest[j.id]))
    todo = [j for j in jobs if j.id not in skipped]
    suite_bar = Progress(len(jobs), "suite", enabled=progress, position=0)
    suite_bar.update_to(len(skipped))
    ran: list[str] = []
    interrupted = False
    try:
        if workers == 1 or len(todo) <= 1:
            for job in todo:
                job_bar = Progress(0, job.id, enabled=progress, position=1, leave=False)
                rec = run_job(job, device, lambda d, t: job_bar.update_to(d, t), threads)
                job_bar.close()
                store.append(rec)
                ran.append(job.id)
                if rec["status"] == "failed":
                    suite_bar.write(f"job {job.id} failed: {rec['error'].splitlines()[0]}")
                suite_bar.update_to(suite_bar.n + 1)
        else:
            ran = _run_pool(todo, store, workers, device, progress, suite_bar, threads)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        suite_bar.close()
    records = tuple(store.records(jobs))
    if interrupted:
        return SuiteResult(os.fspath(out_dir), records, tuple(ran), skipped, True, None, ())
    # without a report the summary is still every claim, the report sections' suite-level ones too:
    # failed_claims (and the CLI's exit code built on it) must not read "no failures" because no report was written
    if report:
        from analysis.report import write_report

        report_path, summary = write_report(records, out_dir)
    else:
        report_path, summary = None, summary_rows(records)
    return SuiteResult(os.fspath(out_dir), records, tuple(ran), skipped, False, report_path, tuple(summary))


def check_run_arguments(workers: int, device: str, threads: int = JOB_THREADS) -> None:
    """:class:`SymactError` for a ``workers`` count or ``device`` that :func:`run_suite` cannot run with,
    checked before anything is written (``symact verify`` checks them before creating ``--out``)."""
    if not isinstance(device, str):
        raise SymactError(f"device must be a string such as 'cpu' or 'cuda', got {device!r}.")
    if device != "cpu":  # "cpu" needs no torch (it is optional; jobs without it run on the CPU)
        try:
            import torch  # noqa: F401
        except ImportError:
            raise SymactError(f"device={device!r} needs torch, which is not installed; use 'cpu' or "
                              f"pip install 'symact[torch]'.") from None
        from numeric.train import resolve_device

        # every device torch accepts and sees ("cpu:0" was refused as unknown though torch runs on it); an
        # unknown name, no GPU, or cuda:N beyond the GPUs torch sees is a DomainError naming the fix
        resolve_device(device)
    if not is_whole_number(workers, 1):  # 2.5 passed "< 1" and hit a bare TypeError in the pool, "2" one at "<"
        raise SymactError(f"workers must be >= 1 and a whole number, got {workers!r}; e.g. workers=2.")
    if not is_whole_number(threads, 1):
        raise SymactError(f"threads must be >= 1 and a whole number, got {threads!r}; e.g. threads=1 (the default: "
                          "a job's numbers depend on its torch thread count).")


def _device_kind(device: Any) -> str:
    """``"cpu"`` or ``"cuda"`` of a device name (``"cuda:1"`` -> ``"cuda"``)."""
    return str(device).split(":")[0]


def _forked_workers_cannot_train(device: str) -> bool:
    """Whether the pool must spawn its workers rather than fork them.

    A forked child cannot use CUDA that its parent initialised, and cannot run autograd at all
    once the parent's autograd engine has started its per-device threads, which it does at the
    first backward in a process that sees an accelerator, even for CPU tensors: on a GPU machine
    a CPU suite run after any training in the same process failed every worker job with torch's
    "Unable to handle autograd's threading in combination with fork-based multiprocessing".
    Without an accelerator, forking is safe and saves each worker importing torch and SymPy anew.
    """
    if _device_kind(device) != "cpu":
        return True
    try:
        import torch
    except ImportError:   # no torch, no autograd threads (jobs of one's own need not train)
        return False
    accelerator = getattr(torch, "accelerator", None)  # torch >= 2.6; before it, CUDA was the one to ask
    return bool(accelerator.is_available() if accelerator is not None else torch.cuda.is_available())


def _run_pool(todo: list[Job], store: RecordStore, workers: int, device: str, progress: bool,
              suite_bar: Progress, threads: int = JOB_THREADS) -> list[str]:
    import concurrent.futures as cf
    import multiprocessing as mp
    import queue as queue_mod

    ctx = mp.get_context("spawn") if _forked_workers_cannot_train(device) else None
    # the progress queue's server process too: Python 3.12 warns that forking a threaded process may deadlock
    manager = (ctx or mp.get_context()).Manager() if progress else None
    q = manager.Queue() if manager else None
    bars: dict[str, Progress] = {}
    ran: list[str] = []
    pool = cf.ProcessPoolExecutor(max_workers=workers, mp_context=ctx)
    try:
        futures = {pool.submit(_worker_run, j.to_dict(), device, threads, q): j for j in todo}
        pending = set(futures)
        while pending:
            done, pending = cf.wait(pending, timeout=0.2, return_when=cf.FIRST_COMPLETED)
            while q is not None:
                try:
                    jid, d, t = q.get_nowait()
                except queue_mod.Empty:
                    break
                if jid not in bars:
                    bars[jid] = Progress(t, jid, enabled=progress, position=1 + len(bars) % workers, leave=False)
                bars[jid].update_to(d, t)
            for fut in done:
                job = futures[fut]
                try:
                    rec = fut.result()
                except cf.BrokenExecutor as exc:  # a worker killed (out of memory, os._exit, a crash in C)
                    raise WorkerDiedError(
                        f"a worker process died while running job {job.id} ({exc}); it may have run out of "
                        f"memory. The finished jobs are saved in {store.path}: re-run to resume, with fewer "
                        f"--workers (or 1, which runs the jobs in this process) if it happens again.") from exc
                if rec.get("status") == "interrupted":
                    raise KeyboardInterrupt
                store.append(rec)
                ran.append(job.id)
                if job.id in bars:
                    bars.pop(job.id).close()
                if rec["status"] == "failed":
                    suite_bar.write(f"job {job.id} failed: {rec['error'].splitlines()[0]}")
                suite_bar.update_to(suite_bar.n + 1)
    except KeyboardInterrupt:
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    finally:
        for bar in bars.values():
            bar.close()
        pool.shutdown(wait=True, cancel_futures=True)
        if manager is not None:
            manager.shutdown()
    return ran


def summary_rows(records: Sequence[Record]) -> list[dict]:
    """The rows of :func:`analysis.report.write_report` without writing a report: one per claim, each job's
    (source: the job id) and each report section's suite-level ones (source: the section title), with
    prediction, measured, tolerance, verdict and detail.

    The sections are built in a temporary folder (their plots are thrown away): a suite-level claim, such as
    the deep-vanilla "DKS below plain", is judged here as in the report, so ``failed_claims`` does not depend
    on whether a report was written (it read 0 without one for a failing DKS claim)."""
    import tempfile

    from analysis.report import claim_rows, report_sections

    records = list(records)
    with tempfile.TemporaryDirectory(prefix="symact-summary-") as tmp:
        return claim_rows(records, report_sections(records, tmp))
