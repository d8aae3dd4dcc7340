"""``symact``: the command line.

Subcommands (each takes ``--json`` for machine-readable output)::

    symact derive EXPR            formulas, derivatives, properties, LaTeX of an activation
    symact maps ACT [--dps N]     Q/C kernel-map values and derivatives
    symact shape ACT --graph mlp:100 --method dks|tat
    symact codegen ACT -o file.py a standalone torch module
    symact verify [--quick]       run the verification suite, write report.md

Exit codes: 0 success; 1 the verification found a failing verdict or a failed
job, or measured no claim at all (every job unavailable); 2 bad input or a feature
whose code is not installed (the message says what to do; no traceback); 130 interrupted (finished records are kept: re-run to resume).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from typing import Any, Sequence

from symact.errors import DomainError, SymactError

__all__ = ["main", "build_parser"]

EXIT_OK, EXIT_VERDICT_FAILED, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130


class Unavailable(SymactError):
    """A subcommand whose backing code is not part of this installation."""


def _need(module: str, attr: str, what: str, branch: str) -> Any:
    import importlib

    try:
        return getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as exc:
        raise Unavailable(
            f"{what} needs {module}.{attr}, which this installation does not have yet "
            f"(it comes with the '{branch}' work). Update symact to a version that includes it."
        ) from exc


def _jsonable(value: Any) -> Any:
    from analysis.records import to_jsonable

    return to_jsonable(value)


def _emit(args: argparse.Namespace, payload: dict, text: str) -> None:
    if getattr(args, "json", False):
        print(json.dumps(_jsonable(payload), indent=2, sort_keys=True))
    else:
        print(text)


def _parse_params(items: Sequence[str] | None) -> dict:
    out = {}
    for item in items or ():
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SymactError(f"--param takes NAME=VALUE, got {item!r} (e.g. --param negative_slope=0.2).")
        key, value = key.strip(), value.strip()
        if key in out and out[key] != value:  # the last one used to win without a word
            raise SymactError(f"--param {key} is given twice, as {out[key]} and {value}; give it once.")
        out[key] = value
    return out


def _activation(expr: str, params: dict, surrogate: str | None = None) -> Any:
    activation = _need("symact", "activation", "Parsing an activation", "Activation core (main)")
    from symact.errors import UnknownSymbolError

    # values stay strings: symact.activation reads them as numbers and never runs them as code
    try:
        return activation(expr, surrogate=surrogate, **params)
    except UnknownSymbolError as exc:
        if not exc.symbols:
            raise
        if surrogate is not None and str(exc).startswith("the surrogate gradient"):
            from symact.catalogue import lookup

            entry = lookup(expr.strip())
            fix = (f"write it in x and the parameters of {entry.name} ({[p.name for p in entry.params] or 'none'})"
                   if entry is not None else
                   f"give their values with --param, e.g. {' '.join(f'--param {n}=1.0' for n in exc.symbols)}")
            raise UnknownSymbolError(
                f"the surrogate gradient {surrogate!r} uses symbol(s) {', '.join(exc.symbols)} that are neither "
                f"the input x nor parameters of {expr!r}; {fix}", symbols=exc.symbols) from exc
        # the library names the Python fix, activation('...', beta=1.0); on the command line it is --param
        raise UnknownSymbolError(
            f"the formula {expr!r} uses symbol(s) {', '.join(exc.symbols)} that are neither the input x nor "
            f"declared parameters; give their values with --param, e.g. "
            f"{' '.join(f'--param {n}=1.0' for n in exc.symbols)}",
            symbols=exc.symbols) from exc


# ----------------------------------------------------------------------------- subcommands


MAX_DERIVATIVE_ORDER = 12  # at 12, tanh takes ~2 s and mish ~10 s; at 20, tanh ~140 s and mish ~95 s


def cmd_derive(args: argparse.Namespace) -> int:
    if not 0 <= args.order <= MAX_DERIVATIVE_ORDER:
        raise DomainError(
            f"--order {args.order}: give the highest derivative to print as an integer from 0 to "
            f"{MAX_DERIVATIVE_ORDER} (higher orders take minutes and print pages; in Python use "
            f"symact.activation(...).derivative(n)).")
    act = _activation(args.expr, _parse_params(args.param), args.surrogate)
    derivs = [act.derivative(n) for n in range(1, args.order + 1)]
    # as_dict keeps exact values exact ("1/2", "sqrt(2)"); converting the SymPy numbers to floats printed
    # sigmoid's value at 0 as 0.5 and a bound sqrt(2) as 1.4142135623730951
    # properties() describes functions of one input; a gated form (swiglu(x, v)) still has formulas
    # and derivatives to print, so it gets no properties instead of an error
    props_dict = _jsonable(act.properties().as_dict()) if len(act.inputs) == 1 else None
    payload = {
        "name": act.name,
        "expr": str(act.expr),
        "concrete_expr": str(act.concrete_expr),
        "latex": act.latex(),
        "params": {str(k): str(v) for k, v in act.params.items()},
        "derivatives": [{"order": n + 1, "expr": str(d.concrete_expr), "latex": d.latex()} for n, d in enumerate(derivs)],
        "properties": props_dict,
        "kinks": [str(k) for k in act.kinks],
        "torch_builtin": act.torch_builtin,
        "surrogate_gradient": None if act.surrogate is None else str(act.backward_derivative().concrete_expr),
    }
    # a formula is its own name: "x*tanh(x)(x) = x*tanh(x)" reads as a product; call it phi, as latex() does
    label = act.name if re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*[~']*", act.name) else "phi"
    inputs = ", ".join(str(s) for s in act.inputs)
    lines = [f"{label}({inputs}) = {act.concrete_expr}", f"LaTeX: {payload['latex']}"]
    lines += [f"d^{d['order']}/dx^{d['order']}: {d['expr']}" for d in payload["derivatives"]]
    if act.surrogate is not None:  # HeLU: backpropagation does not use d/dx
        lines.append(f"backward (surrogate gradient, used instead of d/dx): {payload['surrogate_gradient']}")
    if props_dict is None:
        lines.append(f"properties: none ({act.name} takes {len(act.inputs)} inputs; properties describe "
                     "single-input activations)")
    else:
        lines += [f"{k}: {v}" for k, v in sorted(props_dict.items())]
    _emit(args, payload, "\n".join(lines))
    return EXIT_OK


def cmd_maps(args: argparse.Namespace) -> int:
    kernel_maps = _need("analysis.kernel", "kernel_maps", "Kernel maps", "kernel")
    # before the activation is parsed: --dps 100000 ran for hours, --dps 0 was refused as "dps=0"
    _need("analysis.kernel", "check_dps", "Kernel maps", "kernel")(
        args.dps, maximum=_need("analysis.kernel", "MAX_DPS", "Kernel maps", "kernel"), label="--dps ")
    act = _activation(args.act, _parse_params(args.param), args.surrogate)
    maps = kernel_maps(act, dps=args.dps)
    point = _point_reader(maps)
    num = _number_printer(args.dps)
    # defaults here, not in argparse: "extend" appends to a default list instead of replacing it
    q_points = ["1"] if args.q is None else args.q
    c_points = ["0", "0.5", "1"] if args.c is None else args.c
    rows = []
    # "at" is each point as it was given, like the values a decimal text: float() made --q 1e-400 0.0
    # and --q 1e400 inf (written "inf", a string among numbers)
    for q in q_points:
        qv = point(q)
        rows.append({"map": "Q", "at": q, "value": maps.q_map(qv), "derivative": maps.q_map_derivative(qv, 1)})
    for c in c_points:
        cv = point(c)
        rows.append({"map": "C", "at": c, "value": maps.c_map(cv), "derivative": maps.c_map_derivative(cv, 1)})
    extra = {"c_map_slope_at_1": maps.c_map_slope_at_1, "c_map_at_0": maps.c_map_at_0,
             "c_map_curvature_at_1_is_infinite": maps.curvature_is_infinite}
    rows = [{**r, "value": num(r["value"]), "derivative": num(r["derivative"])} for r in rows]
    extra = {k: v if isinstance(v, bool) else num(v) for k, v in extra.items()}
    payload = {"activation": act.name, "dps": args.dps, "engine": maps.engine, "values": rows, **extra}
    lines = [f"kernel maps of {act.name} ({maps.engine}, {args.dps} digits); C at q1 = q2 = 1"]
    # each point as it was given: float() of --q 1e-400 is 0.0 and of 1e400 inf, and the values computed at
    # 1e-400 were printed as "Q(0.0) = 1.0e-400", at a q the command refuses
    given = [*q_points, *c_points]
    lines += [f"{r['map']}({g}) = {r['value']}    {r['map']}'({g}) = {r['derivative']}" for r, g in zip(rows, given)]
    lines += [f"{k} = {v}" for k, v in extra.items()]
    _emit(args, payload, "\n".join(lines))
    return EXIT_OK


def _decimal(text: str) -> str:
    """An argparse type: a number given as decimal text, kept as text so that it can be read at full precision."""
    try:
        float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number (e.g. 0.5 or 1e-3)") from None
    return text


def _point_reader(maps: Any):
    """Read --q/--c text as the decimal it spells: at dps digits an mpf, not the nearest float64
    (--c 0.1 as a float is 0.1000000000000000055..., which shows from the 17th digit on)."""
    import mpmath

    if getattr(maps, "engine", "") == "float64":
        return float

    def read(text: str) -> Any:
        with mpmath.workdps(maps.dps + 20):
            return mpmath.mpf(text)

    return read


def _number_printer(dps: int | None):
    """Text of a computed number carrying the precision it was computed at: mpf values to ``dps``
    significant digits (str() would print mpmath's global 15), floats as their shortest round-trip repr."""
    import mpmath

    def num(value: Any) -> Any:
        if isinstance(value, mpmath.mpf):
            return mpmath.nstr(value, dps or mpmath.mp.dps)
        return repr(value) if isinstance(value, float) else str(value)

    return num


def _split_top_level(text: str) -> list[str]:
    """Split ``a=1,b=[1,2]`` at the commas outside brackets."""
    parts, depth, cur = [], 0, ""
    for ch in text:
        depth += ch in "[{("
        depth -= ch in "]})"
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    return [p for p in parts + [cur] if p.strip()]


def _graph(spec: str, preactivations: str | None = None) -> Any:
    import graphs

    kind, _, rest = spec.partition(":")
    if preactivations is not None and not kind.endswith(".py"):
        # a built graph carries its own mark: resnet:variant=v1 is the post-activation (mixed) net
        raise SymactError(f"--preactivations applies to a traced model (--graph FILE.py:ClassName), not to "
                          f"--graph {spec!r}; for a post-activation resnet use --graph resnet:variant=v1.")
    if kind == "mlp":
        mlp = _need("graphs", "mlp", "--graph mlp:DEPTH", "graphs")
        try:
            depth = int(rest)
        except ValueError as exc:
            raise SymactError(f"--graph mlp:DEPTH needs an integer depth, got {spec!r} (e.g. mlp:100).") from exc
        if depth < 1:  # mlp(-3) raised an InvalidGraphError, reported as "needs an integer depth"
            raise SymactError(f"--graph {spec!r}: the depth (number of activation layers) must be at least 1 "
                              f"(e.g. mlp:100).")
        return mlp(depth)
    if kind == "resnet":
        resnet = _need("graphs", "resnet", "--graph resnet:...", "graphs")
        import inspect

        accepted = [n for n in inspect.signature(resnet).parameters]
        kwargs = {}
        for item in _split_top_level(rest):
            k, sep, v = item.partition("=")
            if not sep:
                raise SymactError(f"--graph resnet:KEY=VALUE,... expected, got {item!r} in {spec!r}.")
            try:
                kwargs[k.strip()] = _resnet_value(v)
            except ValueError as exc:
                raise SymactError(f"--graph {spec!r}: cannot read the value of {k!r} ({v!r}): {exc}; write "
                                  f"numbers and lists as in Python or JSON, e.g. shortcut_weight=0.6, "
                                  f"blocks=[2,2].") from exc
            if k.strip() not in accepted:
                raise SymactError(f"--graph {spec!r}: resnet has no option {k.strip()!r}; its options are "
                                  f"{', '.join(accepted)} (e.g. resnet:blocks=[2,2],block=basic).")
        try:
            return resnet(**kwargs)
        except SymactError:
            raise
        except (TypeError, ValueError) as exc:  # a value of the wrong type, read from the spec
            raise SymactError(f"--graph {spec!r}: {exc} (e.g. resnet:blocks=[2,2],shortcut_weight=0.6).") from exc
    if kind.endswith(".py"):
        return _graph_from_file(spec, kind, rest.strip(), preactivations or "gaussian")
    del graphs
    raise SymactError(f"--graph must be mlp:DEPTH, resnet:KEY=VALUE,... or FILE.py:ClassName; got {spec!r}.")


def _resnet_value(text: str) -> Any:
    """A resnet option value: JSON (true, [2,2]) or a Python literal (.6, 1e-3, [.5, 1], True); else the text."""
    import ast

    text = text.strip()
    if text in ("true", "false", "null"):
        return json.loads(text)
    if text[:1] in "[{(0123456789-+." or text in ("True", "False", "None"):
        try:
            return ast.literal_eval(text)  # literals only: never runs code
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError) as exc:
            raise ValueError(str(exc) or type(exc).__name__) from None
    return text


