"""GSCSparseCNN layer by layer: sparsecc's llvm kernels vs onnxruntime on the dense-equivalent ONNX subgraphs.

Run: ``TVM_NUM_THREADS=1 python -m sparsecc.benchmarks.kernels.gsc_layers [--batches 1 64] [--rounds 15]``

Layers (DESIGN §3; BN folded into weight/bias; random weights with the real fixed-fan-in masks):

====  =============================================================  =====================================
L1    conv 1->64 5x5 (12/25 per filter) + k-WTA(4767 of 50176) + pool  kernel: conv2d_weight_sparse (fused)
L2    conv 64->64 5x5 (320/1600) + k-WTA(800 of 6400) + pool           kernel: conv2d_weight_sparse (fused)
L3    linear 1600->1000 (160/1600) + k-WTA(100 of 1000)                kernel: linear_sparse (fused)
L4    linear 1000->12 (dense)                                          kernel: linear_dense
====  =============================================================  =====================================

Each layer's input is realistic: the previous layer's exact output (k-WTA applied with the real k to
random conv/linear outputs). onnxruntime (1 thread, ORT_ENABLE_ALL) runs two subgraphs per layer:
``ort+kwta`` — Conv/Gemm followed by the k-WTA subgraph the torch exporter emits (Mul boost, Reshape, TopK,
Slice, Less, Where) and MaxPool, i.e. the same function; ``ort dense`` — Conv/Gemm (+MaxPool) only, the
dense compute without any k-WTA (a lower bound for ORT, not the same function). Timings alternate between
the contenders round by round; the table reports medians. The whole network is timed the same way:
our 4 kernels chained by a Relax function (``call_tir`` + the Flatten reshape) run by the Relax VM, vs
onnxruntime on the whole graph (with and without the k-WTA subgraphs).
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from sparsecc.compiler.ir.layer import ConvGeometry, Epilogue, Kwta, LinearGeometry
from sparsecc.targets.llvm.kernels.common import Kernel, build, np_float_key
from sparsecc.targets.llvm.kernels.conv_weight_sparse import conv2d_weight_sparse
from sparsecc.targets.llvm.kernels.linear import linear_dense, linear_sparse


@dataclass
class Layer:
    """One GSC layer: its kernel, ORT graphs, realistic input, and MAC counts per sample."""

    name: str
    kernel: Kernel
    x: np.ndarray
    ort_full: bytes
    ort_dense: bytes
    dense_macs: int
    weight_nz_macs: int
    both_nz_macs: float


def fixed_fan_in(rng: np.random.Generator, shape: tuple[int, ...], keep: int) -> np.ndarray:
    """Random weights with exactly ``keep`` non-zeros per output unit/filter (SparseWeights masks)."""
    out = shape[0]
    fan = int(np.prod(shape[1:]))
    w = np.zeros((out, fan), np.float32)
    for o in range(out):
        idx = rng.choice(fan, keep, replace=False)
        w[o, idx] = rng.standard_normal(keep).astype(np.float32) / np.sqrt(keep)
    return w.reshape(shape)


def conv_ref(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Valid conv2d (stride 1) in float64 -> float32."""
    bsz, _, h, wd = x.shape
    o, _, kh, kw = w.shape
    ho, wo = h - kh + 1, wd - kw + 1
    out = np.zeros((bsz, o, ho, wo))
    for ky in range(kh):
        for kx in range(kw):
            out += np.einsum("bchw,oc->bohw", x[:, :, ky : ky + ho, kx : kx + wo], w[:, :, ky, kx])
    return (out + b.reshape(1, o, 1, 1)).astype(np.float32)


def kwta_ref(x: np.ndarray, k: int, boost: np.ndarray) -> np.ndarray:
    """Global k-WTA per sample (boost per channel for 4-D, per unit for 2-D), ties kept."""
    shape = (1, -1, 1, 1) if x.ndim == 4 else (1, -1)
    keys = np_float_key(x * boost.reshape(shape)).reshape(x.shape[0], -1).astype(np.int64)
    thr = -np.sort(-keys, axis=1)[:, k - 1 : k]
    return np.where(keys < thr, 0, x.reshape(x.shape[0], -1)).reshape(x.shape).astype(np.float32)


