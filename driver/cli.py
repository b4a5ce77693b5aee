"""The ``sparsecc`` command line.

    sparsecc import MODEL.onnx [-o FILE.sir] [--raw] [--emit-constants]
    sparsecc stats MODEL.onnx
    sparsecc opt MODEL [--passes P] [--batch N] [--print-ir-after-all] [--timing] [-o FILE.sir]
    sparsecc compile MODEL --target llvm|cuda|hls -o OUT [--passes P] [--batch N] [--emit-source]
    sparsecc run OUT (--input [NAME=]FILE.npy ... | --random) [--batch N] [-o OUT.npz]
    sparsecc check MODEL --target T [--batches 1,8]      (hls: a fixed-point --precision reports its error)
    sparsecc passes
    sparsecc profile MODEL [--batch N]
    sparsecc bench [...]
    sparsecc evaluate MODEL --data D.npz [--target onnxruntime,llvm,hls] [--precision T ...] [--noise A,B,...]

MODEL is an ONNX file or a textual IR file (``.sir``). ``--plugin FILE.py`` (before the command) imports a
file that registers custom passes. Errors print one line and exit with status 2; ``check`` exits 1 when the
outputs disagree. Warnings (e.g. a k-WTA that is not recognised and runs dense) print one line each,
``warning: node 'X' (TopK): ...``; ``--strict`` (before or after the command) makes them errors.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import os
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..compiler.errors import CliParser, SparseccError, SparseccWarning
from ..targets.options import TARGET_OPTIONS, OptionSpec, option_specs

if TYPE_CHECKING:
    from ..runtime.rpc import RemoteOptions


def _progress(quiet: bool) -> Callable[[str], None] | None:
    if quiet:
        return None
    start = time.perf_counter()

    def report(message: str) -> None:
        print(f"sparsecc: {time.perf_counter() - start:6.1f}s {message}", file=sys.stderr, flush=True)

    return report


def _load_plugin(path: str) -> None:
    file = Path(path)
    if not file.is_file():
        raise SparseccError(f"plugin file not found: {file}")
    spec = importlib.util.spec_from_file_location(f"sparsecc_plugin_{file.stem}", file)
    if spec is None or spec.loader is None:
        raise SparseccError(f"cannot import plugin {file}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)


def _check_output_file(path: str | None) -> None:
    """Refuse an output file path before any work: a directory, or a missing parent directory."""
    if path is None:
        return
    target = Path(path)
    if target.is_dir():
        raise SparseccError(f"output path {target} is a directory; give a file name")
    if not target.parent.is_dir():
        raise SparseccError(f"output directory {target.parent} does not exist")


def _write_atomically(path: str, write: Callable[[Path], None], suffix: str = "") -> None:
    """Write through a temporary sibling file, renamed into place; nothing is left behind on failure."""
    _check_output_file(path)
    target = Path(path)
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=f".tmp{suffix}", dir=target.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        write(tmp)
        tmp.replace(target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _write_text(path: str | None, text: str) -> None:
    if path is None:
        sys.stdout.write(text)
        return
    _write_atomically(path, lambda tmp: tmp.write_text(text))


def cmd_import(args: argparse.Namespace) -> int:
    from ..compiler.ir.printer import print_module
    from ..frontends.onnx import import_onnx

    _check_output_file(args.output)
    module = import_onnx(args.model, cleanup=not args.raw)
    _write_text(args.output, print_module(module, elide_blobs=args.output is None and not args.emit_constants))
    return 0


def cmd_stats(args: argparse.Namespace) -> int:
    from ..compiler.cost_model import format_stats
    from .api import load_module

    print(format_stats(load_module(args.model)))
    return 0


def cmd_opt(args: argparse.Namespace) -> int:
    from ..compiler.ir.printer import print_module
    from ..compiler.passes import PrintIR
    from .api import optimize

    _check_output_file(args.output)
    # instruments: the manager's PassTimer and IR verifier, then this printer (after a pass is verified)
    printer = [PrintIR(sys.stdout)] if args.print_ir_after_all else []
    module, manager = optimize(args.model, args.passes, batch=args.batch, instruments=printer)
    if not args.print_ir_after_all or args.output:
        _write_text(args.output, print_module(module, elide_blobs=args.output is None and not args.emit_constants))
    if args.timing:
        print(manager.timer.report(), file=sys.stderr)
    return 0


def _cli_options() -> dict[str, list[OptionSpec]]:
    """Each target's options that have a command-line flag (declared in ``targets/options.py``)."""
    return {target: [s for s in option_specs(options) if s.cli] for target, options in TARGET_OPTIONS.items()}