_FILE_GRAPH_CONVENTION = ("the file must define the nn.Module class named after the colon, constructible without "
                          "arguments, and example_input: a tensor (or a function returning one) shaped like the "
                          "input of its forward, e.g. def example_input(): return torch.zeros(1, 4)")


def _graph_from_file(spec: str, path: str, class_name: str, preactivations: str = "gaussian") -> Any:
    """--graph FILE.py:ClassName: run the file, build ClassName(), trace it on the file's example_input
    (``preactivations`` as graphs.from_torch takes it: "mixed" for a post-activation residual net)."""
    import importlib.util

    if not os.path.isfile(path):
        raise SymactError(f"--graph {spec!r}: the file {path!r} does not exist.")
    if not class_name:
        raise SymactError(f"--graph {spec!r}: name the model class after the file, e.g. --graph {path}:Model.")
    from_torch = _need("graphs", "from_torch", "--graph module.py:Model", "graphs")
    module_name = "symact_user_model"
    mod_spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(mod_spec)
    folder = os.path.dirname(os.path.abspath(path))
    sys.path.insert(0, folder)  # the file may import modules next to it, as when run as a script
    sys.modules[module_name] = module  # dataclasses and pickle look the module up there
    try:
        mod_spec.loader.exec_module(module)
    except ModuleNotFoundError as exc:
        sys.modules.pop(module_name, None)
        raise SymactError(f"--graph {spec!r}: {path} imports {exc.name!r}, which is not installed; install it, "
                          f"or write the model with torch only.") from exc
    except Exception as exc:  # noqa: BLE001 - anything the user's file raises is bad input here
        sys.modules.pop(module_name, None)
        raise SymactError(f"--graph {spec!r}: running {path} raised {type(exc).__name__}: {exc}; fix the file "
                          f"({_FILE_GRAPH_CONVENTION}).") from exc
    finally:
        sys.path.remove(folder)
    if not hasattr(module, class_name):
        raise SymactError(f"--graph {spec!r}: {path} defines no {class_name!r}; {_FILE_GRAPH_CONVENTION}.")
    if not hasattr(module, "example_input"):
        raise SymactError(f"--graph {spec!r}: {path} defines no example_input, which the model is traced on; "
                          f"define one in the file, e.g. def example_input(): return torch.zeros(1, 4) "
                          f"(a tensor shaped like the input of {class_name}.forward).")
    import torch

    target = getattr(module, class_name)
    if not callable(target):
        raise SymactError(f"--graph {spec!r}: {class_name} in {path} is a {type(target).__name__}, not a model: name "
                          f"the nn.Module class (or a function that returns the model); {_FILE_GRAPH_CONVENTION}.")
    try:
        model = target()
    except Exception as exc:  # noqa: BLE001 - a constructor that needs arguments, or fails
        raise SymactError(f"--graph {spec!r}: {class_name}() raised {type(exc).__name__}: {exc}; the model class "
                          f"must be constructible without arguments: give its arguments defaults, or add a "
                          f"subclass or function in the file that supplies them.") from exc
    if not isinstance(model, torch.nn.Module):
        raise SymactError(f"--graph {spec!r}: {class_name}() returned a {type(model).__name__}, not an nn.Module: name "
                          f"the model class (or a function that returns the model); {_FILE_GRAPH_CONVENTION}.")
    example = module.example_input
    if callable(example):
        try:
            example = example()
        except Exception as exc:  # noqa: BLE001
            raise SymactError(f"--graph {spec!r}: example_input() raised {type(exc).__name__}: {exc}; make it "
                              f"return a tensor shaped like the input of {class_name}.forward.") from exc
    return from_torch(model, example, preactivations=preactivations)


