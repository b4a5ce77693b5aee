// sparsecc HLS kernel library — weight storage formats (written by the generator, read by the kernels).
//
// A weight is viewed as a matrix with one ROW per output unit (O = out_features / out_channels) and one
// COLUMN per input: COLS = in_features for linear; COLS = in_channels * kernel_h * kernel_w for conv2d,
// where column (c, ky, kx) has index c * kernel_h * kernel_w + ky * kernel_w + kx (OIHW flattened).
// Index arrays may use any unsigned integer type (unsigned, uint16_t, ap_uint<B>) wide enough for their range.
//
// dense   w[O][COLS]
// ELL     idx[O][fan_in], val[O][fan_in]: the non-zeros of row o are (idx[o][f], val[o][f]); a row with
//         fewer than fan_in non-zeros is padded with val = 0 (idx any valid column). fan_in >= 1.
// CSC     col_ptr[COLS + 1], row_idx[nnz], val[nnz]: the non-zeros of column j are at positions
//         col_ptr[j] .. col_ptr[j + 1] - 1, each row at most once per column. nnz >= 1 (an all-zero
//         weight is stored as one explicit zero).
// banked CSC (the sparse-sparse kernels, CONFIG::lanes = L dividing O): the rows are split into L banks of
//         O / L consecutive rows; a column is a run of slots of L entries, entry l of a slot holding a
//         non-zero of bank l or the empty marker row O (value 0). col_ptr counts slots; row_idx / val hold
//         slots * L entries (nnz = slots * L). Lane l only ever updates accumulator bank l. L = 1 is CSC.
//
// Complementary (Numenta's "complementary sparsity" packing; n_groups = G, pack_size = P):
//   The output units are partitioned into G groups of at most P units whose non-zero columns are pairwise
//   disjoint. Each group is overlaid into ONE dense filter; a routing index says which unit of the group
//   owns each column, so one dense multiply pass over the columns computes all P units of the group and
//   each product is sent to its unit's accumulator.
//     packed_val [G][COLS]  the weight of the group's unit that has a non-zero in this column, else 0;
//     packed_slot[G][COLS]  the slot (0 .. P-1) of that unit within the group; 0 where packed_val == 0;
//     group_rows [G][P]     the output unit (row) in each slot; the value O marks an unused slot.
//   Every output unit appears in exactly one slot of one group (an all-zero unit too: it yields its bias).
//   Work: G * COLS multiplies per output pixel instead of O * COLS (dense) — the FPGA-friendly form of
//   weight sparsity: P-fold fewer MACs with dense, regular access.
#ifndef SPARSECC_FORMATS_H
#define SPARSECC_FORMATS_H

#include "common.h"

namespace sparsecc {
namespace detail {

/// C-simulation check of a complementary packing: every one of the O units sits in exactly one slot.
template <unsigned O, unsigned G, unsigned P, class row_t>
void check_packed_rows(const row_t group_rows[G][P]) {
#ifndef __SYNTHESIS__
    unsigned seen[O] = {};
    for (unsigned g = 0; g < G; g++) {
        for (unsigned s = 0; s < P; s++) {
            const unsigned r = group_rows[g][s];
            assert(r <= O && "group_rows: unit index out of range");
            if (r < O) seen[r]++;
        }
    }
    for (unsigned r = 0; r < O; r++) assert(seen[r] == 1 && "group_rows: each unit must be in exactly one slot");
#else
    (void)group_rows;
#endif
}

}  // namespace detail
}  // namespace sparsecc

#endif  // SPARSECC_FORMATS_H