def _shared_options() -> dict[str, tuple[OptionSpec, list[str]]]:
    """Options that several targets declare (e.g. ``fast_math``): name -> (spec of the first, the targets)."""
    seen: dict[str, tuple[OptionSpec, list[str]]] = {}
    for target, specs in _cli_options().items():
        for spec in specs:
            seen.setdefault(spec.name, (spec, []))[1].append(target)
    return {name: entry for name, entry in seen.items() if len(entry[1]) > 1}


def _add_option(group: argparse._ArgumentGroup, spec: OptionSpec, help_text: str) -> None:
    if spec.type is bool:  # a switch: absent = the target's default
        group.add_argument(spec.flag, dest=spec.name, help=help_text, action="store_const", const=True)
    else:
        group.add_argument(spec.flag, dest=spec.name, help=help_text, type=spec.type)


def add_target_options(parser: argparse.ArgumentParser) -> None:
    """Every target's own options, one argument group per target that has flags (compile and check); an option
    of several targets once, in a group of its own."""
    shared = _shared_options()
    if shared:
        group = parser.add_argument_group("options of several targets")
        for spec, targets in shared.values():
            _add_option(group, spec, f"{spec.help} (--target {', '.join(targets)})")
    for target, specs in _cli_options().items():
        own = [spec for spec in specs if spec.name not in shared]
        if not own:
            continue
        group = parser.add_argument_group(f"{target} target options")
        for spec in own:
            _add_option(group, spec, spec.help)


def add_rpc_options(parser: argparse.ArgumentParser) -> None:
    """Where an llvm build runs when not here: a TVM RPC server or a tracker's pool (``sparsecc.runtime.rpc``)."""
    group = parser.add_argument_group("remote device (TVM RPC)")
    group.add_argument("--rpc", metavar="HOST:PORT",
                       help="run on the TVM RPC server there (python -m tvm.exec.rpc_server on the device); "
                            "without it, aarch64 builds on another host run under the local qemu emulator")
    group.add_argument("--rpc-tracker", metavar="HOST:PORT", help="request a device from this TVM RPC tracker")
    group.add_argument("--rpc-key", metavar="KEY", help="the device kind to request from --rpc-tracker")


def _remote_options(args: argparse.Namespace) -> RemoteOptions:
    from ..runtime.rpc import RemoteOptions

    return RemoteOptions(args.rpc, args.rpc_tracker, args.rpc_key)


def _target_options(args: argparse.Namespace) -> dict[str, object]:
    """The target options given on the command line; another target's option is an error."""
    chosen: dict[str, object] = {}
    shared = _shared_options()
    for target, specs in _cli_options().items():
        given = {spec.flag: (spec.name, getattr(args, spec.name)) for spec in specs
                 if spec.name not in shared and getattr(args, spec.name, None) is not None}
        if given and args.target != target:
            flags = ", ".join(given)
            raise SparseccError(f"{flags} {'applies' if len(given) == 1 else 'apply'} to --target {target} only")
        chosen.update(given.values())
    for name, (spec, targets) in shared.items():
        value = getattr(args, name, None)
        if value is None:
            continue
        if args.target not in targets:
            raise SparseccError(f"{spec.flag} applies to --target {', '.join(targets)} only")
        chosen[name] = value
    return chosen


def cmd_compile(args: argparse.Namespace) -> int:
    from ..runtime.artifact import check_output_path
    from .api import compile as compile_model

    options = _target_options(args)
    check_output_path(args.output)  # before compiling, and before --emit-source writes anything
    if args.emit_source:
        options["emit_source"] = args.output
    progress = _progress(args.quiet)
    compiled = compile_model(args.model, args.target, args.passes, batch=args.batch, progress=progress, **options)
    path = compiled.export(args.output)
    if progress:
        progress(f"wrote {path}")
    return 0


def _read_inputs(specs: Sequence[str], names: list[str]) -> dict[str, np.ndarray]:
    feeds: dict[str, np.ndarray] = {}
    for spec in specs:
        name, sep, file = spec.partition("=")
        if not sep:
            name, file = "", spec
        path = Path(file)
        if not path.is_file():
            raise SparseccError(f"input file not found: {path}")
        try:
            data = np.load(path, allow_pickle=False)
        except (ValueError, OSError) as exc:
            raise SparseccError(f"cannot read {path} as .npy/.npz: {exc}") from None
        if isinstance(data, np.lib.npyio.NpzFile):
            feeds.update({k: data[k] for k in data.files})
            continue
        if not name:
            if len(names) != 1:
                raise SparseccError(f"the model has inputs {names}: name them, e.g. --input {names[0]}=x.npy")
            name = names[0]
        feeds[name] = data
    return feeds