# shape's network targets: flag -> (keyword of analysis.shape, the method that takes it, what it sets)
_SHAPE_TARGETS = {
    "--zeta": ("zeta", "dks", "the network's maximal C'(1); > 1, default 1.5", "2"),
    "--q-slope": ("q_slope", "dks", "each layer's Q'(1), default 1", "1"),
    "--tau": ("tau", "tat", "the network's maximal C''(1) for smooth activations; > 0, default 0.3", "0.5"),
    "--eta": ("eta", "tat", "the network's maximal C(0) for leaky_relu/prelu; in (0, 1), default 0.9", "0.5"),
}


def _shape_targets(args: argparse.Namespace) -> dict:
    """The target flags given, as analysis.shape keywords, checked against --method."""
    import math

    targets = {}
    if args.dps is not None:
        from analysis.kernel import MAX_DPS, check_dps
        from analysis.shaping import MIN_SHAPING_DPS

        if args.dps < MIN_SHAPING_DPS:
            raise DomainError(f"--dps {args.dps}: give at least {MIN_SHAPING_DPS} digits, or leave --dps out to "
                              "solve in float64.")
        check_dps(args.dps, minimum=MIN_SHAPING_DPS, maximum=MAX_DPS, label="--dps ")
    for flag, (keyword, method, _, example) in _SHAPE_TARGETS.items():
        text = getattr(args, keyword)
        if text is None:
            continue
        if method != args.method:
            takes = [f for f, (_, m, _, _) in _SHAPE_TARGETS.items() if m == args.method]
            raise DomainError(f"{flag} is a {method.upper()} target; --method {args.method} takes "
                              f"{' and '.join(takes)} (or use --method {method}).")
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not math.isfinite(value):
            raise DomainError(f"{flag} {text}: give a finite decimal number, e.g. {flag} {example}.")
        targets[keyword] = value
    return targets


