"""IR -> a TVM Relax module, shared by the llvm and cuda targets.

Each op of the (optimised) module becomes either

* a call of a TIR kernel that the target registered for the op (``KernelSet``): a PrimFunc specialised to
  the op's constants and sparsity, called with ``call_tir``; or
* the generic lowering below: the equivalent Relax ops (TVM legalises them to TIR), which is correct for
  every op but knows nothing of sparsity.

Constants become Relax constants, embedded in the exported library. The batch, when dynamic, is one
symbolic variable ``n``; every dynamic dimension of the IR is an expression of it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import tvm
from tvm import relax, tirx
from tvm.relax import op as R

from ..compiler.errors import CompileError
from ..compiler.ir import ops
from ..compiler.ir.core import Module, Operation, Value
from ..compiler.ir.layer import Epilogue
from ..compiler.ir.ops.sparse import KWTAStage, MaxPoolStage, ReluStage
from ..compiler.ir.types import TensorType

_TVM_DTYPE = {"f32": "float32", "f64": "float64", "f16": "float16", "i64": "int64", "i32": "int32",
              "i8": "int8", "u8": "uint8", "i1": "bool"}

#: A kernel lowering: given the op and the lowering context, emit its results (or None: use the generic one).
KernelFn = Callable[[Any, "RelaxLowering"], Sequence[relax.Expr] | None]  # takes an op of its registered class


class KernelSet:
    """A target's specialised kernels, by op class."""

    def __init__(self) -> None:
        self._kernels: dict[type[Operation], KernelFn] = {}

    def register(self, *op_classes: type[Operation]) -> Callable[[KernelFn], KernelFn]:
        def wrap(fn: KernelFn) -> KernelFn:
            for cls in op_classes:
                self._kernels[cls] = fn
            return fn

        return wrap

    def get(self, op: Operation) -> KernelFn | None:
        return self._kernels.get(type(op))


def tvm_dtype(dtype: str) -> str:
    return _TVM_DTYPE[dtype]


