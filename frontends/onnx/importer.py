"""ONNX model -> sparsecc IR.

``import_onnx(path_or_model)`` loads the model (missing, truncated or malformed files are reported as
:class:`FrontendError`), runs the ONNX checker and shape inference, converts node by node with the
converter registered for the model's opset, cross-checks every static shape it infers against ONNX's
shape inference, and then cleans up: constants folded, no-ops removed, k-WTA subgraphs recognised as one
``sparse.kwta`` op (by meaning, in the forms users' code and both torch exporters write: see
``compiler/passes/recognize_kwta.py``; the importer does not rely on ``sparsecc.frontends.torch``), and the
measured sparsity of every conv/linear weight recorded in its type (``#sparse<density, fan_in>``). A TopK
(or ArgMax) that feeds a mask but is not recognised stays as it is (it runs dense) and is reported by one
:class:`~sparsecc.compiler.errors.KWTANotRecognisedWarning` naming its ONNX node and what did not match.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import onnx
from google.protobuf.message import DecodeError

from ...compiler.errors import FrontendError, SparseccError, UnsupportedOpError, UnsupportedOpsetError
from ...compiler.ir import ops
from ...compiler.ir.core import Function, Module, Operation, Value
from ...compiler.ir.types import SparseWeights
from ...compiler.ir.verifier import verify_module
from ...compiler.ir.weights import measure_weight_sparsity
from ...compiler.passes.recognize_kwta import RecognizeKWTAPass, warn_unrecognised
from .context import ImportContext, SymVec, type_of_value_info
from .converters import find_converter, ir_dtype_check, supported_ops

MIN_OPSET, MAX_OPSET = 11, 23


def load_model(model: str | os.PathLike[str] | onnx.ModelProto) -> onnx.ModelProto:
    if isinstance(model, onnx.ModelProto):
        return model
    path = Path(model)
    if not path.exists():
        raise FrontendError(f"model file not found: {path}")
    if not path.is_file():
        raise FrontendError(f"model path is not a file: {path}")
    try:
        proto = onnx.load(str(path))
    except onnx.checker.ValidationError as exc:  # external data missing, not a regular file, or outside the dir
        raise FrontendError(f"{path}: bad external data: {str(exc).strip().splitlines()[0]}") from None
    except (DecodeError, ValueError, RuntimeError, OSError) as exc:
        raise FrontendError(f"{path} is not a readable ONNX model (truncated or corrupt?): {exc}") from None
    if not proto.HasField("graph"):
        raise FrontendError(f"{path} holds no ONNX graph (truncated or not an ONNX file?)")
    return proto


def default_opset(proto: onnx.ModelProto) -> int:
    versions = [o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")]
    if not versions:
        raise UnsupportedOpsetError("the model imports no default-domain (ai.onnx) opset")
    version = versions[0]
    if not MIN_OPSET <= version <= MAX_OPSET:
        raise UnsupportedOpsetError(f"opset {version} is not supported (supported: {MIN_OPSET}..{MAX_OPSET})")
    return version


def _pretty(name: str) -> str:
    """A readable IR name hint for an ONNX tensor name: '/conv1/Conv_output_0' -> 'conv1.Conv'."""
    name = re.sub(r"_output_0$", "", name.lstrip("/")).replace("/", ".").replace("::", "_")
    return name or "v"


def _model_name(model: object, proto: onnx.ModelProto) -> str:
    if isinstance(model, str | os.PathLike):
        return Path(model).stem
    return proto.graph.name or "model"


def _infer(proto: onnx.ModelProto) -> onnx.ModelProto:
    try:
        return onnx.shape_inference.infer_shapes(proto, data_prop=True)
    except (onnx.shape_inference.InferenceError, onnx.checker.ValidationError, ValueError) as exc:
        # ValueError: an unknown element type, or a string field that is not UTF-8
        raise FrontendError(f"ONNX shape inference failed: {str(exc).splitlines()[0]}") from None


def _shapes(inferred: onnx.ModelProto) -> dict[str, tuple[int | None, ...]]:
    shapes = {}
    for vi in list(inferred.graph.value_info) + list(inferred.graph.output):
        tt = vi.type.tensor_type
        if vi.type.HasField("tensor_type") and tt.HasField("shape"):
            shapes[vi.name] = tuple(d.dim_value if d.HasField("dim_value") else None for d in tt.shape.dim)
    return shapes


def _check_against_onnx(node: onnx.NodeProto, name: str, value: Value, expected: tuple[int | None, ...] | None) -> None:
    if expected is None:
        return
    got = value.type.shape
    differs = len(got) != len(expected) or any(
        e is not None and g is not None and e != g for g, e in zip(got, expected, strict=True))
    if differs:
        raise FrontendError(f"output '{name}' has shape {list(got)} in the IR but {list(expected)} by ONNX shape "
                            "inference", node=node.name or None, op_type=node.op_type)


def import_onnx(model: str | os.PathLike[str] | onnx.ModelProto, *, cleanup: bool = True) -> Module:
    """Import an ONNX model (path or ModelProto) as a verified IR module (see module docstring)."""
    original = load_model(model)
    # Shape inference first: it fills in output shapes that onnxruntime does not require but the checker does.
    proto = _infer(original)
    try:
        onnx.checker.check_model(proto)
    except (onnx.checker.ValidationError, UnicodeDecodeError) as exc:  # the latter: a string field is not UTF-8
        raise FrontendError(f"invalid ONNX model: {(str(exc).splitlines() or [type(exc).__name__])[0]}") from None
    opset = default_opset(proto)
    graph = proto.graph
    shapes = _shapes(proto)
    init_names = {t.name for t in graph.initializer}
    args = []
    for vi in graph.input:
        if vi.name in init_names:
            continue
        args.append(Value(type_of_value_info(vi), vi.name))
    _check_one_batch([vi for vi in graph.input if vi.name not in init_names])
    func = Function("main", args)
    ctx = ImportContext(func, opset)
    for arg in args:
        ctx.values[arg.name] = arg  # type: ignore[index]
    for tensor in graph.initializer:
        try:
            data = onnx.numpy_helper.to_array(tensor)
        except (ValueError, TypeError, KeyError) as exc:  # KeyError: an unknown element type
            raise FrontendError(f"initializer '{tensor.name}' cannot be read: {exc}") from None
        ir_dtype_check(data, f"initializer '{tensor.name}'")
        ctx.values[tensor.name] = ctx.constant(data, _pretty(tensor.name))
    node_of: dict[Operation, tuple[str, str]] = {}  # op -> (ONNX node name, op type), for diagnostics
    for node in graph.node:
        _convert_node(ctx, node, shapes, node_of)
    outputs = []
    for vi in graph.output:
        entry = ctx.entry(vi.name)
        if isinstance(entry, SymVec):
            ctx.node = None
            entry = ctx.constant(np.array(entry.items, dtype=np.int64)) if not any(
                not isinstance(i, int) for i in entry.items) else None
            if entry is None:
                raise UnsupportedOpError(f"graph output '{vi.name}' is a shape that depends on the batch size")
        outputs.append(entry)
    func.set_outputs(outputs, [vi.name for vi in graph.output])
    module = Module(_model_name(model, original), func)
    verify_module(module)
    if cleanup:
        RecognizeKWTAPass(warn=False).apply(module)
        warn_unrecognised(module, node_of)
        annotate_weight_sparsity(module)
        verify_module(module)
    return module


def _check_one_batch(inputs: list[onnx.ValueInfoProto]) -> None:
    """sparsecc has one dynamic batch shared by all inputs: inputs whose axis 0 carry different symbolic
    names (independent sizes) are refused here rather than having valid feeds rejected at run time."""
    names: dict[str, str] = {}
    for vi in inputs:
        dims = vi.type.tensor_type.shape.dim
        if dims and dims[0].HasField("dim_param") and dims[0].dim_param:
            names.setdefault(dims[0].dim_param, vi.name)
    if len(names) > 1:
        listed = ", ".join(f"'{inp}' ({dim})" for dim, inp in names.items())
        raise FrontendError(f"inputs have independent dynamic batch dimensions: {listed}; sparsecc supports one "
                            "batch dimension shared by all inputs (give them the same dim_param, or fix the sizes)")


def _convert_node(ctx: ImportContext, node: onnx.NodeProto, shapes: dict[str, tuple[int | None, ...]],
                  node_of: dict[Operation, tuple[str, str]]) -> None:
    where = {"node": node.name or (node.output[0] if node.output else None), "op_type": node.op_type}
    if node.domain not in ("", "ai.onnx"):
        raise UnsupportedOpError(f"custom-domain op '{node.domain}.{node.op_type}' is not supported", **where)
    convert = find_converter(node.op_type, ctx.opset)
    if convert is None:
        raise UnsupportedOpError(
            f"unsupported op at opset {ctx.opset}; supported ops: {', '.join(supported_ops())}", **where)
    ctx.node = node
    try:
        outputs = list(convert(ctx))
    except SparseccError as exc:
        exc.node = exc.node or where["node"]
        exc.op_type = exc.op_type or node.op_type
        raise
    except (ValueError, TypeError, IndexError, KeyError, ArithmeticError) as exc:
        # malformed attributes or inputs that slipped past the checker: report them against the node
        raise FrontendError(f"cannot convert: {type(exc).__name__}: {exc}", **where) from None
    for i, name in enumerate(node.output):
        if not name:
            continue
        value = outputs[i] if i < len(outputs) else None
        if value is None:
            raise UnsupportedOpError(f"output #{i} is not supported", **where)
        if isinstance(value, Value):
            _check_against_onnx(node, name, value, shapes.get(name))
            if value.owner is not None and value.owner not in node_of:
                node_of[value.owner] = (where["node"] or name, node.op_type)
            if value.name is None or value.name == name:
                value.name = _pretty(name)
        ctx.values[name] = value


def annotate_weight_sparsity(module: Module) -> None:
    """Record the measured sparsity (density, fixed fan-in) of every conv/linear weight with zeros."""
    for op in module.walk((ops.Conv2D, ops.Linear, ops.SparseConv2D, ops.SparseLinear)):
        weight = op.weight
        if not isinstance(weight.owner, ops.Constant) or weight.type.encoding is not None:
            continue
        m = measure_weight_sparsity(weight.owner.value)
        if m.density < 1.0:
            weight.set_type(weight.type.with_encoding(SparseWeights(m.density, m.fan_in)))
