"""Dense conv layers of the zoo (GSC DenseCNN2, CIFAR VGG19): sparsecc's conv2d_dense vs onnxruntime.

Run: ``TVM_NUM_THREADS=1 python -m sparsecc.benchmarks.kernels.dense_convs [--batches 1 64] [--rounds 9]``

Each layer is Conv(+bias)+ReLU (and MaxPool where the net pools); onnxruntime runs the same ONNX
subgraph with 1 thread. Timings alternate round by round; the table shows medians and ours/ORT.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from sparsecc.benchmarks.kernels.gsc_layers import interleaved, ort_session, timer_ort, timer_tvm
from sparsecc.compiler.ir.layer import ConvGeometry, Epilogue
from sparsecc.targets.llvm.kernels.common import build
from sparsecc.targets.llvm.kernels.plan import conv2d

#: (name, C, H, O, K, pad, pool); the kernel family comes from plan.conv2d
LAYERS = [
    ("dcnn2 conv1 1->64 5x5 32", 1, 32, 64, 5, 0, True),
    ("dcnn2 conv2 64->64 5x5 14", 64, 14, 64, 5, 0, True),
    ("vgg 3->64 3x3 32", 3, 32, 64, 3, 1, False),
    ("vgg 64->64 3x3 32", 64, 32, 64, 3, 1, True),
    ("vgg 128->128 3x3 16", 128, 16, 128, 3, 1, False),
    ("vgg 256->256 3x3 8", 256, 8, 256, 3, 1, False),
    ("vgg 512->512 3x3 4", 512, 4, 512, 3, 1, False),
    ("vgg 512->512 3x3 2", 512, 2, 512, 3, 1, True),
]


def onnx_conv(batch: int, c: int, h: int, w: np.ndarray, b: np.ndarray, pad: int, pool: bool) -> bytes:
    """Conv + Relu (+ MaxPool 2x2) as a one-layer ONNX model (ir_version 8, opset 17)."""
    from onnx import TensorProto, helper, numpy_helper

    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["z"], pads=[pad] * 4),
        helper.make_node("Relu", ["z"], ["r"]),
    ]
    last = "r"
    if pool:
        nodes.append(helper.make_node("MaxPool", ["r"], ["p"], kernel_shape=[2, 2], strides=[2, 2]))
        last = "p"
    nodes.append(helper.make_node("Identity", [last], ["y"]))
    y_info = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    y_info.type.tensor_type.ClearField("shape")
    graph = helper.make_graph(
        nodes,
        "conv",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, c, h, h])],
        [y_info],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


def main() -> None:
    import tvm

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 64])
    parser.add_argument("--rounds", type=int, default=9)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    print(
        f"{'B':>3} {'layer':<28} {'kernel':<22} {'ours us':>9} {'ort us':>9} {'ours/ort':>8} {'GMAC/s':>7}"
        f" {'compile s':>9} {'err':>8}"
    )
    for batch in args.batches:
        for name, c, h, o, k, pad, pool in LAYERS:
            w = (rng.standard_normal((o, c, k, k)) / np.sqrt(c * k * k)).astype(np.float32)
            b = rng.standard_normal(o).astype(np.float32) * 0.1
            t0 = time.perf_counter()
            kern = conv2d(ConvGeometry((c, h, h), w.shape, pads=(pad,) * 4), w, b,
                          Epilogue.fused(4, relu=True, pool=2 if pool else None), "conv")
            mod = build([kern])
            compile_s = time.perf_counter() - t0
            x = rng.standard_normal((batch, c, h, h)).astype(np.float32)
            sess = ort_session(onnx_conv(batch, c, h, w, b, pad, pool))
            ref = sess.run(None, {"x": x})[0]
            y = tvm.runtime.tensor(np.zeros(ref.shape, np.float32))
            targs = [tvm.runtime.tensor(x), *[tvm.runtime.tensor(a) for a in kern.constants], y]
            mod[kern.name](*targs)
            err = float(np.abs(y.numpy() - ref).max())
            ho = h + 2 * pad - k + 1
            macs = batch * o * ho * ho * c * k * k
            number = max(1, int(2e6 // max(macs // 100, 1)))
            med = interleaved(
                {"ours": timer_tvm(mod, kern.name, targs, number), "ort": timer_ort(sess, x, number)}, args.rounds
            )
            print(
                f"{batch:>3} {name:<28} {kern.info['family']:<22} {med['ours'] * 1e6:>9.1f} {med['ort'] * 1e6:>9.1f}"
                f" {med['ours'] / med['ort']:>8.2f} {macs / med['ours'] / 1e9:>7.1f} {compile_s:>9.2f} {err:>8.1e}"
            )


if __name__ == "__main__":
    main()