class RelaxLowering:
    """Builds the Relax ``main`` function for one module (see module docstring)."""

    def __init__(self, module: Module, kernels: KernelSet, progress: Callable[[str], None] | None = None,
                 isa: str | None = None, fast_math: bool = False) -> None:
        self.module = module
        self.isa = isa  # the ISA class the target's kernels are generated for (llvm), None where it has none
        self.fast_math = fast_math  # llvm: no IEEE guard around the specialised kernels (targets/llvm/ieee.py)
        self.kernels = kernels
        self.progress = progress
        self.bb = relax.BlockBuilder()
        self.batch = tirx.Var("n", "int64")
        self.env: dict[int, relax.Expr] = {}
        self._consts: dict[int, tuple[np.ndarray, relax.Constant]] = {}
        self.kernel_names: list[str] = []

    # -- shapes and values --------------------------------------------------------------------------------
    def dims(self, t: TensorType, batch: Any = None) -> list[Any]:
        """Shape as Relax dims; the dynamic dimension is ``batch`` (default: the batch variable ``n``)."""
        dynamic = self.batch if batch is None else batch
        return [dynamic if d is None else tirx.IntImm("int64", d) for d in t.shape]

    @staticmethod
    def batch_of(expr: relax.Expr) -> Any:
        """The (symbolic) leading dimension of a lowered value, e.g. ``n`` or ``n * 2`` after a reshape."""
        shape = getattr(expr.ty, "shape", None)
        return shape.values[0] if shape is not None and len(shape.values) else None

    def struct(self, t: TensorType, batch: Any = None) -> relax.TensorType:
        return relax.TensorType(self.dims(t, batch), tvm_dtype(t.dtype))

    def value(self, v: Value) -> relax.Expr:
        if id(v) not in self.env:
            owner = v.owner
            if isinstance(owner, ops.Constant):
                return self.const(owner.value)
            raise CompileError(f"value %{v.name} is used before it is lowered")
        return self.env[id(v)]

    def const(self, array: np.ndarray) -> relax.Constant:
        """A Relax constant for ``array``, shared by every use of the same array. The cache holds the array
        itself, so its id cannot be recycled by a temporary while the lowering runs."""
        key = id(array)
        if key not in self._consts:
            self._consts[key] = (array, relax.const(np.asarray(array, order="C")))
        return self._consts[key][1]

    def emit(self, expr: relax.Expr, name: str | None = None) -> relax.Var:
        return self.bb.emit(expr, name_hint=_hint(name))

    def call_tir(self, prim_func: tirx.PrimFunc, name: str, args: Sequence[relax.Expr],
                 out_types: Sequence[TensorType]) -> list[relax.Expr]:
        """Add ``prim_func`` to the module and call it; returns one Relax value per output.

        Dynamic output dimensions take the leading dimension of the first argument (the activation)."""
        func = prim_func.with_attr("op_pattern", 8)  # opaque: Relax must not analyse or fuse it
        gv = self.bb.add_func(func, _hint(name))
        self.kernel_names.append(gv.name_hint)
        batch = self.batch_of(args[0]) if args else None
        structs = [self.struct(t, batch) for t in out_types]
        call = relax.call_tir(gv, list(args), structs if len(structs) > 1 else structs[0])
        result = self.emit(call, name)
        if len(structs) == 1:
            return [result]
        return [self.emit(relax.TupleGetItem(result, i)) for i in range(len(structs))]

    # -- building -----------------------------------------------------------------------------------------
    def build(self) -> tvm.IRModule:
        func = self.module.func
        params = []
        for arg in func.args:
            var = relax.Var(arg.name or "input", self.struct(arg.type))
            params.append(var)
            self.env[id(arg)] = var
        with self.bb.function("main", params):
            with self.bb.dataflow():
                for index, op in enumerate(func.ops):
                    if isinstance(op, ops.Constant):
                        continue
                    if self.progress:
                        self.progress(f"[{index + 1}/{len(func.ops)}] lowering {op.name} %{op.results[0].name}")
                    results = self.lower(op)
                    for value, expr in zip(op.results, results, strict=True):
                        self.env[id(value)] = expr
                outs = [self.value(v) for v in func.outputs]
                out = self.bb.emit_output(outs[0] if len(outs) == 1 else relax.Tuple(outs))
            self.bb.emit_func_output(out)
        return self.bb.get()

    def lower(self, op: Operation) -> Sequence[relax.Expr]:
        kernel = self.kernels.get(op)
        if kernel is not None:
            results = kernel(op, self)
            if results is not None:
                return results
        generic = GENERIC.get(type(op))
        if generic is None:
            raise CompileError(f"no lowering for {op.name}", op_type=op.name)
        return [self.emit(generic(op, self), op.results[0].name)] if not isinstance(op, ops.TopK) \
            else generic(op, self)


def _hint(name: str | None) -> str:
    cleaned = "".join(c if c.isalnum() or c == "_" else "_" for c in (name or "v"))
    return cleaned if cleaned and not cleaned[0].isdigit() else f"v_{cleaned}"


# -- generic lowering: IR op -> Relax expression -------------------------------------------------------------
Generic = Callable[[Any, RelaxLowering], Any]  # takes an op of its registered class
GENERIC: dict[type[Operation], Generic] = {}


def generic(*classes: type[Operation]) -> Callable[[Generic], Generic]:
    def wrap(fn: Generic) -> Generic:
        for cls in classes:
            GENERIC[cls] = fn
        return fn

    return wrap


def _channel(lo: RelaxLowering, v: Value, rank: int) -> relax.Expr:
    """A per-channel vector reshaped to broadcast over axis 1 of a rank-``rank`` tensor."""
    shape = (1, -1) + (1,) * (rank - 2)
    owner = v.owner
    if isinstance(owner, ops.Constant):
        return lo.const(np.asarray(owner.value).reshape(shape))
    return R.reshape(lo.value(v), shape)


def conv2d_expr(lo: RelaxLowering, x: relax.Expr, op: ops.ConvLike) -> relax.Expr:
    pads = op.pads
    y = R.nn.conv2d(x, lo.value(op.weight), strides=op.strides, padding=(pads[0], pads[1], pads[2], pads[3]),
                    dilation=op.dilations, groups=op.groups)
    bias = op.bias
    return y if bias is None else R.add(y, _channel(lo, bias, 4))


