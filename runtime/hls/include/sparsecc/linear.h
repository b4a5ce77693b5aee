// sparsecc HLS kernel library — linear (fully connected) layers: y = epilogue(W . x + b).
//
// CONFIG (derive from linear_defaults):
//     in_features, out_features       required
//     fan_in                          linear_ell
//     nnz                             linear_sparse_sparse
//     n_groups, pack_size             linear_complementary(_sparse)
//     typedef ... accum_t             accumulator type (required)
//     epilogue members                affine, relu, kwta_config, scale_t (see epilogue.h); no pooling
//
// Every kernel has the signature  (x, y, <weight arrays>, bias, scale = nullptr, shift = nullptr,
// boost = nullptr); scale / shift are read when CONFIG::affine, boost when the k-WTA config has boost.
// Weight formats: see formats.h. Constant arrays may hold plain values or stored words (common.h).
//
// Cycle cost per sample (pipelined inner loops, II = 1; plus the epilogue):
//     dense                 O * I
//     ell                   O * fan_in
//     act_sparse            I (compaction) + (number of active inputs) * O  ~ I + a * O * I
//     sparse_sparse         I (compaction) + sum over active inputs of their column's non-zeros
//                           ~ I + a * nnz for activation density a
//     complementary         G * I
//     complementary_sparse  I + (number of active inputs) * G
#ifndef SPARSECC_LINEAR_H
#define SPARSECC_LINEAR_H

#include "common.h"
#include "epilogue.h"
#include "formats.h"

