"""Tie-aware comparison of model outputs (DESIGN.md §2).

k-WTA is discontinuous: when the k-th and (k+1)-th largest boosted values of a selection group differ by
less than float rounding, two correct implementations may choose different winners. So outputs are
compared per sample: a sample matches when every element of every output satisfies
``|actual - expected| <= atol + rtol * max|expected over the sample's output|``; a sample that
does not match is *excused* only if one of its k-WTA selections (found by running the reference
interpreter on the same inputs) has a **near-tie**: ``v[k-1] - v[k] <= tie_rtol * max|v|`` for the group's
boosted values ``v`` sorted in decreasing order. Everything else is a real mismatch. The counts are
reported, never hidden: :meth:`Comparison.summary`; near-ties may excuse only a bounded number of samples
(:func:`tie_budget`: a quarter of the batch, at least one), more is a FAIL too.

Why the tolerance scales with the sample's largest output rather than each element: float32 rounding
after deep accumulation is proportional to the magnitude of what was summed, not to each result. On
CIFAR VGG19 (16 conv layers), against a float64 evaluation of the same graph, onnxruntime's logits are off
by up to 8.4e-6, the interpreter's by 1.3e-5 and a TVM build's by 2.2e-5, with logits up to 1.5 in size;
an element-wise test fails on logits near 0.02 although all three are equally correct float32 results.

Why ``TIE_RTOL = 2e-6``: on GSCSparseCNN the k-WTA inputs computed by onnxruntime and by the interpreter
(both float32, different summation orders) differ by 1e-7 to 4e-7 of the group's max |value|, while the
gaps between the k-th and (k+1)-th values are typically 1e-6 to 1e-3 of it. A gap within about 5-10x the
measured noise can flip; a larger one cannot.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .errors import FrontendError
from .interpreter import interpret
from .ir.core import Module, Operation

RTOL = 1e-4
ATOL = 1e-5
TIE_RTOL = 2e-6


@dataclasses.dataclass
class NearTies:
    """Per sample, the k-WTA layers where it has a near-tie, and the reference outputs."""

    by_sample: dict[int, list[str]]
    outputs: list[np.ndarray]
    selections: int  # k-WTA selections observed (groups x layers)


def find_near_ties(module: Module, inputs: Mapping[str, np.ndarray], tie_rtol: float = TIE_RTOL) -> NearTies:
    """Run the interpreter and record, per sample, the k-WTA layers with a near-tie at the threshold."""
    batch = next(iter(inputs.values())).shape[0] if inputs else 1
    by_sample: dict[int, list[str]] = {}
    count = 0

    def observe(op: Operation, groups: np.ndarray, k: int, ties: str) -> None:
        nonlocal count
        n = groups.shape[1]
        count += groups.shape[0]
        if k >= n:
            return
        top = -np.partition(-groups.astype(np.float64), (k - 1, k), axis=1)[:, : k + 1]
        gap = top[:, k - 1] - top[:, k]
        scale = np.abs(groups).max(axis=1).astype(np.float64)
        near = gap <= tie_rtol * np.maximum(scale, np.finfo(np.float32).tiny)
        per_sample = max(1, groups.shape[0] // batch)
        layer = op.results[0].name or op.name
        for g in np.flatnonzero(near):
            names = by_sample.setdefault(int(g // per_sample), [])
            if layer not in names:
                names.append(layer)

    outputs = interpret(module, inputs, kwta_observer=observe)
    return NearTies(by_sample, outputs, count)


@dataclasses.dataclass
class Comparison:
    """The result of a tie-aware comparison of ``actual`` against ``expected`` outputs."""

    samples: int
    max_abs_error: float  # over all samples
    max_abs_error_matched: float  # over the samples that match
    mismatched: list[int]  # samples outside tolerance
    excused: dict[int, list[str]]  # mismatched samples with a near-tie, and where
    near_tie_samples: int  # samples with any near-tie (matching or not)
    rtol: float
    atol: float
    tie_budget: int = 1  # at most this many samples may be excused by a near-tie

    @property
    def unexplained(self) -> list[int]:
        return [s for s in self.mismatched if s not in self.excused]

    @property
    def over_budget(self) -> bool:
        """More samples excused by near-ties than the budget allows: near-ties are rare, not the norm."""
        return len(self.excused) > self.tie_budget

    @property
    def ok(self) -> bool:
        return not self.unexplained and not self.over_budget

    def summary(self) -> str:
        text = (f"{self.samples} sample(s): max abs error {self.max_abs_error:.3g} "
                f"({self.max_abs_error_matched:.3g} over matching samples; rtol={self.rtol:g}, atol={self.atol:g}); "
                f"k-WTA near-ties in {self.near_tie_samples} sample(s)")
        if self.excused:
            where = sorted({layer for layers in self.excused.values() for layer in layers})
            text += (f"; {len(self.excused)} sample(s) differ at near-ties ({', '.join(where)}; budget "
                     f"{self.tie_budget})")
        if self.over_budget:
            text += f"; TOO MANY near-tie differences ({len(self.excused)} > budget {self.tie_budget})"
        if self.unexplained:
            text += f"; {len(self.unexplained)} sample(s) MISMATCH without a near-tie: {self.unexplained[:10]}"
        return text


def tie_budget(samples: int) -> int:
    """How many samples of a batch a near-tie may excuse: a quarter of them, at least one."""
    return max(1, samples // 4)


def compare_outputs(actual: Sequence[np.ndarray], expected: Sequence[np.ndarray], near: NearTies | None = None,
                    *, rtol: float = RTOL, atol: float = ATOL, max_excused: int | None = None) -> Comparison:
    """Compare per sample (axis 0 of every output); see module docstring. Equal infinities and NaN at the
    same positions match; ``max_excused`` (default :func:`tie_budget`) bounds the near-tie excuses."""
    if len(actual) != len(expected):
        raise ValueError(f"{len(actual)} outputs compared with {len(expected)}")
    samples = expected[0].shape[0] if expected and expected[0].ndim else 1
    bad: set[int] = set()
    errors = np.zeros(samples)
    for a, e in zip(actual, expected, strict=True):
        a, e = np.asarray(a), np.asarray(e)
        if a.shape != e.shape:
            raise ValueError(f"output shapes differ: {a.shape} vs {e.shape}")
        a2 = a.reshape(samples, -1).astype(np.float64)
        e2 = e.reshape(samples, -1).astype(np.float64)
        with np.errstate(invalid="ignore", over="ignore"):
            diff = np.abs(a2 - e2)
        same = (a2 == e2) | (np.isnan(a2) & np.isnan(e2))  # equal infinities, NaN where NaN is expected
        diff[same] = 0.0
        diff[np.isnan(diff)] = np.inf
        errors = np.maximum(errors, diff.max(axis=1) if diff.size else 0.0)
        finite = np.where(np.isfinite(e2), np.abs(e2), 0.0)
        scale = finite.max(axis=1, keepdims=True) if e2.size else np.zeros((samples, 1))
        within = diff <= atol + rtol * scale
        bad |= set(np.flatnonzero(~within.all(axis=1)).tolist())
    by_sample = near.by_sample if near is not None else {}
    mismatched = sorted(bad)
    matched = [s for s in range(samples) if s not in bad]
    return Comparison(
        samples=samples,
        max_abs_error=float(errors.max()) if samples else 0.0,
        max_abs_error_matched=float(errors[matched].max()) if matched else 0.0,
        mismatched=mismatched,
        excused={s: by_sample[s] for s in mismatched if s in by_sample},
        near_tie_samples=len(by_sample),
        rtol=rtol,
        atol=atol,
        tie_budget=tie_budget(samples) if max_excused is None else max_excused,
    )


def onnxruntime_session(model_path: str | os.PathLike[str]) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    try:
        return ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types
        raise FrontendError(f"onnxruntime cannot load {model_path}: {str(exc).splitlines()[0]}") from None