def linear_expr(lo: RelaxLowering, x: relax.Expr, op: ops.WeightedLayer) -> relax.Expr:
    w = op.weight
    assert isinstance(w.owner, ops.Constant)
    y = R.matmul(x, lo.const(np.ascontiguousarray(w.owner.value.T)))
    bias = op.bias
    return y if bias is None else R.add(y, lo.value(bias))


def kwta_expr(lo: RelaxLowering, x: relax.Expr, x_type: TensorType, boost: Value | None, k: int,
              over: tuple[int, ...], ties: str) -> relax.Expr:
    """Generic k-WTA with Relax ops: move the selection axes last, flatten them, TopK, threshold, where."""
    rank = x_type.rank
    rest = [a for a in range(rank) if a not in over]
    perm = rest + list(over)
    boosted = x if boost is None else lo.emit(R.multiply(x, lo.value(boost)))
    moved = boosted if perm == list(range(rank)) else lo.emit(R.permute_dims(boosted, perm))
    group = math.prod(x_type.shape[a] for a in over)  # type: ignore[misc]
    lead = [lo.dims(x_type, lo.batch_of(x))[a] for a in rest]
    flat = lo.emit(R.reshape(moved, [*lead, group]))
    # NaN ranks above +inf (the interpreter's rule): rank by keys with NaN as +inf
    is_nan = lo.emit(R.isnan(flat))
    keys = lo.emit(R.where(is_nan, relax.const(np.asarray(np.inf, dtype=x_type.numpy_dtype)), flat))
    if ties == "keep":
        values = lo.emit(R.topk(keys, k, axis=-1, ret_type="values", largest=True))
        thr = lo.emit(R.strided_slice(values, axes=[len(lead)], begin=[k - 1], end=[k]))
        # k or more NaN: the threshold is NaN and nothing is below it, so every unit stays
        nans = lo.emit(R.sum(R.astype(is_nan, "int32"), axis=[len(lead)], keepdims=True))
        off = lo.emit(R.logical_and(R.less(flat, thr), R.less(nans, relax.const(k, "int32"))))
    else:
        idx = lo.emit(R.topk(keys, k, axis=-1, ret_type="indices", largest=True, dtype="int64"))
        ones = lo.emit(R.full_like(flat, relax.const(True, "bool"), dtype="bool"))
        zeros = lo.emit(R.full_like(idx, relax.const(False, "bool"), dtype="bool"))
        off = lo.emit(R.scatter_elements(ones, idx, zeros, axis=len(lead)))
    moved_shape = [lo.dims(x_type, lo.batch_of(x))[a] for a in perm]
    off = lo.emit(R.reshape(off, moved_shape))
    if perm != list(range(rank)):
        off = lo.emit(R.permute_dims(off, list(np.argsort(perm))))
    return R.where(off, relax.const(np.zeros((), dtype=x_type.numpy_dtype)), x)


def pool_expr(x: relax.Expr, kernel: Sequence[int], strides: Sequence[int], pads: Sequence[int], ceil: bool,
              mode: str, count_include_pad: bool = False) -> relax.Expr:
    padding = (pads[0], pads[1], pads[2], pads[3])
    if mode == "max":  # a window holding a NaN gives NaN (the interpreter's rule)
        nan_in = R.nn.max_pool2d(R.astype(R.isnan(x), "float32"), pool_size=kernel, strides=strides,
                                 padding=padding, ceil_mode=ceil)
        pooled = R.nn.max_pool2d(x, pool_size=kernel, strides=strides, padding=padding, ceil_mode=ceil)
        return R.where(R.greater(nan_in, relax.const(0.0, "float32")), relax.const(np.float32(np.nan)), pooled)
    return R.nn.avg_pool2d(x, pool_size=kernel, strides=strides, padding=padding, ceil_mode=ceil,
                           count_include_pad=count_include_pad)