def cmd_run(args: argparse.Namespace) -> int:
    from ..compiler.arguments import check_input_bytes
    from ..compiler.feeds import random_inputs
    from ..runtime.artifact import read_manifest
    from ..runtime.rpc import RemoteModel, remote_session
    from .api import load

    if args.random == bool(args.input):
        raise SparseccError("give either --input FILE (one or more) or --random")
    if args.batch is not None and not args.random:
        raise SparseccError("--batch applies to --random only (the batch of --input comes from the file)")
    _check_output_file(args.output)
    manifest = read_manifest(args.artifact)
    with remote_session(manifest, _remote_options(args)) as device_session, contextlib.ExitStack() as stack:
        model = (load(args.artifact) if device_session is None
                 else stack.enter_context(RemoteModel.load(args.artifact, device_session)))
        if args.random:
            from ..compiler.ir.core import Function, Module, Value
            from ..compiler.ir.types import DTYPES, TensorType

            fixed = model.manifest.batch
            if args.batch is not None and fixed is not None and args.batch != fixed:
                raise SparseccError(f"{args.artifact} was compiled for batch {fixed}, not --batch {args.batch} "
                                    "(compile without --batch for a dynamic batch)")
            batch = args.batch or fixed or 1
            check_input_bytes([(t.shape, DTYPES[t.dtype]) for t in model.manifest.inputs], batch)
            args_ = [Value(TensorType(t.shape, t.dtype), t.name) for t in model.manifest.inputs]
            feeds = random_inputs(Module("m", Function("main", args_)), batch, args.seed)
        else:
            feeds = _read_inputs(args.input, model.input_names)
        start = time.perf_counter()
        outputs = model.run(None, feeds)
        elapsed = time.perf_counter() - start
        for name, out in zip(model.output_names, outputs, strict=True):
            preview = np.array2string(out.reshape(-1)[:6], precision=4, separator=", ")
            print(f"{name}: {out.dtype}{list(out.shape)} {preview}{' ...' if out.size > 6 else ''}")
        print(f"ran in {elapsed * 1e3:.2f} ms", file=sys.stderr)
        if args.output:
            arrays = dict(zip(model.output_names, outputs, strict=True))
            _write_atomically(args.output, lambda tmp: np.savez(tmp, **arrays), suffix=".npz")
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from ..compiler.arguments import MAX_BATCH, positive_int_list
    from .check import check_model

    batches = positive_int_list(args.batches, "--batches", MAX_BATCH)
    options = _target_options(args)
    precision = str(options.get("precision", "float"))
    if args.target == "hls" and (precision != "float" or "layer_precision" in options):
        # A fixed-point design owes a small error and the same decisions, not float agreement: report them.
        from .hls_accuracy import fixed_point_error

        for batch in batches:
            fixed = fixed_point_error(args.model, batch=batch, seed=args.seed, passes=args.passes, **options)
            print("\n".join(fixed.lines()))
        return 0
    report = check_model(args.model, args.target, batches, seed=args.seed, passes=args.passes,
                         progress=_progress(args.quiet), remote=_remote_options(args), **options)
    print("\n".join(report.lines()))
    return 0 if report.ok else 1