def cmd_shape(args: argparse.Namespace) -> int:
    shape = _need("analysis.shaping", "shape", "Kernel shaping", "shaping")
    targets = _shape_targets(args)
    act = _activation(args.act, _parse_params(args.param), args.surrogate)
    shaped = shape(act, _graph(args.graph, args.preactivations), method=args.method, dps=args.dps, branch=args.branch, **targets)
    import mpmath

    num = _number_printer(args.dps)

    def carry(value: Any) -> Any:  # --dps N solves to N digits: print mpf values with all of them
        if isinstance(value, dict):
            return {str(k): carry(v) for k, v in value.items()}
        return num(value) if isinstance(value, mpmath.mpf) else _jsonable(value)

    layers = []
    for layer in shaped.layers:
        row = {"node": str(getattr(layer, "node", ""))}
        for name in ("alpha", "beta", "gamma", "delta", "negative_slope", "residuals"):
            if hasattr(layer, name):
                row[name] = carry(getattr(layer, name))
        layers.append(row)
    network_targets = {k: str(v) for k, v in getattr(shaped, "network_targets", {}).items()}
    payload = {"activation": act.name, "graph": args.graph, "method": args.method, "targets": network_targets,
               "layers": layers}
    shown = ", ".join(f"{k}={v}" for k, v in network_targets.items())
    lines = [f"{args.method.upper()} shaping of {act.name} on {args.graph}"
             f"{f' ({shown})' if shown else ''}: {len(layers)} activation nodes"]
    lines += [", ".join(f"{k}={v}" for k, v in row.items()) for row in layers[:20]]
    if len(layers) > 20:
        lines.append(f"... ({len(layers) - 20} more; use --json for all)")
    _emit(args, payload, "\n".join(lines))
    return EXIT_OK