namespace sparsecc {

/// Base of every linear layer config.
struct linear_defaults : epilogue_defaults {};

/// Number of outputs a fused linear layer writes.
template <class CONFIG>
constexpr unsigned linear_output_size() {
    return epilogue_output<CONFIG, CONFIG::out_features, 1, 1>::size;
}

namespace detail {

template <class CONFIG, class data_t, class weight_t, class bias_t, class acc_t>
void linear_dense_acc(const data_t x[CONFIG::in_features],
                      const weight_t w[CONFIG::out_features][CONFIG::in_features],
                      const bias_t bias[CONFIG::out_features], acc_t acc[CONFIG::out_features]) {
linear_dense_rows:
    for (unsigned o = 0; o < CONFIG::out_features; o++) {
        acc_t a = value_of(bias[o]);
    linear_dense_mac:
        for (unsigned i = 0; i < CONFIG::in_features; i++) {
#pragma HLS PIPELINE II = 1
            a += value_of(w[o][i]) * x[i];
        }
        acc[o] = a;
    }
}

template <class CONFIG, class data_t, class index_t, class weight_t, class bias_t, class acc_t>
void linear_ell_acc(const data_t x[CONFIG::in_features], const index_t idx[CONFIG::out_features][CONFIG::fan_in],
                    const weight_t val[CONFIG::out_features][CONFIG::fan_in],
                    const bias_t bias[CONFIG::out_features], acc_t acc[CONFIG::out_features]) {
linear_ell_rows:
    for (unsigned o = 0; o < CONFIG::out_features; o++) {
        acc_t a = value_of(bias[o]);
    linear_ell_mac:
        for (unsigned f = 0; f < CONFIG::fan_in; f++) {
#pragma HLS PIPELINE II = 1
            a += value_of(val[o][f]) * x[idx[o][f]];
        }
        acc[o] = a;
    }
}

template <class CONFIG, class data_t, class ptr_t, class index_t, class weight_t, class bias_t, class acc_t>
void linear_scatter_acc(hls::stream<active_entry<data_t> >& active, const ptr_t col_ptr[CONFIG::in_features + 1],
                        const index_t row_idx[CONFIG::nnz], const weight_t val[CONFIG::nnz],
                        const bias_t bias[CONFIG::out_features], acc_t acc[CONFIG::out_features]) {
linear_scatter_init:
    for (unsigned o = 0; o < CONFIG::out_features; o++) {
#pragma HLS PIPELINE II = 1
        acc[o] = value_of(bias[o]);
    }
linear_scatter_inputs:
    for (;;) {
#pragma HLS LOOP_TRIPCOUNT min = 0 max = CONFIG::in_features
        const active_entry<data_t> e = active.read();
        if (e.last) break;
    linear_scatter_column:
        for (unsigned p = col_ptr[e.index]; p < unsigned(col_ptr[e.index + 1]); p++) {
#pragma HLS LOOP_TRIPCOUNT min = 0 max = CONFIG::out_features
#pragma HLS PIPELINE II = 1
// the rows of one column are distinct: no read-after-write between iterations
#pragma HLS DEPENDENCE variable = acc type = inter false
            acc[row_idx[p]] += value_of(val[p]) * e.value;
        }
    }
}

template <class CONFIG, class data_t, class weight_t, class bias_t, class acc_t>
void linear_column_scatter_acc(hls::stream<active_entry<data_t> >& active,
                               const weight_t w[CONFIG::out_features][CONFIG::in_features],
                               const bias_t bias[CONFIG::out_features], acc_t acc[CONFIG::out_features]) {
linear_column_scatter_init:
    for (unsigned o = 0; o < CONFIG::out_features; o++) {
#pragma HLS PIPELINE II = 1
        acc[o] = value_of(bias[o]);
    }
linear_column_scatter_inputs:
    for (;;) {
#pragma HLS LOOP_TRIPCOUNT min = 0 max = CONFIG::in_features
        const active_entry<data_t> e = active.read();
        if (e.last) break;
    // the whole (dense) weight column of the active input
    linear_column_scatter_rows:
        for (unsigned o = 0; o < CONFIG::out_features; o++) {
#pragma HLS PIPELINE II = 1
#pragma HLS DEPENDENCE variable = acc type = inter false
            acc[o] += value_of(w[o][e.index]) * e.value;
        }
    }
}

template <class CONFIG, class data_t, class weight_t, class slot_t, class row_t, class bias_t, class acc_t>
void linear_packed_acc(const data_t x[CONFIG::in_features],
                       const weight_t packed_val[CONFIG::n_groups][CONFIG::in_features],
                       const slot_t packed_slot[CONFIG::n_groups][CONFIG::in_features],
                       const row_t group_rows[CONFIG::n_groups][CONFIG::pack_size],
                       const bias_t bias[CONFIG::out_features], acc_t acc[CONFIG::out_features]) {
    constexpr unsigned O = CONFIG::out_features, P = CONFIG::pack_size;
    check_packed_rows<O, CONFIG::n_groups, P>(group_rows);
linear_packed_groups:
    for (unsigned g = 0; g < CONFIG::n_groups; g++) {
        acc_t slot_acc[P];
#pragma HLS ARRAY_PARTITION variable = slot_acc complete
    linear_packed_init:
        for (unsigned s = 0; s < P; s++) {
#pragma HLS UNROLL
            const unsigned r = group_rows[g][s];
            slot_acc[s] = r < O ? acc_t(value_of(bias[r])) : acc_t(0);
        }
    // one dense MAC pass for all units of the group, products routed by slot
    linear_packed_mac:
        for (unsigned i = 0; i < CONFIG::in_features; i++) {
#pragma HLS PIPELINE II = 1
            slot_acc[packed_slot[g][i]] += value_of(packed_val[g][i]) * x[i];
        }
    linear_packed_store:
        for (unsigned s = 0; s < P; s++) {
#pragma HLS PIPELINE II = 1
            const unsigned r = group_rows[g][s];
            if (r < O) acc[r] = slot_acc[s];
        }
    }
}

template <class CONFIG, class data_t, class weight_t, class slot_t, class row_t, class bias_t, class acc_t>
void linear_packed_scatter_acc(hls::stream<active_entry<data_t> >& active,
                               const weight_t packed_val[CONFIG::n_groups][CONFIG::in_features],
                               const slot_t packed_slot[CONFIG::n_groups][CONFIG::in_features],
                               const row_t group_rows[CONFIG::n_groups][CONFIG::pack_size],
                               const bias_t bias[CONFIG::out_features], acc_t acc[CONFIG::out_features]) {
    check_packed_rows<CONFIG::out_features, CONFIG::n_groups, CONFIG::pack_size>(group_rows);
linear_packed_scatter_init:
    for (unsigned o = 0; o < CONFIG::out_features; o++) {
#pragma HLS PIPELINE II = 1
        acc[o] = value_of(bias[o]);
    }
linear_packed_scatter_inputs:
    for (;;) {
#pragma HLS LOOP_TRIPCOUNT min = 0 max = CONFIG::in_features
        const active_entry<data_t> e = active.read();
        if (e.last) break;
    // one packed weight per group; the groups' units are distinct
    linear_packed_scatter_groups:
        for (unsigned g = 0; g < CONFIG::n_groups; g++) {
#pragma HLS PIPELINE II = 1
#pragma HLS DEPENDENCE variable = acc type = inter false
            const typename value_type<weight_t>::type w = value_of(packed_val[g][e.index]);
            if (is_nonzero(w)) acc[group_rows[g][packed_slot[g][e.index]]] += w * e.value;
        }
    }
}

}  // namespace detail

/// Dense linear layer: w[O][I].
template <class CONFIG, class data_t, class res_t, class weight_t, class bias_t>
void linear_dense(const data_t x[CONFIG::in_features], res_t y[linear_output_size<CONFIG>()],
                  const weight_t w[CONFIG::out_features][CONFIG::in_features],
                  const bias_t bias[CONFIG::out_features],
                  const typename CONFIG::scale_t scale[CONFIG::out_features] = nullptr,
                  const typename CONFIG::scale_t shift[CONFIG::out_features] = nullptr,
                  const typename CONFIG::kwta_config::boost_t boost[CONFIG::out_features] = nullptr) {
#pragma HLS DATAFLOW
    static_assert(!CONFIG::pool_config::enabled, "linear layers have no pooling epilogue");
    typename CONFIG::accum_t acc[CONFIG::out_features];
    detail::linear_dense_acc<CONFIG>(x, w, bias, acc);
    detail::epilogue<CONFIG, CONFIG::out_features, 1, 1>(acc, y, scale, shift, boost);
}

/// Weight-sparse linear layer (ELL gather, dense input): idx/val[O][fan_in].
template <class CONFIG, class data_t, class res_t, class index_t, class weight_t, class bias_t>
void linear_ell(const data_t x[CONFIG::in_features], res_t y[linear_output_size<CONFIG>()],
                const index_t idx[CONFIG::out_features][CONFIG::fan_in],
                const weight_t val[CONFIG::out_features][CONFIG::fan_in], const bias_t bias[CONFIG::out_features],
                const typename CONFIG::scale_t scale[CONFIG::out_features] = nullptr,
                const typename CONFIG::scale_t shift[CONFIG::out_features] = nullptr,
                const typename CONFIG::kwta_config::boost_t boost[CONFIG::out_features] = nullptr) {
#pragma HLS DATAFLOW
    static_assert(!CONFIG::pool_config::enabled, "linear layers have no pooling epilogue");
    typename CONFIG::accum_t acc[CONFIG::out_features];
    detail::linear_ell_acc<CONFIG>(x, idx, val, bias, acc);
    detail::epilogue<CONFIG, CONFIG::out_features, 1, 1>(acc, y, scale, shift, boost);
}

/// Activation-sparse linear layer (dense weights w[O][I]): only the non-zero inputs, each scattering its
/// whole weight column.
template <class CONFIG, class data_t, class res_t, class weight_t, class bias_t>
void linear_act_sparse(const data_t x[CONFIG::in_features], res_t y[linear_output_size<CONFIG>()],
                       const weight_t w[CONFIG::out_features][CONFIG::in_features],
                       const bias_t bias[CONFIG::out_features],
                       const typename CONFIG::scale_t scale[CONFIG::out_features] = nullptr,
                       const typename CONFIG::scale_t shift[CONFIG::out_features] = nullptr,
                       const typename CONFIG::kwta_config::boost_t boost[CONFIG::out_features] = nullptr) {
#pragma HLS DATAFLOW
    static_assert(!CONFIG::pool_config::enabled, "linear layers have no pooling epilogue");
    hls::stream<active_entry<data_t> > active("active_inputs");
#pragma HLS STREAM variable = active depth = 64
    typename CONFIG::accum_t acc[CONFIG::out_features];
    compact_nonzero<CONFIG::in_features>(x, active);
    detail::linear_column_scatter_acc<CONFIG>(active, w, bias, acc);
    detail::epilogue<CONFIG, CONFIG::out_features, 1, 1>(acc, y, scale, shift, boost);
}

/// Sparse-sparse linear layer: only the non-zero inputs, each scattering its CSC column.
template <class CONFIG, class data_t, class res_t, class ptr_t, class index_t, class weight_t, class bias_t>
void linear_sparse_sparse(const data_t x[CONFIG::in_features], res_t y[linear_output_size<CONFIG>()],
                          const ptr_t col_ptr[CONFIG::in_features + 1], const index_t row_idx[CONFIG::nnz],
                          const weight_t val[CONFIG::nnz], const bias_t bias[CONFIG::out_features],
                          const typename CONFIG::scale_t scale[CONFIG::out_features] = nullptr,
                          const typename CONFIG::scale_t shift[CONFIG::out_features] = nullptr,
                          const typename CONFIG::kwta_config::boost_t boost[CONFIG::out_features] = nullptr) {
#pragma HLS DATAFLOW
    static_assert(!CONFIG::pool_config::enabled, "linear layers have no pooling epilogue");
    hls::stream<active_entry<data_t> > active("active_inputs");
#pragma HLS STREAM variable = active depth = 64
    typename CONFIG::accum_t acc[CONFIG::out_features];
    compact_nonzero<CONFIG::in_features>(x, active);
    detail::linear_scatter_acc<CONFIG>(active, col_ptr, row_idx, val, bias, acc);
    detail::epilogue<CONFIG, CONFIG::out_features, 1, 1>(acc, y, scale, shift, boost);
}

/// Complementary-packed linear layer, dense input: one dense MAC pass per group of packed units.
template <class CONFIG, class data_t, class res_t, class weight_t, class slot_t, class row_t, class bias_t>
void linear_complementary(const data_t x[CONFIG::in_features], res_t y[linear_output_size<CONFIG>()],
                          const weight_t packed_val[CONFIG::n_groups][CONFIG::in_features],
                          const slot_t packed_slot[CONFIG::n_groups][CONFIG::in_features],
                          const row_t group_rows[CONFIG::n_groups][CONFIG::pack_size],
                          const bias_t bias[CONFIG::out_features],
                          const typename CONFIG::scale_t scale[CONFIG::out_features] = nullptr,
                          const typename CONFIG::scale_t shift[CONFIG::out_features] = nullptr,
                          const typename CONFIG::kwta_config::boost_t boost[CONFIG::out_features] = nullptr) {
#pragma HLS DATAFLOW
    static_assert(!CONFIG::pool_config::enabled, "linear layers have no pooling epilogue");
    typename CONFIG::accum_t acc[CONFIG::out_features];
    detail::linear_packed_acc<CONFIG>(x, packed_val, packed_slot, group_rows, bias, acc);
    detail::epilogue<CONFIG, CONFIG::out_features, 1, 1>(acc, y, scale, shift, boost);
}

/// Complementary-packed linear layer, sparse input: each active input reads its packed column (one
/// weight per group) and routes the products to their units.
template <class CONFIG, class data_t, class res_t, class weight_t, class slot_t, class row_t, class bias_t>
void linear_complementary_sparse(const data_t x[CONFIG::in_features], res_t y[linear_output_size<CONFIG>()],
                                 const weight_t packed_val[CONFIG::n_groups][CONFIG::in_features],
                                 const slot_t packed_slot[CONFIG::n_groups][CONFIG::in_features],
                                 const row_t group_rows[CONFIG::n_groups][CONFIG::pack_size],
                                 const bias_t bias[CONFIG::out_features],
                                 const typename CONFIG::scale_t scale[CONFIG::out_features] = nullptr,
                                 const typename CONFIG::scale_t shift[CONFIG::out_features] = nullptr,
                                 const typename CONFIG::kwta_config::boost_t boost[CONFIG::out_features] = nullptr) {
#pragma HLS DATAFLOW
    static_assert(!CONFIG::pool_config::enabled, "linear layers have no pooling epilogue");
    hls::stream<active_entry<data_t> > active("active_inputs");
#pragma HLS STREAM variable = active depth = 64
    typename CONFIG::accum_t acc[CONFIG::out_features];
    compact_nonzero<CONFIG::in_features>(x, active);
    detail::linear_packed_scatter_acc<CONFIG>(active, packed_val, packed_slot, group_rows, bias, acc);
    detail::epilogue<CONFIG, CONFIG::out_features, 1, 1>(acc, y, scale, shift, boost);
}

}  // namespace sparsecc

#endif  // SPARSECC_LINEAR_H
