"""ONNX frontend: ``import_onnx(path_or_model) -> Module``."""

from .converters import supported_ops
from .importer import MAX_OPSET, MIN_OPSET, annotate_weight_sparsity, import_onnx, load_model

__all__ = ["MAX_OPSET", "MIN_OPSET", "annotate_weight_sparsity", "import_onnx", "load_model", "supported_ops"]
