"""Accuracy and noise robustness of a model on labelled data, on several engines side by side.

    from sparsecc.driver.evaluate import Engine, evaluate
    result = evaluate("model.onnx", "test.npz", ["onnxruntime", "llvm", Engine("hls", {"precision": "ap_fixed<16,6>"})])
    print(result.table()); result.noise_score("llvm")

The noise test of the seeds (numenta/htmpapers, "How Can We Be So Dense?", ``runNoiseTests``): for each level
``alpha`` every input becomes ``x * (1 - alpha) + alpha * U(-1, 1)`` with fresh uniform noise per sample
(:func:`add_noise`); the noise score of an engine is the number of correct top-1 classifications summed over
all levels. Every engine sees the same noisy inputs: the noise of a level comes from a generator seeded with
``(seed, alpha)``, drawn in sample order, so the first ``n`` samples get the same noise whatever ``samples``
limit is used. A ``transform`` (a user function, e.g. features of a noisy waveform) is applied after the
noise. onnxruntime is always run: it is the reference of the per-level top-1 agreement.

Data: an ``.npz`` with ``x`` (N, ...) float32 and ``y`` (N,) integer labels in ``[0, classes)``, or a pair
``(x, y)`` of arrays. Engines other than onnxruntime are built with :func:`sparsecc.compile` (dynamic batch).
Rendering (table, JSON, plot): :mod:`.evaluation_report`.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..compiler.errors import SparseccError

if TYPE_CHECKING:  # onnx loads when a model does (the CLI imports this module to build its parser)
    import onnx

__all__ = [
    "DEFAULT_LEVELS",
    "Engine",
    "EngineResult",
    "Evaluation",
    "EvaluationError",
    "add_noise",
    "evaluate",
    "load_data",
    "load_transform",
    "noise",
]

#: The seeds' 11 noise levels: 0.0, 0.05, ..., 0.5.
DEFAULT_LEVELS: tuple[float, ...] = tuple(round(0.05 * i, 2) for i in range(11))
#: Engines that :func:`evaluate` knows (onnxruntime plus the compile targets).
ENGINE_TARGETS = ("onnxruntime", "llvm", "cuda", "hls")
REFERENCE = "onnxruntime"

Transform = Callable[[np.ndarray], np.ndarray]


class EvaluationError(SparseccError):
    """Bad evaluation input: data file, noise levels, transform, engine or option."""


@dataclasses.dataclass(frozen=True)
class Engine:
    """One engine to evaluate: ``onnxruntime`` or a compile target with its options (``sparsecc.compile``)."""

    target: str
    options: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.target not in ENGINE_TARGETS:
            raise EvaluationError(f"unknown engine '{self.target}'; engines: {', '.join(ENGINE_TARGETS)}")
        if self.target == REFERENCE and self.options:
            raise EvaluationError(f"onnxruntime takes no options, got {', '.join(self.options)}")

    @property
    def label(self) -> str:
        """Name in tables and plots: ``llvm``, ``hls float``, ``hls ap_fixed<16,6>``, ``llvm mcpu=x``."""
        options = dict(self.options)
        words = [str(options.pop("precision", "float"))] if self.target == "hls" else []
        words += [f"{key}={value}" for key, value in sorted(options.items())]
        return " ".join([self.target, *words])


@dataclasses.dataclass
class EngineResult:
    """One engine's results: correct classifications and top-1 agreement with onnxruntime, per level."""

    label: str
    target: str
    options: dict[str, Any]
    correct: list[int]
    agreement: list[float]
    compile_seconds: float
    run_seconds: float
    predictions: list[np.ndarray] = dataclasses.field(default_factory=list, repr=False)  # top-1 per level

    @property
    def noise_score(self) -> int:
        """Correct classifications summed over all noise levels."""
        return int(sum(self.correct))


@dataclasses.dataclass
class Evaluation:
    """The result of :func:`evaluate`: one :class:`EngineResult` per engine, onnxruntime first."""

    model: str
    data: str
    samples: int
    classes: int
    seed: int
    levels: list[float]
    transform: str | None
    engines: list[EngineResult]

    def engine(self, label: str) -> EngineResult:
        """The result of the engine with this label (``"llvm"``, ``"hls ap_fixed<16,6>"``, ...)."""
        for result in self.engines:
            if result.label == label:
                return result
        raise KeyError(f"no engine '{label}'; engines: {', '.join(r.label for r in self.engines)}")

    def accuracy(self, label: str) -> list[float]:
        """Accuracy per level of one engine."""
        return [c / self.samples for c in self.engine(label).correct]

    def noise_score(self, label: str) -> int:
        """Noise score of one engine (correct classifications over all levels)."""
        return self.engine(label).noise_score

    def to_json(self) -> dict[str, Any]:
        from .evaluation_report import to_json

        return to_json(self)

    def table(self) -> str:
        from .evaluation_report import table

        return table(self)