def pool_ref(x: np.ndarray) -> np.ndarray:
    b, c, h, w = x.shape
    return x[:, :, : h // 2 * 2, : w // 2 * 2].reshape(b, c, h // 2, 2, w // 2, 2).max(axis=(3, 5))


def onnx_layer(
    kind: str,
    batch: int,
    in_shape: tuple[int, ...],
    w: np.ndarray,
    b: np.ndarray,
    kwta: tuple[int, np.ndarray] | None,
    pool: bool,
    pool_first: bool = False,
) -> bytes:
    """A one-layer ONNX model (ir_version 8, opset 17): Conv/Gemm [+ k-WTA subgraph] [+ MaxPool]
    (``pool_first``: MaxPool before the k-WTA)."""
    from onnx import TensorProto, helper, numpy_helper

    inits = [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")]
    nodes = []
    if kind == "conv":
        nodes.append(helper.make_node("Conv", ["x", "w", "b"], ["z"]))
    else:
        nodes.append(helper.make_node("Gemm", ["x", "w", "b"], ["z"], transB=1))
    cur = "z"
    if pool and pool_first:
        nodes.append(helper.make_node("MaxPool", [cur], ["pooled0"], kernel_shape=[2, 2], strides=[2, 2]))
        cur = "pooled0"
    if kwta is not None:
        k, boost = kwta
        bshape = (1, -1, 1, 1) if kind == "conv" else (1, -1)
        inits += [
            numpy_helper.from_array(boost.reshape(bshape).astype(np.float32), "boost"),
            numpy_helper.from_array(np.array([0, -1], np.int64), "flat"),
            numpy_helper.from_array(np.array([k], np.int64), "k"),
            numpy_helper.from_array(np.array([k - 1], np.int64), "s0"),
            numpy_helper.from_array(np.array([k], np.int64), "s1"),
            numpy_helper.from_array(np.array([1], np.int64), "ax"),
            numpy_helper.from_array(np.zeros((), np.float32), "zero"),
        ]
        nodes += [
            helper.make_node("Mul", [cur, "boost"], ["boosted"]),
            helper.make_node("Shape", [cur], ["zshape"]),
            helper.make_node("Reshape", ["boosted", "flat"], ["bflat"]),
            helper.make_node("TopK", ["bflat", "k"], ["topv", "topi"], axis=1),
            helper.make_node("Slice", ["topv", "s0", "s1", "ax"], ["thr"]),
            helper.make_node("Less", ["bflat", "thr"], ["lessf"]),
            helper.make_node("Reshape", ["lessf", "zshape"], ["less"]),
            helper.make_node("Where", ["less", "zero", cur], ["kw"]),
        ]
        cur = "kw"
    if pool and not pool_first:
        nodes.append(helper.make_node("MaxPool", [cur], ["pooled"], kernel_shape=[2, 2], strides=[2, 2]))
        cur = "pooled"
    nodes.append(helper.make_node("Identity", [cur], ["y"]))
    y_info = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    y_info.type.tensor_type.ClearField("shape")
    graph = helper.make_graph(
        nodes,
        "layer",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, *in_shape])],
        [y_info],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