def epilogue_expr(lo: RelaxLowering, op: ops.FusedLayer, y: relax.Expr) -> relax.Expr:
    """Apply ``op``'s epilogue stages to the layer output ``y`` with generic Relax ops."""
    from ..compiler.ir.ops.nn import conv2d_output_shape, linear_output_shape

    shape = conv2d_output_shape(op) if isinstance(op, ops.SparseConv2D) else linear_output_shape(op)
    current = TensorType(shape, op.result.type.dtype)
    for stage in Epilogue.of_op(op).stages:
        y = lo.emit(y)
        if isinstance(stage, ReluStage):
            y = relu_expr(y)
        elif isinstance(stage, KWTAStage):
            y = kwta_expr(lo, y, current, op.boost, stage.k, stage.over, stage.ties)
        elif isinstance(stage, MaxPoolStage):
            y = pool_expr(y, stage.kernel, stage.strides, stage.pads, stage.ceil_mode, "max")
            current = TensorType(pooled_shape(current.shape, stage), current.dtype)
    return y


def pooled_shape(shape: tuple[int | None, ...], stage: MaxPoolStage) -> tuple[int | None, ...]:
    """The NCHW shape after a max-pool epilogue stage."""
    from ..compiler.ir.shapes import window_output_dim

    n, c, h, w = shape
    (kh, kw), (sh, sw), (pt, pl, pb, pr) = stage.kernel, stage.strides, stage.pads
    return (n, c, window_output_dim(h, kh, sh, pt, pb, 1, stage.ceil_mode),
            window_output_dim(w, kw, sw, pl, pr, 1, stage.ceil_mode))


@generic(ops.Conv2D)
def _conv(op: ops.Conv2D, lo: RelaxLowering) -> relax.Expr:
    return conv2d_expr(lo, lo.value(op.input), op)


@generic(ops.Linear)
def _linear(op: ops.Linear, lo: RelaxLowering) -> relax.Expr:
    return linear_expr(lo, lo.value(op.input), op)


@generic(ops.SparseConv2D)
def _sparse_conv(op: ops.SparseConv2D, lo: RelaxLowering) -> relax.Expr:
    return epilogue_expr(lo, op, conv2d_expr(lo, lo.value(op.input), op))


@generic(ops.SparseLinear)
def _sparse_linear(op: ops.SparseLinear, lo: RelaxLowering) -> relax.Expr:
    return epilogue_expr(lo, op, linear_expr(lo, lo.value(op.input), op))


@generic(ops.KWinners)
def _kwta(op: ops.KWinners, lo: RelaxLowering) -> relax.Expr:
    x = op.input
    return kwta_expr(lo, lo.value(x), x.type, op.boost, op.k, op.over, op.ties)


@generic(ops.BatchNorm)
def _batch_norm(op: ops.BatchNorm, lo: RelaxLowering) -> relax.Expr:
    x = op.input
    r = x.type.rank
    eps = relax.const(np.asarray(op.epsilon, dtype=x.type.numpy_dtype))
    centred = R.subtract(lo.value(x), _channel(lo, op.mean, r))
    scaled = R.divide(centred, R.sqrt(R.add(_channel(lo, op.var, r), eps)))
    return R.add(R.multiply(scaled, _channel(lo, op.scale, r)), _channel(lo, op.bias, r))


@generic(ops.ChannelAffine)
def _affine(op: ops.ChannelAffine, lo: RelaxLowering) -> relax.Expr:
    x = op.input
    r = x.type.rank
    return R.add(R.multiply(lo.value(x), _channel(lo, op.scale, r)), _channel(lo, op.shift, r))


@generic(ops.MaxPool2D)
def _maxpool(op: ops.MaxPool2D, lo: RelaxLowering) -> relax.Expr:
    return pool_expr(lo.value(op.input), op.kernel, op.strides, op.pads, op.ceil_mode, "max")


@generic(ops.AvgPool2D)
def _avgpool(op: ops.AvgPool2D, lo: RelaxLowering) -> relax.Expr:
    return pool_expr(lo.value(op.input), op.kernel, op.strides, op.pads, op.ceil_mode, "avg", op.count_include_pad)