def cmd_codegen(args: argparse.Namespace) -> int:
    export_module = _need("numeric", "export_module", "Code generation", "codegen")
    act = _activation(args.act, _parse_params(args.param), args.surrogate)
    kwargs = {"class_name": args.class_name} if args.class_name is not None else {}
    if not args.output or args.output.endswith((os.sep, "/")):  # Path() drops the slash: 'out/' wrote a file 'out'
        raise SymactError(f"-o {args.output!r} names a folder, not a file; give the .py file to write, e.g. "
                          f"-o {os.path.join(args.output, 'activation.py')}.")
    folder = os.path.dirname(os.path.abspath(args.output))
    if not os.path.isdir(folder):
        raise SymactError(f"-o {args.output}: the folder {folder} does not exist; create it first or "
                          f"write to an existing folder.")
    try:
        export_module(act, args.output, **kwargs)
    except OSError as exc:  # a folder given as the file, no permission, disk full, ...
        raise SymactError(f"-o {args.output}: cannot write the module: {exc.strerror or exc}.") from exc
    # the class written (the default name when --class-name is not given), as the file defines it
    with open(args.output, encoding="utf-8") as written:
        found = re.search(r"^class (\w+)\(torch\.nn\.Module\)", written.read(), re.MULTILINE)
    class_name = found.group(1) if found else args.class_name
    payload = {"activation": act.name, "path": os.path.abspath(args.output), "class_name": class_name}
    _emit(args, payload, f"wrote {args.output} ({act.name}, class {class_name})")
    return EXIT_OK