def onnx_network(batch: int, layers: list[Layer], with_kwta: bool) -> bytes:
    """The whole GSCSparseCNN (minus LogSoftmax) as one ONNX graph: the layer graphs chained, with a Flatten
    before the first Gemm. ``with_kwta=False`` drops the k-WTA subgraphs (dense compute only)."""
    from onnx import TensorProto, helper, numpy_helper

    nodes, inits = [], []
    cur = "x"
    for i, layer in enumerate(layers):
        sub = _parse(layer.ort_full if with_kwta else layer.ort_dense)
        prefix = f"l{i}_"
        rename = {"x": cur}
        for init in sub.graph.initializer:
            arr = numpy_helper.to_array(init)
            inits.append(numpy_helper.from_array(arr, prefix + init.name))
            rename[init.name] = prefix + init.name
        if layer.kernel.name == "gsc_l3":
            inits.append(numpy_helper.from_array(np.array([batch, -1], np.int64), prefix + "flatshape"))
            nodes.append(helper.make_node("Reshape", [cur, prefix + "flatshape"], [prefix + "flattened"]))
            rename["x"] = prefix + "flattened"
        for node in sub.graph.node:
            if node.op_type == "Identity":
                rename[node.output[0]] = rename.get(node.input[0], prefix + node.input[0])
                continue
            new = helper.make_node(
                node.op_type,
                [rename.get(n, prefix + n) for n in node.input],
                [rename.get(n, prefix + n) for n in node.output],
            )
            new.attribute.extend(node.attribute)
            nodes.append(new)
        cur = rename.get("y", prefix + "y")
    nodes.append(helper.make_node("Identity", [cur], ["y"]))
    y_info = helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, 12])
    graph = helper.make_graph(
        nodes, "gsc", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 1, 32, 32])], [y_info], inits
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


def _parse(model: bytes):
    import onnx

    return onnx.load_from_string(model)


def relax_chain(layers: list[Layer], batch: int):
    """The four kernels chained in one Relax function (call_tir + the Flatten reshape), as the llvm target
    will assemble them; returns the VM."""
    import tvm
    from tvm import relax

    from sparsecc.targets.llvm.kernels.common import host_target

    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((batch, 1, 32, 32), "float32"))
    with bb.function("main", [x]):
        with bb.dataflow():
            cur = x
            for layer in layers:
                gv = bb.add_func(layer.kernel.prim_func, layer.kernel.name)
                if layer.kernel.name == "gsc_l3":
                    cur = bb.emit(relax.op.reshape(cur, (batch, 1600)))
                consts = [relax.const(c) for c in layer.kernel.constants]
                out_ty = relax.TensorType(_out_shape(layer, batch), "float32")
                cur = bb.emit(relax.call_tir(gv, relax.Tuple([cur, *consts]), out_ty))
            out = bb.emit_output(cur)
        bb.emit_func_output(out)
    ex = tvm.compile(bb.get(), target=host_target())
    return relax.VirtualMachine(ex, tvm.cpu())


