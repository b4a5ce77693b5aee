"""Weight storage of an HLS conv / linear layer: which kernel and storage format it uses (from the IR's kernel and
the weight's encoding, with complementary packing where it pays) and the constant arrays of that format.
"""

from __future__ import annotations

import numpy as np

from sparsecc.compiler.ir import ops
from sparsecc.compiler.ir.types import BSR, CSC, CSR, ELL
from sparsecc.runtime.hls import formats

from ..cpp import ConstArray
from ..precision import Precision


class WeightLowering:
    """Methods of :class:`~sparsecc.targets.hls.lowering.Lowering` (see the module docstring)."""

    def _kernel_choice(self, op: ops.WeightedLayer) -> tuple[str, str]:
        """(kernel kind of the IR, storage used): storage in dense / ell / csc / complementary."""
        encoding = op.weight.type.encoding
        kernel = op.kernel if isinstance(op, ops.FusedLayer) else "dense"
        if self.dense:
            return "dense", "dense"
        compressed = isinstance(encoding, CSR | CSC | ELL | BSR)
        if compressed and kernel == "sparse_sparse" and (op.results[0].name or "") in self.gather:
            return "weight_sparse", "ell"
        if kernel == "auto":
            kernel = "weight_sparse" if compressed else "dense"
        if kernel in ("dense", "act_sparse"):
            return kernel, "dense"
        if self.options.packing == "complementary":
            return kernel, "complementary"
        if kernel == "weight_sparse" and not isinstance(encoding, CSC):
            return kernel, "ell"
        return kernel, "csc"

    def _packing(self, kernel: str, storage: str, matrix: np.ndarray, encoding: object
                 ) -> tuple[str, formats.ComplementaryWeights | None, str]:
        """Complementary packing where it pays (at most half as many groups as units); otherwise the plain
        format (ELL / CSC) with a note saying why. Returns (storage, packing, note)."""
        if storage != "complementary":
            return storage, None, ""
        rows = matrix.shape[0]
        packed = formats.pack_complementary(matrix, self.options.pack_size, max_groups=max(1, rows // 2))
        if packed is not None:
            return storage, packed, ""
        plain = "ell" if kernel == "weight_sparse" and not isinstance(encoding, CSC) else "csc"
        return plain, None, (f"complementary packing does not pay here (more than {max(1, rows // 2)} groups for "
                             f"{rows} units): stored as {plain.upper()}")

    def _weight_arrays(self, ident: str, matrix: np.ndarray, storage: str, constants: Precision,
                       encoding_name: str, what: str, lanes: int, packed: formats.ComplementaryWeights | None
                       ) -> tuple[list[ConstArray], list[str], dict[str, int], str, int]:
        """(arrays, call arguments, config members, format description, stored values) of a weight."""
        rows, cols = matrix.shape
        nnz = int(np.count_nonzero(matrix))
        converted = {
            ("ell", "csr"): " (the pass chose CSR: its rows are stored as ELL rows, padded to the widest)",
            ("ell", "bsr"): " (the pass chose BSR: only the true non-zeros of its blocks are stored, as ELL rows)",
            ("csc", "csr"): " (the pass chose CSR: converted to CSC for the scatter kernel)",
            ("csc", "ell"): " (the pass chose ELL: converted to CSC for the scatter kernel)",
            ("csc", "bsr"): " (the pass chose BSR: its true non-zeros are stored as CSC)",
        }.get((storage, encoding_name), "")
        if storage == "dense":
            note = f"{what}: dense weights w[{rows}][{cols}] ({nnz} non-zeros), one row per output unit"
            arrays = [self._const(f"{ident}_w", matrix, constants, note)]
            return arrays, [f"{ident}_w"], {}, f"dense {rows}x{cols}", rows * cols
        if storage == "ell":
            ell = formats.to_ell(matrix)
            arrays = [
                self._index(f"{ident}_idx", ell.idx, cols - 1,
                            f"{what}: ELL column indices idx[{rows}][{ell.fan_in}] (column = c*KH*KW + ky*KW + kx)"),
                self._const(f"{ident}_val", ell.val, constants,
                            f"{what}: ELL values val[{rows}][{ell.fan_in}]: the {nnz} non-zeros{converted}"),
            ]
            description = f"ELL fan_in={ell.fan_in}{converted}"
            return arrays, [f"{ident}_idx", f"{ident}_val"], {"fan_in": ell.fan_in}, description, int(ell.val.size)
        if storage == "csc":
            csc = formats.to_banked_csc(matrix, lanes)
            banked = f" banked for {lanes} lanes ({csc.slots} slots of {lanes})" if lanes > 1 else ""
            arrays = [
                self._index(f"{ident}_col_ptr", csc.col_ptr, max(csc.slots, 1),
                            f"{what}: CSC column pointers col_ptr[{cols + 1}]" + (" (in slots)" if banked else "")),
                self._index(f"{ident}_row_idx", csc.row_idx, rows,
                            f"{what}: CSC row (output unit) of each entry, row_idx[{csc.nnz}]"
                            + (f" ({rows}: empty entry)" if banked else "")),
                self._const(f"{ident}_val", csc.val, constants,
                            f"{what}: CSC values val[{csc.nnz}]: the {nnz} non-zeros, column by column{converted}"
                            f"{banked}"),
            ]
            description = f"CSC nnz={csc.nnz}{converted}{banked}"
            return arrays, [f"{ident}_col_ptr", f"{ident}_row_idx", f"{ident}_val"], {"nnz": csc.nnz}, description, \
                csc.nnz
        assert packed is not None
        arrays = [
            self._const(f"{ident}_packed_val", packed.packed_val, constants,
                        f"{what}: complementary packing, {rows} units in {packed.n_groups} groups of at most "
                        f"{packed.pack_size}: packed_val[{packed.n_groups}][{cols}] overlays each group's weights"),
            self._index(f"{ident}_packed_slot", packed.packed_slot, max(packed.pack_size - 1, 0),
                        f"{what}: slot (unit within its group) owning each packed column"),
            self._index(f"{ident}_group_rows", packed.group_rows, rows,
                        f"{what}: output unit of each slot ({rows} marks an unused slot)"),
        ]
        members = {"n_groups": packed.n_groups, "pack_size": packed.pack_size}
        return arrays, [f"{ident}_packed_val", f"{ident}_packed_slot", f"{ident}_group_rows"], members, \
            f"complementary G={packed.n_groups} P={packed.pack_size}", int(packed.packed_val.size)