@generic(ops.GlobalAvgPool2D)
def _global_avgpool(op: ops.GlobalAvgPool2D, lo: RelaxLowering) -> relax.Expr:
    return R.mean(lo.value(op.input), axis=[2, 3], keepdims=True)


def relu_expr(x: relax.Expr) -> relax.Expr:
    """``max(x, 0)`` that keeps NaN (TVM's relu is a compare-select that turns NaN into 0)."""
    return R.where(R.less(x, relax.const(0.0, "float32")), relax.const(0.0, "float32"), x)


@generic(ops.Relu)
def _relu(op: ops.Relu, lo: RelaxLowering) -> relax.Expr:
    return relu_expr(lo.value(op.input))


@generic(ops.Softmax)
def _softmax(op: ops.Softmax, lo: RelaxLowering) -> relax.Expr:
    return R.nn.softmax(lo.value(op.input), axis=op.axis)


@generic(ops.LogSoftmax)
def _log_softmax(op: ops.LogSoftmax, lo: RelaxLowering) -> relax.Expr:
    return R.nn.log_softmax(lo.value(op.input), axis=op.axis)


@generic(ops.Identity, ops.Dropout)
def _identity(op: ops.Identity | ops.Dropout, lo: RelaxLowering) -> relax.Expr:
    return lo.value(op.input)


_BINARY = {ops.Add: R.add, ops.Sub: R.subtract, ops.Mul: R.multiply, ops.Less: R.less,
           ops.LessEqual: R.less_equal, ops.Greater: R.greater, ops.GreaterEqual: R.greater_equal,
           ops.Equal: R.equal, ops.And: R.logical_and, ops.Or: R.logical_or, ops.MatMul: R.matmul}


@generic(*_BINARY)
def _binary(op: ops.BinaryOp | ops.MatMul, lo: RelaxLowering) -> relax.Expr:
    return _BINARY[type(op)](lo.value(op.lhs), lo.value(op.rhs))


@generic(ops.Div)
def _div(op: ops.Div, lo: RelaxLowering) -> relax.Expr:
    a, b = lo.value(op.lhs), lo.value(op.rhs)
    if op.result.type.dtype in ("f32", "f64", "f16"):
        return R.divide(a, b)
    return R.astype(R.trunc(R.divide(R.astype(a, "float64"), R.astype(b, "float64"))), tvm_dtype(op.result.type.dtype))


_UNARY = {ops.Exp: R.exp, ops.Neg: R.negative, ops.Sqrt: R.sqrt, ops.Not: R.logical_not}


@generic(*_UNARY)
def _unary(op: ops.UnaryOp, lo: RelaxLowering) -> relax.Expr:
    return _UNARY[type(op)](lo.value(op.input))


@generic(ops.Cast)
def _cast(op: ops.Cast, lo: RelaxLowering) -> relax.Expr:
    return R.astype(lo.value(op.input), tvm_dtype(op.to))


@generic(ops.Where)
def _where(op: ops.Where, lo: RelaxLowering) -> relax.Expr:
    return R.where(lo.value(op.cond), lo.value(op.a), lo.value(op.b))


@generic(ops.Reshape)
def _reshape(op: ops.Reshape, lo: RelaxLowering) -> relax.Expr:
    return R.reshape(lo.value(op.input), list(op.shape))


@generic(ops.Transpose)
def _transpose(op: ops.Transpose, lo: RelaxLowering) -> relax.Expr:
    return R.permute_dims(lo.value(op.input), list(op.perm))


@generic(ops.Concat)
def _concat(op: ops.Concat, lo: RelaxLowering) -> relax.Expr:
    return R.concat([lo.value(v) for v in op.inputs], axis=op.axis)