def make_layers(batch: int, seed: int = 0, return_params: bool = False):
    """The four GSCSparseCNN layers with realistic inputs for this batch size (and their parameters)."""
    rng = np.random.default_rng(seed)
    w1 = fixed_fan_in(rng, (64, 1, 5, 5), 12)
    w2 = fixed_fan_in(rng, (64, 64, 5, 5), 320)
    w3 = fixed_fan_in(rng, (1000, 1600), 160)
    w4 = (rng.standard_normal((12, 1000)) / np.sqrt(1000)).astype(np.float32)
    b1, b2, b3, b4 = (rng.standard_normal(n).astype(np.float32) * 0.1 for n in (64, 64, 1000, 12))
    boost1, boost2 = (np.exp(-1.5 * rng.uniform(0, 0.2, 64)).astype(np.float32) for _ in range(2))
    boost3 = np.exp(-1.5 * rng.uniform(0, 0.2, 1000)).astype(np.float32)
    k1, k2, k3 = 4767, 800, 100

    x1 = rng.standard_normal((batch, 1, 32, 32)).astype(np.float32)
    a1 = pool_ref(kwta_ref(conv_ref(x1, w1, b1), k1, boost1))
    a2 = pool_ref(kwta_ref(conv_ref(a1, w2, b2), k2, boost2)).reshape(batch, -1)
    a3 = kwta_ref(a2 @ w3.T + b3, k3, boost3)

    layers = [
        Layer(
            "L1 conv1+kwta+pool",
            conv2d_weight_sparse(ConvGeometry((1, 32, 32), w1.shape), w1, b1,
                                 Epilogue.fused(4, kwta=Kwta.select(k1, 4, boost=boost1), pool=2), "gsc_l1"),
            x1,
            onnx_layer("conv", batch, (1, 32, 32), w1, b1, (k1, boost1), True),
            onnx_layer("conv", batch, (1, 32, 32), w1, b1, None, True),
            64 * 28 * 28 * 25,
            64 * 28 * 28 * 12,
            64 * 28 * 28 * 12,
        ),
        Layer(
            "L2 conv2+kwta+pool",
            conv2d_weight_sparse(ConvGeometry((64, 14, 14), w2.shape), w2, b2,
                                 Epilogue.fused(4, kwta=Kwta.select(k2, 4, boost=boost2), pool=2), "gsc_l2"),
            a1,
            onnx_layer("conv", batch, (64, 14, 14), w2, b2, (k2, boost2), True),
            onnx_layer("conv", batch, (64, 14, 14), w2, b2, None, True),
            64 * 10 * 10 * 1600,
            64 * 10 * 10 * 320,
            nz_pairs_conv(a1, w2),
        ),
        Layer(
            "L3 fc1+kwta",
            linear_sparse(LinearGeometry(1600, w3.shape[0]), w3, b3,
                          Epilogue.fused(2, kwta=Kwta.select(k3, 2, boost=boost3)), "gsc_l3"),
            a2,
            onnx_layer("gemm", batch, (1600,), w3, b3, (k3, boost3), False),
            onnx_layer("gemm", batch, (1600,), w3, b3, None, False),
            1600 * 1000,
            160 * 1000,
            float(((a2 != 0).astype(np.float64) @ (w3 != 0).T).sum() / batch),
        ),
        Layer(
            "L4 fc2",
            linear_dense(LinearGeometry(1000, w4.shape[0]), w4, b4, name="gsc_l4"),
            a3,
            onnx_layer("gemm", batch, (1000,), w4, b4, None, False),
            onnx_layer("gemm", batch, (1000,), w4, b4, None, False),
            1000 * 12,
            1000 * 12,
            float((a3 != 0).sum() / batch * 12),
        ),
    ]
    if return_params:
        return layers, {"w2": w2, "b2": b2, "boost2": boost2}
    return layers


def extra_layers(batch: int, seed: int = 1) -> list[Layer]:
    """Kernel-family comparisons on conv2-type layers: GSC conv2 (L2, same weights and input) through the
    activation-sparse kernel, and the FPGA-style net's conv2 (64->256, 80/1600 weights per filter, 627 of
    12544 inputs active, max-pool then k-WTA 320 of 6400) through both sparse kernels."""
    from sparsecc.targets.llvm.kernels.conv_sparse_sparse import conv2d_sparse_sparse

    layers, params = make_layers(batch, return_params=True)
    l2 = layers[1]
    w2, b2, boost2 = params["w2"], params["b2"], params["boost2"]
    extra = [
        Layer(
            "L2 via sparse_sparse",
            conv2d_sparse_sparse(ConvGeometry((64, 14, 14), w2.shape), w2, b2,
                                 Epilogue.fused(4, kwta=Kwta.select(800, 4, boost=boost2), pool=2), "gsc_l2s"),
            l2.x,
            l2.ort_full,
            l2.ort_dense,
            l2.dense_macs,
            l2.weight_nz_macs,
            l2.both_nz_macs,
        )
    ]
    rng = np.random.default_rng(seed)
    wf = fixed_fan_in(rng, (256, 64, 5, 5), 80)
    bf = (rng.standard_normal(256) * 0.1).astype(np.float32)
    boostf = np.exp(-1.5 * rng.uniform(0, 0.2, 256)).astype(np.float32)
    xf = rng.standard_normal((batch, 64, 14, 14)).astype(np.float32)
    xf = kwta_ref(xf, 627, np.ones(64, np.float32))  # 627 of 12544 inputs active
    full = onnx_layer("conv", batch, (64, 14, 14), wf, bf, (320, boostf), True, pool_first=True)
    dense = onnx_layer("conv", batch, (64, 14, 14), wf, bf, None, True)
    spec = Kwta.select(320, 4, boost=boostf)
    for fam, gen in (("weight_sparse", conv2d_weight_sparse), ("sparse_sparse", conv2d_sparse_sparse)):
        kern = gen(ConvGeometry((64, 14, 14), wf.shape), wf, bf, Epilogue.fused(4, kwta=spec, pool=2, pool_first=True),
                   f"fpga_{fam}")
        extra.append(
            Layer(
                f"FPGA conv2 via {fam}",
                kern,
                xf,
                full,
                dense,
                256 * 100 * 1600,
                256 * 100 * 80,
                nz_pairs_conv(xf, wf),
            )
        )
    return extra


