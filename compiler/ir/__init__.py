"""The sparsecc IR: types with sparsity encodings, declared ops, printer, parser and verifier."""

from . import ops
from .attributes import StructAttr, struct_attr
from .core import Attr, Function, Module, Operand, Operation, Use, Value, lookup_op, register_op, registered_ops
from .parser import parse_module
from .printer import print_module
from .types import BSR, CSC, CSR, DTYPES, ELL, Encoding, KWTABound, SparseWeights, TensorType, WeightEncoding
from .verifier import verify_module

__all__ = [
    "BSR", "CSC", "CSR", "DTYPES", "ELL", "Attr", "Encoding", "Function", "KWTABound", "Module", "Operand",
    "Operation", "SparseWeights", "StructAttr", "TensorType", "Use", "Value", "WeightEncoding", "lookup_op",
    "ops", "parse_module", "print_module", "register_op", "registered_ops", "struct_attr", "verify_module",
]
