"""The constant op."""

from __future__ import annotations

import numpy as np

from ...errors import VerificationError
from ..core import Operation, attr_def, register_op
from ..types import ELL, TensorType, WeightEncoding, dtype_of_numpy
from ..weights import measure_weight_sparsity


@register_op
class Constant(Operation):
    """A constant tensor (weights, biases, boost factors, small index vectors).

    The result type's shape and dtype are those of ``value``. Its encoding is a recorded fact or decision
    about the zeros (``#sparse`` from the frontend, a storage format from ``compress-weights``); the
    verifier checks that it is true of the data: the density matches, a fixed fan-in holds in every row,
    an ELL row width is enough for the fullest row.
    """

    name = "const"
    value = attr_def("tensor")  # read-only

    @classmethod
    def of(cls, value: np.ndarray, *, encoding: WeightEncoding | None = None, name: str | None = None) -> Constant:
        value = np.asarray(value)
        op = cls([], {"value": value}, [TensorType(value.shape, dtype_of_numpy(value.dtype), encoding)])
        op.result.name = name
        return op

    def infer_types(self) -> list[TensorType]:
        value = self.value
        return [TensorType(value.shape, dtype_of_numpy(value.dtype))]

    def verify(self) -> None:
        enc = self.result.type.encoding
        if enc is None:
            return
        if not isinstance(enc, WeightEncoding):
            raise VerificationError(f"constant cannot carry the activation encoding #{enc.mnemonic}")
        measured = measure_weight_sparsity(self.value)
        if enc.density != measured.density:
            raise VerificationError(
                f"#{enc.mnemonic} records density {enc.density} but the data has {measured.density}"
            )
        fan_in = getattr(enc, "fan_in", None)
        if isinstance(enc, ELL):
            if measured.max_row_nnz > enc.fan_in:
                raise VerificationError(f"#ell fan_in={enc.fan_in} but a row holds {measured.max_row_nnz} non-zeros")
        elif fan_in is not None and fan_in != measured.fan_in:
            raise VerificationError(f"#{enc.mnemonic} records fan_in={fan_in} but the rows hold {measured.fan_in}")

    def types_match(self) -> bool:
        """The result type is that of the value, with any (verified) encoding."""
        return self.result.type.with_encoding(None) == self.infer_types()[0]
