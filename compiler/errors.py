"""The one exception family of sparsecc.

Every error that sparsecc raises on purpose is a :class:`SparseccError`. It carries, where known, the ONNX
node (or IR value) name and the op type it concerns, so that a message always says *where* the problem is.
The CLI prints ``str(error)`` on one line and exits with status 2.
"""

from __future__ import annotations


class SparseccError(Exception):
    """Base class of every deliberate sparsecc error."""

    def __init__(self, message: str, *, node: str | None = None, op_type: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.node = node
        self.op_type = op_type

    def __str__(self) -> str:
        where = []
        if self.op_type:
            where.append(f"op {self.op_type}")
        if self.node:
            where.append(f"node '{self.node}'")
        prefix = f"{' '.join(where)}: " if where else ""
        return f"{prefix}{self.message}"


class FrontendError(SparseccError):
    """A model file cannot be read or converted (missing, truncated, malformed, inconsistent)."""


class UnsupportedOpError(FrontendError):
    """An ONNX op (or opset of an op) that no converter handles."""


class UnsupportedOpsetError(FrontendError):
    """The model's default-domain opset is outside the range the frontend knows."""


class IRParseError(SparseccError):
    """The textual IR is malformed; the message names line and column."""


class VerificationError(SparseccError):
    """The IR breaks an invariant (types, SSA order, op constraints)."""


class PassError(SparseccError):
    """A pass pipeline string is malformed, names an unknown pass, or a pass failed."""


class CompileError(SparseccError):
    """A target could not compile the module."""


class ArtifactError(SparseccError):
    """A compiled artifact is missing, incomplete, or from an incompatible sparsecc version."""


class InputError(SparseccError):
    """Inputs given to a compiled module or the interpreter do not match its signature."""


class DeviceUnavailableError(SparseccError):
    """The device a module was compiled for (e.g. a CUDA GPU) is not present on this machine."""


class SparseccWarning(UserWarning):
    """Base class of sparsecc's warnings: something works, but not as well as it could (the CLI prints one
    line per warning; ``--strict`` makes them errors). Carries the node and op type it concerns."""

    def __init__(self, message: str, *, node: str | None = None, op_type: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.node = node
        self.op_type = op_type

    def __str__(self) -> str:
        where = f"node '{self.node}'" if self.node else ""
        if self.op_type:
            where = f"{where} ({self.op_type})" if where else f"op {self.op_type}"
        return f"{where}: {self.message}" if where else self.message


class KWTANotRecognisedWarning(SparseccWarning):
    """A TopK feeds a mask but the subgraph is not a k-WTA the compiler recognises: the layer runs dense."""

    def __init__(self, reason: str, *, node: str | None = None, op_type: str | None = "TopK") -> None:
        super().__init__(f"k-WTA not recognised: {reason}; the layer runs dense", node=node, op_type=op_type)
        self.reason = reason