@generic(ops.Slice)
def _slice(op: ops.Slice, lo: RelaxLowering) -> relax.Expr:
    x = op.input
    begins, ends, axes, steps = [], [], [], []
    for start, end, axis, step in zip(op.starts, op.ends, op.axes, op.steps, strict=True):
        size = x.type.shape[axis]
        if size is None:
            raise CompileError("slicing along the dynamic batch is not supported", op_type=op.name)
        r = range(size)[slice(start, end, step)]
        axes.append(axis)
        steps.append(step)
        begins.append(r.start if len(r) else 0)
        ends.append(r.stop if r.stop >= 0 or step > 0 else -size - 1)
    return R.strided_slice(lo.value(x), axes=axes, begin=begins, end=ends, strides=steps)


@generic(ops.Gather)
def _gather(op: ops.Gather, lo: RelaxLowering) -> relax.Expr:
    x = op.input
    axis = op.axis % x.type.rank
    idx = op.indices
    if isinstance(idx.owner, ops.Constant) and x.type.shape[axis] is not None:
        data = np.asarray(idx.owner.value) % x.type.shape[axis]
        return R.take(lo.value(x), lo.const(data.astype(np.int64)), axis=axis)
    return R.take(lo.value(x), lo.value(idx), axis=axis)


@generic(ops.TopK)
def _topk(op: ops.TopK, lo: RelaxLowering) -> list[relax.Expr]:
    both = lo.emit(R.topk(lo.value(op.input), op.k, axis=op.axis, ret_type="both", largest=op.largest,
                          dtype="int64"))
    return [lo.emit(relax.TupleGetItem(both, 0)), lo.emit(relax.TupleGetItem(both, 1))]


@generic(ops.ScatterElements)
def _scatter(op: ops.ScatterElements, lo: RelaxLowering) -> relax.Expr:
    return R.scatter_elements(lo.value(op.data), lo.value(op.indices), lo.value(op.updates), axis=op.axis)


@generic(ops.FullLike)
def _full_like(op: ops.FullLike, lo: RelaxLowering) -> relax.Expr:
    dtype = tvm_dtype(op.dtype)
    return R.full_like(lo.value(op.like), relax.const(np.asarray(op.value).astype(dtype)), dtype=dtype)


@generic(ops.Expand)
def _expand(op: ops.Expand, lo: RelaxLowering) -> relax.Expr:
    x = lo.value(op.input)
    return R.broadcast_to(x, lo.dims(op.result.type, lo.batch_of(x)))


def relax_pipeline(target: tvm.target.Target, schedule: Sequence[tvm.transform.Pass] = (),
                   reshape_views: bool = False, cuda_graph: bool = False) -> tvm.transform.Pass:
    """TVM's default Relax pipeline minus ``RewriteDataflowReshape``, whose analysis only understands
    schedulable (s_tir) functions and rejects sparsecc's plain-loop kernels (reshapes stay copies unless
    ``reshape_views``: then ``relax.reshape`` is not legalized into a copy kernel and the VM lowers it to
    ``vm.builtin.reshape``, a view of the same buffer).
    ``schedule``: passes that schedule the legalized generic ops after fusion (the cuda target's DLight).
    ``cuda_graph``: lift the static-shape regions into CUDA graphs (TVM's ``RewriteCUDAGraph``, captured on the
    first run and replayed after)."""
    from tvm.relax import transform as rt

    @tvm.transform.module_pass(opt_level=0)
    def pipeline(mod: tvm.IRModule, _ctx: tvm.transform.PassContext) -> tvm.IRModule:
        with target:
            return tvm.transform.Sequential([
                relax.backend.DispatchSampling(), relax.backend.DispatchSortScan(),
                rt.LegalizeOps(skip_ops=["relax.reshape"] if reshape_views else None),
                rt.AnnotateTIROpPattern(), rt.FoldConstant(), rt.FuseOps(), rt.FuseTIR(), *schedule,
                rt.ToNonDataflow(), rt.RemovePurityChecking(), rt.CallTIRRewrite(), rt.StaticPlanBlockMemory(),
                *([rt.RewriteCUDAGraph()] if cuda_graph else []), rt.LowerAllocTensor(), rt.KillAfterLastUse(),
                rt.LowerRuntimeBuiltin(), rt.ComputePrimValue(), rt.VMShapeLower(), rt.AttachGlobalSymbol(),
            ])(mod)

    return pipeline