def nz_pairs_conv(x: np.ndarray, w: np.ndarray) -> float:
    """Mean over samples of #(active input, non-zero weight) pairs that reach a valid output."""
    mask = (w != 0).astype(np.float32)
    active = (x != 0).astype(np.float32)
    return float(conv_ref(active, mask, np.zeros(w.shape[0], np.float32)).sum() / len(x))


def ort_session(model: bytes):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])


def timer_ort(sess, x: np.ndarray, number: int) -> Callable[[], float]:
    feed = {"x": x}

    def run() -> float:
        t0 = time.perf_counter()
        for _ in range(number):
            sess.run(None, feed)
        return (time.perf_counter() - t0) / number

    return run


def timer_tvm(mod, name: str, args: list, number: int) -> Callable[[], float]:
    import tvm

    ev = mod.time_evaluator(name, tvm.cpu(), number=number, repeat=1)
    return lambda: float(ev(*args).mean)


def interleaved(timers: dict[str, Callable[[], float]], rounds: int) -> dict[str, float]:
    """Median seconds per call of each timer, measured round-robin (same noise for everyone)."""
    for t in timers.values():
        t()  # warm up
    samples: dict[str, list[float]] = {k: [] for k in timers}
    for _ in range(rounds):
        for k, t in timers.items():
            samples[k].append(t())
    return {k: float(np.median(v)) for k, v in samples.items()}


def measure_layer(mod, layer: Layer, batch: int, number: int, rounds: int, compile_s: float) -> dict:
    """Check one kernel against the ORT model of the same function, then time ours / ORT (+k-WTA) / ORT
    dense round-robin."""
    import tvm

    k = layer.kernel
    ref = ort_session(layer.ort_full).run(None, {"x": layer.x})[0]
    out_shape = (batch, 64, 5, 5) if k.name in ("gsc_l2", "gsc_l2s") else ref.shape
    ref = ref.reshape(out_shape)
    y = tvm.runtime.tensor(np.zeros(out_shape, np.float32))
    args = [tvm.runtime.tensor(layer.x), *[tvm.runtime.tensor(c) for c in k.constants], y]
    mod[k.name](*args)
    mismatch = int((np.abs(y.numpy() - ref) > 1e-3 * (1 + np.abs(ref))).sum())
    timers = {
        "ours": timer_tvm(mod, k.name, args, number),
        "ort+kwta": timer_ort(ort_session(layer.ort_full), layer.x, number),
        "ort dense": timer_ort(ort_session(layer.ort_dense), layer.x, number),
    }
    med = interleaved(timers, rounds)
    return {
        "batch": batch,
        "layer": layer.name,
        **{k_: v * 1e6 for k_, v in med.items()},
        "dense_gmacs": layer.dense_macs * batch / med["ours"] / 1e9,
        "wnz_gmacs": layer.weight_nz_macs * batch / med["ours"] / 1e9,
        "both_nz_gmacs": layer.both_nz_macs * batch / med["ours"] / 1e9,
        "mismatch": mismatch,
        "compile_s": compile_s,
    }