def add_noise(x: np.ndarray, alpha: float, uniform: np.ndarray) -> np.ndarray:
    """``x * (1 - alpha) + alpha * uniform`` in float64, returned as float32 (``alpha = 0`` returns ``x``)."""
    return (x.astype(np.float64) * (1.0 - alpha) + alpha * uniform).astype(np.float32)


def noise(shape: tuple[int, ...], alpha: float, seed: int) -> np.ndarray:
    """The uniform noise U(-1, 1) of level ``alpha``: float64, seeded by ``(seed, alpha)``, drawn in C order."""
    generator = np.random.default_rng([seed, round(alpha * 1_000_000)])
    return generator.uniform(-1.0, 1.0, size=shape)


def load_data(data: str | os.PathLike[str] | tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """``(x, y)`` from an ``.npz`` (keys ``x`` and ``y``) or a pair; checks float32 ``x`` and 1-D int ``y``."""
    if isinstance(data, tuple):
        if len(data) != 2:
            raise EvaluationError(f"data must be a path or a pair (x, y), got a tuple of {len(data)}")
        x, y = np.asarray(data[0]), np.asarray(data[1])
        where = "data"
    else:
        path = Path(data)
        where = str(path)
        if not path.is_file():
            raise EvaluationError(f"data file not found: {path}")
        try:
            archive = np.load(path, allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:
            raise EvaluationError(f"cannot read {path} as .npz: {str(exc).splitlines()[0]}") from None
        if not isinstance(archive, np.lib.npyio.NpzFile):
            raise EvaluationError(f"{path}: expected an .npz with arrays x and y, got a single array")
        with archive:
            missing = [key for key in ("x", "y") if key not in archive.files]
            if missing:
                raise EvaluationError(f"{path}: missing array(s) {', '.join(missing)} (has: "
                                      f"{', '.join(archive.files) or 'nothing'}); expected x (N, ...) and y (N,)")
            try:
                x, y = archive["x"], archive["y"]
            except (ValueError, OSError, EOFError) as exc:
                raise EvaluationError(f"cannot read {path}: {str(exc).splitlines()[0]}") from None
    if x.dtype != np.float32:
        raise EvaluationError(f"{where}: x must be float32, got {x.dtype}")
    if x.ndim < 1 or x.shape[0] == 0:
        raise EvaluationError(f"{where}: x must have shape (N, ...) with N > 0, got {x.shape}")
    if y.dtype.kind not in "iu":
        raise EvaluationError(f"{where}: y must hold integer labels, got {y.dtype}")
    if y.shape != (x.shape[0],):
        raise EvaluationError(f"{where}: y must have shape ({x.shape[0]},) to match x {x.shape}, got {y.shape}")
    return x, y


def load_transform(spec: str) -> Transform:
    """The function named by ``FILE.py:NAME`` (imported from that file)."""
    file, sep, name = spec.rpartition(":")
    if not sep or not file or not name.isidentifier():
        raise EvaluationError(f"--transform must be FILE.py:FUNCTION, got '{spec}'")
    path = Path(file)
    if not path.is_file():
        raise EvaluationError(f"transform file not found: {path}")
    module_name = f"sparsecc_transform_{path.stem}"
    spec_ = importlib.util.spec_from_file_location(module_name, path)
    if spec_ is None or spec_.loader is None:
        raise EvaluationError(f"cannot import transform file {path}")
    module = importlib.util.module_from_spec(spec_)
    sys.modules[module_name] = module
    try:
        spec_.loader.exec_module(module)
    except Exception as exc:
        raise EvaluationError(f"importing {path} failed: {type(exc).__name__}: {exc}") from None
    function = getattr(module, name, None)
    if not callable(function):
        raise EvaluationError(f"{path} has no function '{name}'")
    return function


def _split_specs(text: str) -> list[str]:
    """Split on commas outside ``<...>`` (``hls,ap_fixed<16,6>``-safe)."""
    parts, depth, current = [], 0, ""
    for char in text:
        depth += (char == "<") - (char == ">")
        if char == "," and depth == 0:
            parts.append(current.strip())
            current = ""
        else:
            current += char
    parts.append(current.strip())
    return [p for p in parts if p]


def engines_from_options(targets: Sequence[str], precisions: Sequence[str] = (),
                         mcpu: str | None = None) -> list[Engine]:
    """The engines of the CLI: ``--target`` names (comma lists), one hls engine per ``--precision``."""
    names = [name for text in targets for name in _split_specs(text)]
    if precisions and "hls" not in names:
        raise EvaluationError("--precision applies to --target hls only")
    if mcpu and "llvm" not in names:
        raise EvaluationError("--mcpu applies to --target llvm only")
    engines: list[Engine] = []
    for name in dict.fromkeys(names):
        if name == "hls":
            engines += [Engine("hls", {"precision": p}) for p in dict.fromkeys(precisions or ["float"])]
        elif name == "llvm" and mcpu:
            engines.append(Engine("llvm", {"mcpu": mcpu}))
        else:
            engines.append(Engine(name))
    return engines


def _check_levels(levels: Sequence[float]) -> list[float]:
    values = [float(a) for a in levels]
    if not values:
        raise EvaluationError("give at least one noise level")
    bad = [a for a in values if not 0.0 <= a <= 1.0]
    if bad:
        raise EvaluationError(f"noise levels must lie in [0, 1], got {bad}")
    return values


def _session(model: str | os.PathLike[str] | onnx.ModelProto) -> Any:
    import onnx

    from ..compiler.check import onnxruntime_session

    if isinstance(model, onnx.ModelProto):
        import onnxruntime as ort

        return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    path = Path(model)
    if not path.is_file():
        raise EvaluationError(f"model file not found: {path}")
    return onnxruntime_session(path)


@dataclasses.dataclass
class _Signature:
    name: str
    shape: tuple[int | None, ...]  # None for a symbolic dimension

    @property
    def fixed_batch(self) -> int | None:
        return self.shape[0] if self.shape else None


def _signature(session: Any) -> _Signature:
    inputs = session.get_inputs()
    if len(inputs) != 1:
        raise EvaluationError(f"evaluate needs a model with one input, this one has {len(inputs)}")
    if inputs[0].type != "tensor(float)":
        raise EvaluationError(f"the model input '{inputs[0].name}' is {inputs[0].type}, evaluate feeds float32")
    shape = tuple(d if isinstance(d, int) else None for d in inputs[0].shape)
    return _Signature(inputs[0].name, shape)


def _check_input(x: np.ndarray, signature: _Signature, where: str) -> None:
    if x.dtype != np.float32:
        raise EvaluationError(f"{where} must be float32 for the model input '{signature.name}', got {x.dtype}")
    expected = signature.shape[1:]
    if x.ndim != len(signature.shape) or any(e is not None and e != d for e, d in zip(expected, x.shape[1:],
                                                                                      strict=True)):
        shown = "x".join("?" if d is None else str(d) for d in expected)
        raise EvaluationError(f"{where} has samples of shape {x.shape[1:]}, the model input "
                              f"'{signature.name}' takes {shown}")


def _logits(outputs: Sequence[np.ndarray]) -> np.ndarray:
    first = np.asarray(outputs[0])
    if first.ndim != 2:
        raise EvaluationError(f"the model's first output must be (batch, classes) scores, got shape {first.shape}")
    return first


def _predict(run: Callable[[np.ndarray], Sequence[np.ndarray]], x: np.ndarray, batch: int,
             fixed_batch: int | None, step: Callable[[], None]) -> np.ndarray:
    """Top-1 predictions of ``run`` on ``x``, in batches (padded with zeros for a fixed-batch model)."""
    size = fixed_batch or batch
    predictions = []
    for first in range(0, len(x), size):
        chunk = x[first:first + size]
        count = len(chunk)
        if fixed_batch and count < fixed_batch:
            chunk = np.concatenate([chunk, np.zeros((fixed_batch - count, *chunk.shape[1:]), np.float32)])
        predictions.append(_logits(run(chunk))[:count].argmax(axis=1))
        step()
    return np.concatenate(predictions)


def _build(model: str | os.PathLike[str] | onnx.ModelProto, engine: Engine,
           progress: Callable[[str], None] | None) -> Any:
    import sparsecc

    return sparsecc.compile(model, engine.target, batch=None, progress=progress, **dict(engine.options))


def evaluate(
    model: str | os.PathLike[str] | onnx.ModelProto,
    data: str | os.PathLike[str] | tuple[np.ndarray, np.ndarray],
    engines: Sequence[str | Engine] = (REFERENCE,),
    *,
    levels: Sequence[float] = DEFAULT_LEVELS,
    seed: int = 0,
    transform: str | Transform | None = None,
    batch: int = 64,
    samples: int | None = None,
    progress: bool = False,
) -> Evaluation:
    """Accuracy per noise level, noise score and agreement with onnxruntime of ``model`` on each engine.

    ``engines``: names (``"llvm"``) or :class:`Engine` (target and options); onnxruntime is added first when
    absent. ``transform``: a function or ``"FILE.py:NAME"``, applied to each level's noisy inputs.
    ``samples``: use only the first ``samples`` data points. ``progress``: a progress bar and compile
    messages on stderr. Raises :class:`EvaluationError` (one line) on bad data, levels or options.
    """
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise EvaluationError(f"batch must be a positive int, got {batch!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise EvaluationError(f"seed must be a non-negative int, got {seed!r}")
    if samples is not None and (isinstance(samples, bool) or not isinstance(samples, int) or samples < 1):
        raise EvaluationError(f"samples must be a positive int, got {samples!r}")
    alphas = _check_levels(levels)
    chosen = [e if isinstance(e, Engine) else Engine(e) for e in engines]
    if not any(e.target == REFERENCE for e in chosen):
        chosen.insert(0, Engine(REFERENCE))
    labels = [e.label for e in chosen]
    if len(set(labels)) != len(labels):
        raise EvaluationError(f"engines given twice: {', '.join(sorted({x for x in labels if labels.count(x) > 1}))}")
    function = load_transform(transform) if isinstance(transform, str) else transform
    x, y = load_data(data)
    if samples is not None:
        x, y = x[:samples], y[:samples]
    session = _session(model)
    signature = _signature(session)
    where = "x" if function is None else "the transform's result"
    clean = x if function is None else _transformed(function, x, len(x))
    _check_input(clean, signature, where)
    classes = _logits(session.run(None, {signature.name: clean[:signature.fixed_batch or 1]})).shape[1]
    out_of_range = y[(y < 0) | (y >= classes)]
    if out_of_range.size:
        raise EvaluationError(f"labels must lie in [0, {classes}) (the model has {classes} outputs), "
                              f"got {out_of_range[0]} ({out_of_range.size} label(s) out of range)")

    say = _messages() if progress else None
    runners: dict[str, Callable[[np.ndarray], Sequence[np.ndarray]]] = {}
    compile_seconds: dict[str, float] = {}
    for engine in chosen:
        start = time.perf_counter()
        if engine.target == REFERENCE:
            runners[engine.label] = lambda chunk: session.run(None, {signature.name: chunk})
        else:
            if say:
                say(f"building {engine.label}")
            compiled = _build(model, engine, say)
            runners[engine.label] = lambda chunk, c=compiled: c.run(None, {signature.name: chunk})
        compile_seconds[engine.label] = time.perf_counter() - start

    predictions: dict[str, list[np.ndarray]] = {label: [] for label in runners}
    run_seconds = dict.fromkeys(runners, 0.0)
    steps = len(alphas) * len(runners) * -(-len(x) // (signature.fixed_batch or batch))
    with _bar(steps, progress) as bar:
        for alpha in alphas:
            noisy = add_noise(x, alpha, noise(x.shape, alpha, seed))
            if function is not None:
                noisy = _transformed(function, noisy, len(x))
                _check_input(noisy, signature, where)
            for label, run in runners.items():
                bar.set_description(f"alpha {alpha:.2f} {label}")
                start = time.perf_counter()
                predictions[label].append(_predict(run, noisy, batch, signature.fixed_batch, bar.update))
                run_seconds[label] += time.perf_counter() - start

    reference = predictions[REFERENCE]
    results = [
        EngineResult(
            label=engine.label, target=engine.target, options=dict(engine.options),
            correct=[int((p == y).sum()) for p in predictions[engine.label]],
            agreement=[float((p == r).mean()) for p, r in zip(predictions[engine.label], reference, strict=True)],
            compile_seconds=round(compile_seconds[engine.label], 3),
            run_seconds=round(run_seconds[engine.label], 3),
            predictions=predictions[engine.label],
        )
        for engine in chosen
    ]
    model_name = str(model) if isinstance(model, str | os.PathLike) else model.graph.name
    data_name = "(x, y)" if isinstance(data, tuple) else str(data)
    transform_name = transform if isinstance(transform, str) else getattr(transform, "__name__", None)
    return Evaluation(model_name, data_name, len(x), classes, seed, alphas, transform_name, results)


def _transformed(function: Transform, x: np.ndarray, count: int) -> np.ndarray:
    try:
        result = function(x)
    except Exception as exc:
        raise EvaluationError(f"the transform failed: {type(exc).__name__}: {exc}") from None
    if not isinstance(result, np.ndarray) or result.ndim < 1 or result.shape[0] != count:
        shape = getattr(result, "shape", type(result).__name__)
        raise EvaluationError(f"the transform must return an array of {count} samples, got {shape}")
    return result


def _messages() -> Callable[[str], None]:
    start = time.perf_counter()

    def report(message: str) -> None:
        print(f"sparsecc: {time.perf_counter() - start:6.1f}s {message}", file=sys.stderr, flush=True)

    return report


def _bar(total: int, enabled: bool) -> Any:
    from tqdm import tqdm

    # disable=None: a bar only on a terminal
    return tqdm(total=total, disable=None if enabled else True, unit="batch", file=sys.stderr, leave=False,
                dynamic_ncols=True)


def _resolve(model: str, data: str | None, zoo_dir: Path | None) -> tuple[str, str]:
    """An ONNX path, or a trained zoo name (examples/trained.py) with its test split as default data."""
    from ..examples.trained import TRAINED_MODELS, model_path, test_split_path

    if Path(model).exists() or model not in TRAINED_MODELS:
        if data is None:
            raise EvaluationError(f"--data is required for {model} (trained zoo names: {', '.join(TRAINED_MODELS)})")
        return model, data
    path = model_path(model, zoo_dir)
    if not path.is_file():
        raise EvaluationError(f"trained model {model} is not built in {path.parent}: run `make zoo-trained` "
                              "(python -m sparsecc.examples.train_zoo)")
    return str(path), data or str(test_split_path(zoo_dir))


def add_arguments(parser: Any) -> None:
    """The ``sparsecc evaluate`` options."""
    parser.add_argument("model", help="ONNX file, or a trained zoo name (make zoo-trained)")
    parser.add_argument("--data", help=".npz with x (N, ...) float32 and y (N,) int labels "
                                       "(default for a trained zoo name: its held-out digits split)")
    parser.add_argument("--target", action="append", default=[], metavar="T[,T...]",
                        help=f"engines side by side, of {', '.join(ENGINE_TARGETS)} (onnxruntime always runs)")
    parser.add_argument("--precision", action="append", default=[], metavar="TYPE",
                        help="hls number type, e.g. float or 'ap_fixed<16,6>'; repeat for several hls engines")
    parser.add_argument("--mcpu", help="llvm: the CPU to compile for (default: the host)")
    parser.add_argument("--noise", default=",".join(f"{a:g}" for a in DEFAULT_LEVELS),
                        help="comma-separated noise levels alpha in [0, 1] (default 0,0.05,...,0.5)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the noise")
    parser.add_argument("--transform", metavar="FILE.py:FN", help="function applied to the inputs after the noise")
    parser.add_argument("--batch", type=int, default=64, help="samples per run call (default 64)")
    parser.add_argument("--samples", type=int, help="use only the first N samples of the data")
    parser.add_argument("--json", metavar="FILE", help="write the results as JSON")
    parser.add_argument("--plot", metavar="FILE.png", help="plot accuracy vs noise level, one line per engine")
    parser.add_argument("--zoo-dir", type=Path, help="folder of the trained zoo (default: the user cache)")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar or messages")


def run(args: Any) -> int:
    """Run ``sparsecc evaluate``: print the table; write JSON and plot when asked."""
    from .evaluation_report import write_json, write_plot

    try:
        levels = [float(a) for a in args.noise.split(",") if a.strip()]
    except ValueError:
        raise EvaluationError(f"--noise must be comma-separated numbers, got '{args.noise}'") from None
    for option, value in (("--json", args.json), ("--plot", args.plot)):
        if value is not None and not Path(value).parent.is_dir():
            raise EvaluationError(f"{option}: output directory {Path(value).parent} does not exist")
    model, data = _resolve(args.model, args.data, args.zoo_dir)
    engines = engines_from_options(args.target or [REFERENCE], args.precision, args.mcpu)
    result = evaluate(model, data, engines, levels=levels, seed=args.seed, transform=args.transform,
                      batch=args.batch, samples=args.samples, progress=not args.quiet)
    # report the names given (a trained zoo name stays a name, not a path in the user's cache)
    result = dataclasses.replace(result, model=args.model, data=args.data or f"{args.model} held-out split")
    print(result.table())
    if args.json:
        write_json(result, args.json)
    if args.plot:
        write_plot(result, args.plot)
    return 0