def cmd_verify(args: argparse.Namespace) -> int:
    from analysis.report import summary_table
    from analysis.verify import WorkerDiedError, check_run_arguments, run_suite, suite_jobs

    if args.quick and args.level not in (None, "quick"):  # --quick used to win silently over --level
        raise SymactError(f"--quick and --level {args.level} ask for two suite sizes; give one of them "
                          f"(--quick is --level quick).")
    level = "quick" if args.quick else (args.level or "full")
    jobs = suite_jobs(level, args.only)
    if not jobs:
        raise SymactError(f"No jobs match --only {args.only!r} at level {level!r}.")
    check_run_arguments(args.workers, args.device, args.threads)  # before --out is created: no empty folder
    if os.path.exists(args.out) and not os.path.isdir(args.out):
        raise SymactError(f"--out {args.out}: this is a file, not a folder; give a new folder or the folder "
                          f"of an earlier run to resume it.")
    try:
        os.makedirs(args.out, exist_ok=True)
    except OSError as exc:  # a file on the way, no permission, ...
        raise SymactError(f"--out {args.out}: cannot create the output folder: {exc.strerror or exc}; give a "
                          f"folder you can write to.") from exc
    try:
        result = run_suite(jobs, args.out, workers=args.workers, device=args.device, threads=args.threads,
                           progress=not args.no_progress and not args.json)
    except WorkerDiedError as exc:  # a job failed (exit 1), not bad input (2)
        if args.json:
            print(json.dumps({"error": type(exc).__name__, "message": str(exc)}))
        print(f"symact verify: error: {exc}", file=sys.stderr)
        return EXIT_VERDICT_FAILED
    if result.interrupted:
        message = (f"Interrupted: {sum(r.status == 'ok' for r in result.records)} of {len(jobs)} jobs are saved in "
                   f"{os.path.join(args.out, 'records.jsonl')}; re-run the same command to resume.")
        if args.json:  # --json promised machine-readable output: an interrupted run printed none on stdout
            print(json.dumps({"error": "Interrupted", "message": message}))
        print(message, file=sys.stderr)
        return EXIT_INTERRUPTED
    failed_jobs = [r.job.id for r in result.failed_jobs]
    payload = {"level": level, "out_dir": os.path.abspath(args.out), "report": result.report_path,
               "jobs": len(jobs), "ran": len(result.ran), "skipped": len(result.skipped),
               "failed_jobs": failed_jobs, "summary": list(result.summary)}
    # a run in which no claim got a verdict (every job unavailable) verified nothing: not a success
    payload["measured_claims"] = sum(row.get("verdict") in ("pass", "fail") for row in result.summary)
    measured = payload["measured_claims"] > 0
    text = summary_table(result.summary) if result.summary else "(no claims measured)"
    text += (f"\n\n{len(jobs)} jobs ({len(result.ran)} run, {len(result.skipped)} already finished), "
             f"{len(failed_jobs)} failed; report: {result.report_path}")
    if not measured:
        text += ("\nNo claim was measured (no PASS or FAIL verdict): nothing was verified. The report says "
                 "why each job is unavailable; install or update what it names.")
    _emit(args, payload, text)
    return EXIT_VERDICT_FAILED if (result.failed_claims or failed_jobs or not measured) else EXIT_OK