def run(batches: list[int], rounds: int, extras: bool = True) -> list[dict]:
    import tvm

    rows = []
    for batch in batches:
        layers = make_layers(batch)
        number = 20 if batch == 1 else 2
        t0 = time.perf_counter()
        mod = build([layer.kernel for layer in layers])
        compile_s = time.perf_counter() - t0
        rows += [measure_layer(mod, layer, batch, number, rounds, compile_s) for layer in layers]
        # whole network: the 4 kernels chained in Relax vs onnxruntime on the whole graph
        t0 = time.perf_counter()
        vm = relax_chain(layers, batch)
        chain_compile_s = time.perf_counter() - t0
        xin = tvm.runtime.tensor(layers[0].x)
        ours_y = vm["main"](xin).numpy()
        full, dense = ort_session(onnx_network(batch, layers, True)), ort_session(onnx_network(batch, layers, False))
        ref = full.run(None, {"x": layers[0].x})[0]
        med = interleaved(
            {
                "ours": timer_tvm(vm, "main", [xin], number),
                "ort+kwta": timer_ort(full, layers[0].x, number),
                "ort dense": timer_ort(dense, layers[0].x, number),
            },
            rounds,
        )
        rows.append(
            {
                "batch": batch,
                "layer": "whole net (Relax VM)",
                **{k_: v * 1e6 for k_, v in med.items()},
                "dense_gmacs": sum(ly.dense_macs for ly in layers) * batch / med["ours"] / 1e9,
                "wnz_gmacs": sum(ly.weight_nz_macs for ly in layers) * batch / med["ours"] / 1e9,
                "both_nz_gmacs": sum(ly.both_nz_macs for ly in layers) * batch / med["ours"] / 1e9,
                "mismatch": int((np.abs(ours_y - ref) > 1e-3 * (1 + np.abs(ref))).sum()),
                "compile_s": chain_compile_s,
            }
        )
        if extras:
            extra = extra_layers(batch)
            t0 = time.perf_counter()
            mod = build([layer.kernel for layer in extra])
            compile_s = time.perf_counter() - t0
            rows += [measure_layer(mod, layer, batch, number, rounds, compile_s) for layer in extra]
    return rows


def _out_shape(layer: Layer, batch: int) -> tuple[int, ...]:
    return {
        "gsc_l1": (batch, 64, 14, 14),
        "gsc_l2": (batch, 64, 5, 5),
        "gsc_l3": (batch, 1000),
        "gsc_l4": (batch, 12),
    }[layer.kernel.name]


def print_table(rows: list[dict]) -> None:
    hdr = (
        f"{'B':>3} {'layer':<26} {'ours us':>9} {'ort+kwta':>9} {'ort dense':>9} {'x kwta':>7} {'x dense':>7}"
        f" {'GMAC/s dense':>12} {'w-nz':>6} {'both-nz':>7} {'mism':>5}"
    )
    print(hdr)
    for r in rows:
        if "ort+kwta" not in r:
            print(f"{r['batch']:>3} {r['layer']:<26} {r['ours']:>9.1f}")
            continue
        print(
            f"{r['batch']:>3} {r['layer']:<26} {r['ours']:>9.1f} {r['ort+kwta']:>9.1f} {r['ort dense']:>9.1f}"
            f" {r['ort+kwta'] / r['ours']:>7.1f} {r['ort dense'] / r['ours']:>7.1f}"
            f" {r['dense_gmacs']:>12.1f} {r['wnz_gmacs']:>6.1f} {r['both_nz_gmacs']:>7.1f} {r['mismatch']:>5}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 64])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--no-extras", action="store_true", help="skip the kernel-family comparison rows")
    args = parser.parse_args()
    if os.environ.get("TVM_NUM_THREADS") != "1":
        print("note: set TVM_NUM_THREADS=1 for single-thread numbers (the kernels themselves are serial)")
    rows = run(args.batches, args.rounds, not args.no_extras)
    print_table(rows)


if __name__ == "__main__":
    main()
