"""IEEE guard of the cuda target: sparsecc's GPU kernels give the interpreter's inf/NaN results.

The GPU kernels are exact on finite inputs, not on non-finite ones: the weight-sparse and scatter kernels skip
zero weights (no ``0 * inf = NaN``), the k-WTA kernels' keys rank a NaN by its sign bit, and the fused ReLU /
max-pool use ``max``, which on a GPU (``fmaxf``) drops NaN. So, as on the llvm target
(``targets/llvm/ieee.py``), every layer that calls one of them runs behind a guard, a private Relax function::

    guarded(x) = if all_finite(x): fast(x) else: exact(x)

``all_finite`` is one reduction over the layer's input (``min(isfinite(x))``, legalized and scheduled by
DLight: one small kernel); its one-byte result is read by the host to choose the branch (the VM's ``If``), a
device-to-host copy that waits for the GPU. ``fast`` is the layer as the cuda lowering emits it (its GPU
kernels), ``exact`` the generic lowering of the same op (dense conv / matmul, NaN-keeping ReLU and max-pool,
a k-WTA that ranks NaN above +inf: ``targets/relax_lowering.py``), run only when the input holds an inf or a
NaN. Cost per guarded layer: one extra kernel launch and one synchronisation. ``fast_math=True`` drops the
guards (documented, opt-in).

Not covered by the guard (as on llvm): a non-finite value born *inside* a layer from finite inputs (a float
overflow of a sum) reaches that layer's fused stages on the fast path; the next layer's guard sees it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from tvm import relax, tirx
from tvm.relax import op as R

from ...compiler.ir import ops
from ...compiler.ir.types import TensorType
from ..relax_lowering import RelaxLowering, conv2d_expr, epilogue_expr, kwta_expr, linear_expr

#: builds the fast path of an op: (op, lowering, the op's input) -> the op's result
FastPath = Callable[[ops.FusedLayer | ops.KWinners, RelaxLowering, relax.Expr], relax.Expr]


class BranchLowering(RelaxLowering):
    """A lowering that emits into the body of a private Relax function of the ``parent``'s module: TIR
    kernels are added to the parent's module, constants are shared with it."""

    def __init__(self, parent: RelaxLowering, bb: relax.BlockBuilder) -> None:
        super().__init__(parent.module, parent.kernels, isa=parent.isa, fast_math=parent.fast_math)
        self.parent = parent
        self.bb = bb
        self.batch = tirx.Var("n", "int64")
        self._consts = parent._consts
        self.kernel_names = parent.kernel_names
        for name in ("flavour",):  # target-specific settings of the parent lowering
            if hasattr(parent, name):
                setattr(self, name, getattr(parent, name))

    def call_tir(self, prim_func: tirx.PrimFunc, name: str, args: Sequence[relax.Expr],
                 out_types: Sequence[TensorType]) -> list[relax.Expr]:
        func = prim_func.with_attr("op_pattern", 8)  # opaque, as in RelaxLowering.call_tir
        gv = self.parent.bb.add_func(func, name)
        self.kernel_names.append(gv.name_hint)
        batch = self.batch_of(args[0]) if args else None
        structs = [self.struct(t, batch) for t in out_types]
        result = self.emit(relax.call_tir(gv, list(args), structs if len(structs) > 1 else structs[0]), name)
        if len(structs) == 1:
            return [result]
        return [self.emit(relax.TupleGetItem(result, i)) for i in range(len(structs))]


def _private(lo: RelaxLowering, name: str, x_type: TensorType, op: ops.FusedLayer | ops.KWinners,
             body: Callable[[BranchLowering, relax.Var], relax.Expr]) -> relax.GlobalVar:
    """A private Relax function ``name(x)`` (one dataflow block) whose body ``body`` emits; added to ``lo``."""
    bb = relax.BlockBuilder()
    sub = BranchLowering(lo, bb)
    param = relax.Var("x", sub.struct(x_type))
    sub.env[id(op.input)] = param  # type: ignore[attr-defined]
    with bb.function(name, [param], private=True):
        with bb.dataflow():
            out = bb.emit_output(body(sub, param))
        bb.emit_func_output(out)
    return lo.bb.add_func(bb.get()[name], name)


def _all_finite(sub: BranchLowering, x: relax.Var) -> relax.Expr:
    finite = sub.emit(R.astype(R.isfinite(x), "int32"))
    return R.equal(R.min(finite), relax.const(1, "int32"))


def _exact(op: ops.FusedLayer | ops.KWinners, sub: BranchLowering, x: relax.Var) -> relax.Expr:
    """The op with the generic (IEEE-exact) lowering."""
    if isinstance(op, ops.KWinners):
        return kwta_expr(sub, x, op.input.type, op.boost, op.k, op.over, op.ties)
    y = sub.emit(conv2d_expr(sub, x, op) if isinstance(op, ops.SparseConv2D) else linear_expr(sub, x, op))
    return epilogue_expr(sub, op, y)


def guarded(lo: RelaxLowering, op: ops.FusedLayer | ops.KWinners, fast: FastPath) -> list[relax.Expr]:
    """``op`` as a call of its guarded function (module docstring), or its fast path alone with ``fast_math``."""
    x = op.input
    if lo.fast_math:
        return [fast(op, lo, lo.value(x))]
    base = "".join(c if c.isalnum() else "_" for c in (op.result.name or "layer"))
    name = f"ieee_{base}_{len(lo.kernel_names)}"
    check = _private(lo, f"{name}_finite", x.type, op, _all_finite)
    fast_gv = _private(lo, f"{name}_fast", x.type, op, lambda sub, param: fast(op, sub, param))
    exact_gv = _private(lo, f"{name}_exact", x.type, op, lambda sub, param: _exact(op, sub, param))

    bb = relax.BlockBuilder()
    batch = tirx.Var("n", "int64")
    param = relax.Var("x", lo.struct(x.type, batch))
    out_struct = lo.struct(op.result.type, batch)
    with bb.function(f"{name}_guarded", [param], private=True):
        ok = bb.emit(relax.Call(check, [param]), name_hint="finite")
        fast_y = relax.Var("fast", out_struct)
        exact_y = relax.Var("exact", out_struct)
        branch = relax.If(
            ok, relax.SeqExpr([relax.BindingBlock([relax.VarBinding(fast_y, relax.Call(fast_gv, [param]))])], fast_y),
            relax.SeqExpr([relax.BindingBlock([relax.VarBinding(exact_y, relax.Call(exact_gv, [param]))])], exact_y))
        bb.emit_func_output(bb.emit(branch, name_hint="y"))
    gv = lo.bb.add_func(bb.get()[f"{name}_guarded"], f"{name}_guarded")
    return [lo.emit(relax.Call(gv, [lo.value(x)]), op.result.name)]