# ----------------------------------------------------------------------------- parser


class _Parser(argparse.ArgumentParser):
    """argparse's parser, whose usage errors also print the ``--json`` error object when the command
    line asked for JSON: argparse wrote only its text to stderr, so a script reading stdout got nothing."""

    json_errors = False  # set by main() from the raw command line, before parsing can fail

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # argparse (before Python 3.13) reads "-1e-3" as an option, not a negative number: `maps --c -1e-3`
        # was "unrecognized arguments" while --c -0.001 worked.  No option of ours looks like a number.
        self._negative_number_matcher = re.compile(r"^-(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")

    def error(self, message: str):  # type: ignore[override]
        if _Parser.json_errors:
            print(json.dumps({"error": "UsageError", "message": f"{self.prog}: {message}"}))
        super().error(message)


def _asks_for_json(argv: Sequence[str]) -> bool:
    words = list(argv)
    return "--json" in (words[: words.index("--")] if "--" in words else words)


def build_parser() -> argparse.ArgumentParser:
    common = _Parser(add_help=False)
    common.add_argument("--json", action="store_true", help="print machine-readable JSON instead of text")
    act_common = _Parser(add_help=False)
    act_common.add_argument("--param", action="append", metavar="NAME=VALUE",
                            help="override an activation parameter (repeatable), e.g. --param negative_slope=0.2")
    act_common.add_argument("--surrogate", default=None, metavar="FORMULA",
                            help="surrogate gradient that backpropagation uses in place of phi' (a formula in x "
                                 "and the parameters), e.g. --surrogate 'Heaviside(x + 1/20, 0)'")

    parser = _Parser(
        prog="symact",
        description="Symbolic and numeric analysis of activation functions: derive formulas, kernel maps, "
                    "kernel shaping, torch code, and verification of the predictions on trained networks.",
        epilog="Exit codes: 0 ok, 1 a verdict or job failed or nothing was measured, 2 bad input or missing feature, 130 interrupted. "
               "Example: symact verify --quick --out symact-report",
    )
    from symact import __version__

    parser.add_argument("--version", action="version", version=f"symact {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser("derive", parents=[common, act_common], help="formulas, derivatives, properties, LaTeX",
                       description="Parse an activation (catalogue name or formula in x) and print its formula, "
                                   "derivatives, properties and LaTeX.")
    p.add_argument("expr", help="catalogue name (gelu) or formula in x ('x*tanh(log(1+exp(x)))')")
    p.add_argument("--order", type=int, default=2, help="highest derivative to print (default 2)")
    p.set_defaults(func=cmd_derive)

    p = sub.add_parser("maps", parents=[common, act_common], help="Q/C kernel-map values and derivatives",
                       description="Evaluate the Q and C maps of a wide random network with this activation.")
    p.add_argument("act", help="catalogue name or formula in x")
    p.add_argument("--dps", type=int, default=30,
                   help="decimal digits of precision, from 5 to 100 (default 30; the time grows about as dps^3; from Python, "
                        "analysis.kernel_maps takes more)")
    # "extend", not the default "store": a repeated --q 1e-3 --q 1 kept only the last list
    p.add_argument("--q", type=_decimal, nargs="*", action="extend", default=None,
                   help="q values for the Q map (default 1); may be repeated")
    p.add_argument("--c", type=_decimal, nargs="*", action="extend", default=None,
                   help="c values for the C map (default 0 0.5 1); may be repeated")
    p.set_defaults(func=cmd_maps)

    p = sub.add_parser("shape", parents=[common, act_common], help="DKS/TAT kernel shaping of a network graph",
                       description="Solve the activation-transform parameters that shape the network's kernel.")
    p.add_argument("act", help="catalogue name or formula in x")
    p.add_argument("--graph", required=True, help="mlp:DEPTH | resnet:KEY=VALUE,... | FILE.py:ClassName")
    p.add_argument("--method", choices=("dks", "tat"), default="dks", help="shaping method (default dks)")
    p.add_argument("--preactivations", choices=("gaussian", "mixed"), default=None,
                   help="for --graph FILE.py:ClassName: 'mixed' traces a post-activation residual net (ResNet V1, "
                        "an activation after the sum), as graphs.from_torch(..., preactivations='mixed')")
    for flag, (keyword, method, what, _) in _SHAPE_TARGETS.items():
        p.add_argument(flag, dest=keyword, default=None, metavar=keyword.upper(),
                       help=f"{method.upper()} target: {what}")
    p.add_argument("--dps", type=int, default=None,
                   help="solve with mpmath at this many digits (15 to 100); default float64")
    p.add_argument("--branch", choices=("beta>=0", "min|beta|", "any"), default="beta>=0",
                   help="which root of the per-layer equations to take (default beta>=0)")
    p.set_defaults(func=cmd_shape)

    p = sub.add_parser("codegen", parents=[common, act_common], help="write a standalone torch module",
                       description="Write a readable .py file (imports only torch) implementing the activation.")
    p.add_argument("act", help="catalogue name or formula in x")
    p.add_argument("-o", "--output", required=True, help="output .py path")
    p.add_argument("--class-name", default=None, help="name of the generated nn.Module class")
    p.set_defaults(func=cmd_codegen)

    p = sub.add_parser("verify", parents=[common], help="run the verification suite and write report.md",
                       description="Run the suite of experiments (resumable), write OUT/records.jsonl, "
                                   "OUT/report.md and plots, and print prediction / measured / tolerance / verdict.")
    p.add_argument("--quick", action="store_true", help="the quick suite (same as --level quick; < 5 min on 2 cores)")
    p.add_argument("--level", choices=("tiny", "quick", "full"), default=None,
                   help="suite size: tiny (seconds, for tests), quick, full (default; < 45 min)")
    p.add_argument("--out", default="symact-verify", help="output folder; re-running resumes from its records")
    p.add_argument("--workers", type=int, default=1, help="local worker processes (default 1)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads per job (default 1: a job's numbers depend on it, so records made with "
                        "another count are run again on resume)")
    p.add_argument("--device", default="cpu", help="a torch device: cpu, cuda or cuda:N (default cpu)")
    p.add_argument("--only", nargs="+", action="extend", default=None, metavar="NAME",
                   help="only experiments whose name contains one of these (e.g. --only kernel_check rai); "
                        "may be repeated")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_verify)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    _Parser.json_errors = _asks_for_json(argv)
    try:
        args = parser.parse_args(argv)
    finally:
        _Parser.json_errors = False
    try:
        return int(args.func(args))
    except SymactError as exc:
        if getattr(args, "json", False):
            print(json.dumps({"error": type(exc).__name__, "message": str(exc)}))
        print(f"symact {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        if getattr(args, "json", False):
            print(json.dumps({"error": "Interrupted", "message": "Interrupted."}))
        print("Interrupted.", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # output piped into `head` and the like: not an error of ours
        sys.stderr.close()
        return EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
