"""sparsecc: a compiler for doubly-sparse neural networks.

ONNX model -> IR with explicit sparsity annotations -> passes (k-WTA recognition and fusion, weight
compression, sparse-sparse kernel scheduling) -> LLVM CPU code, CUDA code (both via TVM) or Vitis HLS C++.

    import sparsecc
    model = sparsecc.compile("gsc_sparse_cnn.onnx", target="llvm")
    (log_probs,) = model.run(None, {"input": x})
    model.export("gsc_llvm/");  same = sparsecc.load("gsc_llvm/")

The heavy dependencies (TVM, onnxruntime) load only when a function that needs them is called.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_API = {
    "import_onnx": ("sparsecc.frontends.onnx", "import_onnx"),
    "interpret": ("sparsecc.compiler.interpreter", "interpret"),
    "optimize": ("sparsecc.driver.api", "optimize"),
    "compile": ("sparsecc.driver.api", "compile"),
    "load": ("sparsecc.driver.api", "load"),
    "load_module": ("sparsecc.driver.api", "load_module"),
    "check_model": ("sparsecc.driver.check", "check_model"),
    "print_module": ("sparsecc.compiler.ir", "print_module"),
    "parse_module": ("sparsecc.compiler.ir", "parse_module"),
    "SparseccError": ("sparsecc.compiler.errors", "SparseccError"),
    "Pass": ("sparsecc.compiler.passes", "Pass"),
    "register_pass": ("sparsecc.compiler.passes", "register_pass"),
}

__all__ = ["__version__", *_API]


def __getattr__(name: str) -> Any:
    if name not in _API:
        raise AttributeError(f"module 'sparsecc' has no attribute '{name}'")
    import importlib

    module, attr = _API[name]
    return getattr(importlib.import_module(module), attr)
