"""Writing your own passes: a magnitude-pruning transform and a per-layer report.

Both are registered with sparsecc without editing it: ``@register_pass`` (or subclassing ``Pass`` with a
``name``) makes them usable in pipeline strings, in ``sparsecc.compile(...)`` and on the command line::

    python examples/custom_pass.py gsc_sparse_cnn.onnx            # API: prune, report, compile, run
    sparsecc --plugin examples/custom_pass.py opt MODEL.onnx \\
        --passes "canonicalize,magnitude-prune{density=0.05},layer-report"

``magnitude-prune{density=D}`` keeps, in every output unit of every conv/linear weight, the
``round(D * fan_in)`` weights of largest magnitude (a fixed fan-in, as Numenta's networks have) and records
the new sparsity in the weight's type, so ``compress-weights`` and ``schedule-sparse`` exploit it.
Unlike the built-in passes it changes what the model computes: that is its purpose.
"""

from __future__ import annotations

import dataclasses
import sys

import numpy as np

import sparsecc
from sparsecc.compiler.cost_model import layer_costs
from sparsecc.compiler.errors import PassError
from sparsecc.compiler.ir import Module, SparseWeights, ops
from sparsecc.compiler.ir.weights import measure_weight_sparsity
from sparsecc.compiler.passes import Pass, Rewriter, register_pass


@register_pass
@dataclasses.dataclass(frozen=True)
class MagnitudePrune(Pass):
    """Prune every conv/linear weight to a fixed fan-in of the largest magnitudes."""

    name = "magnitude-prune"
    density: float = 0.1
    min_size: int = 1000  # leave small weights (e.g. a 12-class output layer) alone

    def __post_init__(self) -> None:
        if not 0.0 < self.density <= 1.0:
            raise PassError(f"magnitude-prune: density must be in (0, 1], got {self.density}")

    def apply(self, module: Module) -> None:
        rewriter = Rewriter(module.func)
        for layer in module.walk(ops.WeightedLayer):  # conv2d and linear, plain or fused
            weight = layer.weight
            if not isinstance(weight.owner, ops.Constant) or weight.owner.value.size < self.min_size:
                continue
            data = weight.owner.value
            rows = data.reshape(data.shape[0], -1)
            keep = max(1, round(self.density * rows.shape[1]))
            order = np.argsort(-np.abs(rows), axis=1, kind="stable")[:, :keep]
            mask = np.zeros(rows.shape, dtype=bool)
            np.put_along_axis(mask, order, True, axis=1)
            pruned = np.where(mask, rows, 0).reshape(data.shape).astype(data.dtype)
            m = measure_weight_sparsity(pruned)
            new = ops.Constant.of(pruned, encoding=SparseWeights(m.density, m.fan_in), name=weight.name)
            rewriter.insert_before(layer, new)
            rewriter.set_operand(layer, "weight", new.result)


@register_pass
@dataclasses.dataclass(frozen=True)
class LayerReport(Pass):
    """Print a one-line-per-layer report (to stderr) of densities and MACs; changes nothing."""

    name = "layer-report"

    def apply(self, module: Module) -> None:
        print(f"layer report for {module.name}:", file=sys.stderr)
        for c in layer_costs(module):
            density = "" if c.weight_density is None else f"weights {c.weight_density:.3f}"
            print(f"  {c.name:<28} {c.op:<14} {density:<15} input {c.input_density:.3f} "
                  f"MACs {c.dense_macs:>11,} -> {round(c.sparse_macs):>10,}", file=sys.stderr)


def main(model_path: str) -> None:
    """Prune a model further, compile it for the CPU and compare it with the unpruned model."""
    pipeline = "canonicalize,magnitude-prune{density=0.05},layer-report,fuse-kwta,compress-weights,schedule-sparse"
    compiled = sparsecc.compile(model_path, target="llvm", passes=pipeline)
    reference = sparsecc.compile(model_path, target="llvm")
    x = np.random.default_rng(0).standard_normal((4, *compiled.manifest.inputs[0].shape[1:])).astype(np.float32)
    pruned_out = compiled.run(None, {compiled.input_names[0]: x})[0]
    dense_out = reference.run(None, {reference.input_names[0]: x})[0]
    agree = (pruned_out.argmax(1) == dense_out.argmax(1)).mean()
    print(f"pipeline: {compiled.manifest.pipeline}")
    print(f"top-1 agreement of the pruned model with the original on 4 random inputs: {agree:.2f}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python examples/custom_pass.py MODEL.onnx")
    main(sys.argv[1])