def cmd_passes(args: argparse.Namespace) -> int:
    from ..compiler.passes import registered_passes

    for name, cls in registered_passes().items():
        doc = (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else ""
        print(f"{name:<20} {doc}")
    return 0


#: subcommands that live in their own modules (each has ``add_arguments(parser)`` and ``run(args) -> int``);
#: imported when the parser is built, so they must load TVM and onnxruntime lazily
MODULE_COMMANDS = (
    ("profile", "sparsecc.benchmarks.profile", "per-kernel times of a model compiled for llvm"),
    ("calibrate", "sparsecc.benchmarks.calibrate", "measure this CPU's kernel crossovers into a kernel profile"),
    ("bench", "sparsecc.benchmarks.cpu", "benchmark against onnxruntime and TVM (see benchmarks/)"),
    ("evaluate", "sparsecc.driver.evaluate", "accuracy and noise robustness on labelled data, engines side by side"),
)


def build_parser() -> argparse.ArgumentParser:
    parser = CliParser(prog="sparsecc", description="A compiler for doubly-sparse neural networks.")
    parser.add_argument("--plugin", action="append", default=[], metavar="FILE.py",
                        help="import a Python file that registers custom passes")
    parser.add_argument("--traceback", action="store_true", help="show Python tracebacks of errors (debugging)")
    parser.add_argument("--strict", action="store_true", help="treat warnings (e.g. an unrecognised k-WTA) as errors")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=CliParser)

    p = sub.add_parser("import", help="print the IR of an ONNX model")
    p.add_argument("model")
    p.add_argument("-o", "--output", help="write the IR (with constants) to this file")
    p.add_argument("--raw", action="store_true", help="skip clean-up and k-WTA recognition")
    p.add_argument("--emit-constants", action="store_true", help="print constant data instead of eliding it")
    p.set_defaults(fn=cmd_import)

    p = sub.add_parser("stats", help="per-layer densities, k and MACs")
    p.add_argument("model")
    p.set_defaults(fn=cmd_stats)

    p = sub.add_parser("opt", help="run a pass pipeline and print the IR")
    p.add_argument("model")
    p.add_argument("--passes", help="pipeline, e.g. 'canonicalize,fuse-kwta' (default: the compile pipeline)")
    p.add_argument("--batch", type=int, help="fix the batch size")
    p.add_argument("--print-ir-after-all", action="store_true", help="print the IR after every pass")
    p.add_argument("--timing", action="store_true", help="report the time of each pass")
    p.add_argument("--emit-constants", action="store_true", help="print constant data instead of eliding it")
    p.add_argument("-o", "--output", help="write the final IR (with constants) to this file")
    p.set_defaults(fn=cmd_opt)

    p = sub.add_parser("compile", help="compile a model for a target")
    p.add_argument("model")
    p.add_argument("--target", default="llvm", choices=["llvm", "cuda", "hls"])
    p.add_argument("-o", "--output", required=True, help="artifact directory to write")
    p.add_argument("--passes", help="pass pipeline (default: the standard pipeline)")
    p.add_argument("--batch", type=int, help="fix the batch size (default: dynamic)")
    p.add_argument("--emit-source", action="store_true", help="also write the generated source")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress messages")
    add_target_options(p)
    p.set_defaults(fn=cmd_compile)

    p = sub.add_parser("run", help="run a compiled artifact")
    p.add_argument("artifact")
    p.add_argument("--input", action="append", default=[], metavar="[NAME=]FILE",
                   help=".npy (per input) or .npz (by name)")
    p.add_argument("--random", action="store_true", help="run on seeded random inputs")
    p.add_argument("--batch", type=int, help="batch size for --random (default: 1, or the artifact's fixed batch)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("-o", "--output", help="save the outputs to this .npz")
    add_rpc_options(p)
    p.set_defaults(fn=cmd_run)

    p = sub.add_parser("check", help="compile and compare with onnxruntime (tie-aware)")
    p.add_argument("model")
    p.add_argument("--target", default="llvm", choices=["llvm", "cuda", "hls"])
    p.add_argument("--batches", default="1,8")
    p.add_argument("--passes")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("-q", "--quiet", action="store_true")
    add_target_options(p)
    add_rpc_options(p)
    p.set_defaults(fn=cmd_check)

    p = sub.add_parser("passes", help="list the registered passes")
    p.set_defaults(fn=cmd_passes)

    for command, module_name, text in MODULE_COMMANDS:
        module = importlib.import_module(module_name)
        p = sub.add_parser(command, help=text, description=(module.__doc__ or text).splitlines()[0])
        module.add_arguments(p)
        p.set_defaults(fn=module.run)
    for command in ("import", "stats", "opt", "compile", "check"):  # also accepted after the command
        sub.choices[command].add_argument("--strict", action="store_true", default=argparse.SUPPRESS,
                                          help="treat warnings (e.g. an unrecognised k-WTA) as errors")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("error" if args.strict else "always", SparseccWarning)
            try:
                for plugin in args.plugin:
                    _load_plugin(plugin)
                from ..compiler.arguments import MAX_BATCH, positive_int

                for attr in ("batch", "runs"):
                    value = getattr(args, attr, None)
                    if value is not None:
                        positive_int(value, f"--{attr}", MAX_BATCH if attr == "batch" else None)
                return int(args.fn(args))
            finally:
                for warning in caught:
                    if issubclass(warning.category, SparseccWarning):
                        print(f"warning: {warning.message}", file=sys.stderr)
                    else:
                        warnings.showwarning(warning.message, warning.category, warning.filename, warning.lineno)
    except SparseccWarning as exc:  # --strict
        print(f"sparsecc: error: {exc} (--strict)", file=sys.stderr)
        return 2
    except SparseccError as exc:
        if args.traceback:
            raise
        print(f"sparsecc: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # a bug, not bad input: still one line unless --traceback
        if args.traceback:
            raise
        print(f"sparsecc: internal error: {type(exc).__name__}: {exc} (rerun with --traceback)", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
