"""sparsecc: a compiler for doubly-sparse neural networks.

ONNX model -> IR with explicit sparsity annotations -> passes -> LLVM CPU, CUDA or Vitis HLS code.
"""

__version__ = "0.1.0"
