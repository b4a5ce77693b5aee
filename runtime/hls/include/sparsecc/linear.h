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
// Every kernel has the signature  (x, y, <weight arrays>, bias, scale, shift, boost); scale / shift are read
// when CONFIG::affine, boost when the k-WTA config has boost (otherwise pass no_values<T, O>::values).
// Weight formats: see formats.h. Constant arrays may hold plain values or stored words (common.h).
//
// Cycles of the MAC stage per sample (II = 1 loops; L = CONFIG::lanes, A = active inputs; the input scan /
// replication and the epilogue are stages of their own):
//     dense                 ceil(I / L) * O
//     ell                   ceil(fan_in / L) * O          (+ I to fill the input replicas when L > 2)
//     act_sparse            O + 1 + A * O / L             (bias pass, then per active input)
//     sparse_sparse         O + 1 + sum over A of max(1, the column's slots)
//     complementary         G * (I + P)                   (one lane)
//     complementary_sparse  O + A * G                     (one lane)
#ifndef SPARSECC_LINEAR_H
#define SPARSECC_LINEAR_H

#include "common.h"
#include "epilogue.h"
#include "formats.h"
#include "ieee.h"

namespace sparsecc {

/// Base of every linear layer config.
struct linear_defaults : epilogue_defaults {};

/// Number of outputs a fused linear layer writes.
template <class CONFIG>
constexpr unsigned linear_output_size() {
    return epilogue_output<CONFIG, CONFIG::out_features, 1, 1>::size;
}

namespace detail {

/// Dense linear layer, L = CONFIG::lanes inputs per cycle: a flattened (step, output) loop; output o gets
/// the products of inputs step * L .. step * L + L - 1 in input order (bit-identical for every L) and is
/// revisited O iterations later (read-after-write distance O). w partitioned cyclic by L; x read directly
/// (L consecutive inputs: x partitioned cyclic by L).
template <class CONFIG, class data_t, class weight_t, class bias_t, class acc_t>
void linear_dense_acc(const data_t x[CONFIG::in_features],
                      const weight_t w[CONFIG::out_features][CONFIG::in_features],
                      const bias_t bias[CONFIG::out_features], acc_t acc[1][CONFIG::out_features]) {
    const unsigned L = CONFIG::lanes, O = CONFIG::out_features, I = CONFIG::in_features;
    const unsigned STEPS = ceil_div(I, L);
#pragma HLS ARRAY_PARTITION variable = w cyclic factor = L dim = 2
#pragma HLS ARRAY_PARTITION variable = x cyclic factor = L
    SPARSECC_ENTER(CONFIG::layer, instrument::MAC);
linear_dense_mac:
    for (unsigned t = 0; t < STEPS * O; t++) {
#pragma HLS PIPELINE II = 1
#pragma HLS DEPENDENCE variable = acc type = inter false
        SPARSECC_COUNT(CONFIG::layer, instrument::MAC, 1);
        const unsigned step = t / O, o = t % O;
        acc_t a = step == 0 ? acc_t(value_of(bias[o])) : acc[0][o];
    linear_dense_lanes:
        for (unsigned l = 0; l < L; l++) {
#pragma HLS UNROLL
            const unsigned i = step * L + l;
            if (i < I) a += value_of(w[o][i]) * x[i];
        }
        acc[0][o] = a;
    }
}

/// Weight-sparse (ELL) linear layer: the loop of linear_dense_acc over fan_in; the L lanes gather
/// data-dependent inputs, each from its own replica of x when L > 2 (gather_source, common.h).
template <class CONFIG, class data_t, class index_t, class weight_t, class bias_t, class acc_t>
void linear_ell_acc(const data_t x[CONFIG::in_features], const index_t idx[CONFIG::out_features][CONFIG::fan_in],
                    const weight_t val[CONFIG::out_features][CONFIG::fan_in],
                    const bias_t bias[CONFIG::out_features], acc_t acc[1][CONFIG::out_features]) {
    typedef gather_source<CONFIG::in_features, CONFIG::lanes, CONFIG::layer, data_t> source;
    const unsigned L = CONFIG::lanes, O = CONFIG::out_features;
    const unsigned STEPS = ceil_div(CONFIG::fan_in, L);
#pragma HLS ARRAY_PARTITION variable = idx cyclic factor = L dim = 2
#pragma HLS ARRAY_PARTITION variable = val cyclic factor = L dim = 2
    data_t copies[source::R][CONFIG::in_features];
#pragma HLS ARRAY_PARTITION variable = copies complete dim = 1
    source::fill(x, copies);
    SPARSECC_ENTER(CONFIG::layer, instrument::MAC);
linear_ell_mac:
    for (unsigned t = 0; t < STEPS * O; t++) {
#pragma HLS PIPELINE II = 1
#pragma HLS DEPENDENCE variable = acc type = inter false
        SPARSECC_COUNT(CONFIG::layer, instrument::MAC, 1);
        const unsigned step = t / O, o = t % O;
        acc_t a = step == 0 ? acc_t(value_of(bias[o])) : acc[0][o];
    linear_ell_lanes:
        for (unsigned l = 0; l < L; l++) {
#pragma HLS UNROLL
            const unsigned f = step * L + l;
            // padding entries of short rows hold 0: skipped, so that no 0 * inf turns a sum into NaN
            if (f < CONFIG::fan_in && is_nonzero(value_of(val[o][f])))
                a += value_of(val[o][f]) * source::read(x, copies, l, unsigned(idx[o][f]));
        }
        acc[0][o] = a;
    }
}

/// Sparse-sparse linear layer: a flattened work list over the active inputs and the slots of their banked
/// CSC columns (formats.h): lane l updates accumulator bank l (rows l * O / L ..), L MACs per cycle; an
/// active input costs max(1, its column's slots) iterations (the last slot's iteration reads the next input).
template <class CONFIG, class data_t, class ptr_t, class index_t, class weight_t, class bias_t, class acc_t>
void linear_scatter_acc(hls::stream<active_entry<data_t> >& active, const ptr_t col_ptr[CONFIG::in_features + 1],
                        const index_t row_idx[CONFIG::nnz], const weight_t val[CONFIG::nnz],
                        const bias_t bias[CONFIG::out_features],
                        acc_t acc[CONFIG::lanes][CONFIG::out_features / CONFIG::lanes]) {
    const unsigned L = CONFIG::lanes, O = CONFIG::out_features, ROWS = O / L;
    static_assert(CONFIG::out_features % CONFIG::lanes == 0, "sparse-sparse linear: lanes must divide out_features");
    static_assert(CONFIG::nnz % CONFIG::lanes == 0, "sparse-sparse linear: nnz counts whole slots");
#pragma HLS ARRAY_PARTITION variable = row_idx cyclic factor = L
#pragma HLS ARRAY_PARTITION variable = val cyclic factor = L
#pragma HLS ARRAY_PARTITION variable = acc complete dim = 1
    bias_init<CONFIG, O, 1, L>(bias, acc);
    unsigned p = 0, end = 0;
    data_t value = data_t(0);
    SPARSECC_ENTER(CONFIG::layer, instrument::MAC);
linear_scatter_work:
    for (;;) {
#pragma HLS LOOP_TRIPCOUNT min = 1 max = CONFIG::in_features + CONFIG::nnz / CONFIG::lanes + 1
#pragma HLS PIPELINE II = 1
#pragma HLS DEPENDENCE variable = acc type = inter false
        SPARSECC_COUNT(CONFIG::layer, instrument::MAC, 1);
        if (p < end) {
        linear_scatter_lanes:
            for (unsigned l = 0; l < L; l++) {
#pragma HLS UNROLL
                const unsigned row = row_idx[p * L + l];
                if (row < O) acc[l][row - l * ROWS] += value_of(val[p * L + l]) * value;
            }
            p++;
        }
        if (p >= end) {   // in the iteration of the column's last slot: the next active input
            const active_entry<data_t> e = active.read();
            if (e.last) break;
            p = col_ptr[e.index];
            end = col_ptr[e.index + 1];
            value = e.value;
        }
    }
}

/// Activation-sparse linear layer with dense weights: per active input, O / L steps of L rows (lane l
/// updates rows l * O / L + s; w partitioned in L blocks of rows).
template <class CONFIG, class data_t, class weight_t, class bias_t, class acc_t>
void linear_column_scatter_acc(hls::stream<active_entry<data_t> >& active,
                               const weight_t w[CONFIG::out_features][CONFIG::in_features],
                               const bias_t bias[CONFIG::out_features],
                               acc_t acc[CONFIG::lanes][CONFIG::out_features / CONFIG::lanes]) {
    const unsigned L = CONFIG::lanes, O = CONFIG::out_features, ROWS = O / L;
    static_assert(CONFIG::out_features % CONFIG::lanes == 0,
                  "activation-sparse linear: lanes must divide out_features");
#pragma HLS ARRAY_PARTITION variable = w block factor = L dim = 1
#pragma HLS ARRAY_PARTITION variable = acc complete dim = 1
    bias_init<CONFIG, O, 1, L>(bias, acc);
    unsigned s = ROWS, column = 0;
    data_t value = data_t(0);
    SPARSECC_ENTER(CONFIG::layer, instrument::MAC);
linear_column_scatter_work:
    for (;;) {
#pragma HLS LOOP_TRIPCOUNT min = 1 max = CONFIG::in_features * (CONFIG::out_features / CONFIG::lanes) + 1
#pragma HLS PIPELINE II = 1
#pragma HLS DEPENDENCE variable = acc type = inter false
        SPARSECC_COUNT(CONFIG::layer, instrument::MAC, 1);
        if (s < ROWS) {
        linear_column_scatter_lanes:
            for (unsigned l = 0; l < L; l++) {
#pragma HLS UNROLL
                acc[l][s] += value_of(w[l * ROWS + s][column]) * value;
            }
            s++;
        }
        if (s >= ROWS) {
            const active_entry<data_t> e = active.read();
            if (e.last) break;
            column = e.index;
            value = e.value;
            s = 0;
        }
    }
}

/// Complementary-packed linear layer, dense input (one lane).
template <class CONFIG, class data_t, class weight_t, class slot_t, class row_t, class bias_t, class acc_t>
void linear_packed_acc(const data_t x[CONFIG::in_features],
                       const weight_t packed_val[CONFIG::n_groups][CONFIG::in_features],
                       const slot_t packed_slot[CONFIG::n_groups][CONFIG::in_features],
                       const row_t group_rows[CONFIG::n_groups][CONFIG::pack_size],
                       const bias_t bias[CONFIG::out_features], acc_t acc[1][CONFIG::out_features]) {
    const unsigned O = CONFIG::out_features, P = CONFIG::pack_size;
    static_assert(CONFIG::lanes == 1, "complementary kernels have one lane");
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
        SPARSECC_ENTER(CONFIG::layer, instrument::MAC);
    // one dense MAC pass for all units of the group, products routed by slot
    linear_packed_mac:
        for (unsigned i = 0; i < CONFIG::in_features; i++) {
#pragma HLS PIPELINE II = 1
            SPARSECC_COUNT(CONFIG::layer, instrument::MAC, 1);
            if (is_nonzero(value_of(packed_val[g][i])))   // columns no unit owns hold 0 (no 0 * inf)
                slot_acc[packed_slot[g][i]] += value_of(packed_val[g][i]) * x[i];
        }
        SPARSECC_ENTER(CONFIG::layer, instrument::MAC);
    linear_packed_store:
        for (unsigned s = 0; s < P; s++) {
#pragma HLS PIPELINE II = 1
            SPARSECC_COUNT(CONFIG::layer, instrument::MAC, 1);
            const unsigned r = group_rows[g][s];
            if (r < O) acc[0][r] = slot_acc[s];
        }
    }
}

/// Complementary-packed linear layer, sparse input (one lane).
template <class CONFIG, class data_t, class weight_t, class slot_t, class row_t, class bias_t, class acc_t>
void linear_packed_scatter_acc(hls::stream<active_entry<data_t> >& active,
                               const weight_t packed_val[CONFIG::n_groups][CONFIG::in_features],
                               const slot_t packed_slot[CONFIG::n_groups][CONFIG::in_features],
                               const row_t group_rows[CONFIG::n_groups][CONFIG::pack_size],
                               const bias_t bias[CONFIG::out_features], acc_t acc[1][CONFIG::out_features]) {
    static_assert(CONFIG::lanes == 1, "complementary kernels have one lane");
    check_packed_rows<CONFIG::out_features, CONFIG::n_groups, CONFIG::pack_size>(group_rows);
    bias_init<CONFIG, CONFIG::out_features, 1, 1>(bias, acc);
linear_packed_scatter_inputs:
    for (;;) {
#pragma HLS LOOP_TRIPCOUNT min = 0 max = CONFIG::in_features
        const active_entry<data_t> e = active.read();
        if (e.last) break;
        SPARSECC_ENTER(CONFIG::layer, instrument::MAC);
    // one packed weight per group; the groups' units are distinct
    linear_packed_scatter_groups:
        for (unsigned g = 0; g < CONFIG::n_groups; g++) {
#pragma HLS PIPELINE II = 1
#pragma HLS DEPENDENCE variable = acc type = inter false
            SPARSECC_COUNT(CONFIG::layer, instrument::MAC, 1);
            const typename value_type<weight_t>::type w = value_of(packed_val[g][e.index]);
            if (is_nonzero(w)) acc[0][group_rows[g][packed_slot[g][e.index]]] += w * e.value;
        }
    }
}

}  // namespace detail

#define SPARSECC_LINEAR_EPILOGUE_ARGS                                                           \
    const typename CONFIG::scale_t scale[CONFIG::out_features],                                  \
    const typename CONFIG::scale_t shift[CONFIG::out_features],                                  \
    const typename CONFIG::kwta_config::boost_t boost[CONFIG::out_features]

#define SPARSECC_LINEAR_EPILOGUE(BANKS) \
    detail::epilogue<CONFIG, CONFIG::out_features, 1, 1, BANKS>(acc, y, scale, shift, boost)

/// Dense linear layer: w[O][I].
template <class CONFIG, class data_t, class res_t, class weight_t, class bias_t>
void linear_dense(const data_t x[CONFIG::in_features], res_t y[linear_output_size<CONFIG>()],
                  const weight_t w[CONFIG::out_features][CONFIG::in_features],
                  const bias_t bias[CONFIG::out_features], SPARSECC_LINEAR_EPILOGUE_ARGS) {
#pragma HLS DATAFLOW
    static_assert(!CONFIG::pool_config::enabled, "linear layers have no pooling epilogue");
    typename CONFIG::accum_t acc[1][CONFIG::out_features];
    detail::linear_dense_acc<CONFIG>(x, w, bias, acc);
    SPARSECC_LINEAR_EPILOGUE(1);
}

/// Weight-sparse linear layer (ELL gather, dense input): idx/val[O][fan_in].
template <class CONFIG, class data_t, class res_t, class index_t, class weight_t, class bias_t>
void linear_ell(const data_t x[CONFIG::in_features], res_t y[linear_output_size<CONFIG>()],
                const index_t idx[CONFIG::out_features][CONFIG::fan_in],
                const weight_t val[CONFIG::out_features][CONFIG::fan_in], const bias_t bias[CONFIG::out_features],
                SPARSECC_LINEAR_EPILOGUE_ARGS) {
#pragma HLS DATAFLOW
    static_assert(!CONFIG::pool_config::enabled, "linear layers have no pooling epilogue");
    typename CONFIG::accum_t acc[1][CONFIG::out_features];
    detail::linear_ell_acc<CONFIG>(x, idx, val, bias, acc);
    typedef detail::ieee_fix<detail::linear_geometry<CONFIG>, CONFIG, ieee_on<CONFIG, data_t>::value> ieee;
    ieee::template rows<1>(x, idx, val, acc);
    SPARSECC_LINEAR_EPILOGUE(1);
}

/// Activation-sparse linear layer (dense weights w[O][I]): only the non-zero inputs, each scattering its
/// whole weight column.
template <class CONFIG, class data_t, class res_t, class weight_t, class bias_t>
void linear_act_sparse(const data_t x[CONFIG::in_features], res_t y[linear_output_size<CONFIG>()],
                       const weight_t w[CONFIG::out_features][CONFIG::in_features],
                       const bias_t bias[CONFIG::out_features], SPARSECC_LINEAR_EPILOGUE_ARGS) {
#pragma HLS DATAFLOW
    static_assert(!CONFIG::pool_config::enabled, "linear layers have no pooling epilogue");
    hls::stream<active_entry<data_t> > active("active_inputs");
#pragma HLS STREAM variable = active depth = 64
    typename CONFIG::accum_t acc[CONFIG::lanes][CONFIG::out_features / CONFIG::lanes];
    compact_nonzero<CONFIG::in_features, CONFIG::layer>(x, active);
    detail::linear_column_scatter_acc<CONFIG>(active, w, bias, acc);
    SPARSECC_LINEAR_EPILOGUE(CONFIG::lanes);
}

/// Sparse-sparse linear layer: only the non-zero inputs, each scattering its banked CSC column.
template <class CONFIG, class data_t, class res_t, class ptr_t, class index_t, class weight_t, class bias_t>
void linear_sparse_sparse(const data_t x[CONFIG::in_features], res_t y[linear_output_size<CONFIG>()],
                          const ptr_t col_ptr[CONFIG::in_features + 1], const index_t row_idx[CONFIG::nnz],
                          const weight_t val[CONFIG::nnz], const bias_t bias[CONFIG::out_features],
                          SPARSECC_LINEAR_EPILOGUE_ARGS) {
#pragma HLS DATAFLOW
    static_assert(!CONFIG::pool_config::enabled, "linear layers have no pooling epilogue");
    hls::stream<active_entry<data_t> > active("active_inputs");
#pragma HLS STREAM variable = active depth = 64
    typename CONFIG::accum_t acc[CONFIG::lanes][CONFIG::out_features / CONFIG::lanes];
    compact_nonzero<CONFIG::in_features, CONFIG::layer>(x, active);
    detail::linear_scatter_acc<CONFIG>(active, col_ptr, row_idx, val, bias, acc);
    typedef detail::ieee_fix<detail::linear_geometry<CONFIG>, CONFIG, ieee_on<CONFIG, data_t>::value> ieee;
    ieee::template csc<CONFIG::lanes>(x, col_ptr, row_idx, acc);
    SPARSECC_LINEAR_EPILOGUE(CONFIG::lanes);
}

/// Complementary-packed linear layer, dense input: one dense MAC pass per group of packed units.
template <class CONFIG, class data_t, class res_t, class weight_t, class slot_t, class row_t, class bias_t>
void linear_complementary(const data_t x[CONFIG::in_features], res_t y[linear_output_size<CONFIG>()],
                          const weight_t packed_val[CONFIG::n_groups][CONFIG::in_features],
                          const slot_t packed_slot[CONFIG::n_groups][CONFIG::in_features],
                          const row_t group_rows[CONFIG::n_groups][CONFIG::pack_size],
                          const bias_t bias[CONFIG::out_features], SPARSECC_LINEAR_EPILOGUE_ARGS) {
#pragma HLS DATAFLOW
    static_assert(!CONFIG::pool_config::enabled, "linear layers have no pooling epilogue");
    typename CONFIG::accum_t acc[1][CONFIG::out_features];
    detail::linear_packed_acc<CONFIG>(x, packed_val, packed_slot, group_rows, bias, acc);
    typedef detail::ieee_fix<detail::linear_geometry<CONFIG>, CONFIG, ieee_on<CONFIG, data_t>::value> ieee;
    ieee::packed(x, packed_val, packed_slot, group_rows, acc);
    SPARSECC_LINEAR_EPILOGUE(1);
}

/// Complementary-packed linear layer, sparse input: each active input reads its packed column (one
/// weight per group) and routes the products to their units.
template <class CONFIG, class data_t, class res_t, class weight_t, class slot_t, class row_t, class bias_t>
void linear_complementary_sparse(const data_t x[CONFIG::in_features], res_t y[linear_output_size<CONFIG>()],
                                 const weight_t packed_val[CONFIG::n_groups][CONFIG::in_features],
                                 const slot_t packed_slot[CONFIG::n_groups][CONFIG::in_features],
                                 const row_t group_rows[CONFIG::n_groups][CONFIG::pack_size],
                                 const bias_t bias[CONFIG::out_features], SPARSECC_LINEAR_EPILOGUE_ARGS) {
#pragma HLS DATAFLOW
    static_assert(!CONFIG::pool_config::enabled, "linear layers have no pooling epilogue");
    hls::stream<active_entry<data_t> > active("active_inputs");
#pragma HLS STREAM variable = active depth = 64
    typename CONFIG::accum_t acc[1][CONFIG::out_features];
    compact_nonzero<CONFIG::in_features, CONFIG::layer>(x, active);
    detail::linear_packed_scatter_acc<CONFIG>(active, packed_val, packed_slot, group_rows, bias, acc);
    typedef detail::ieee_fix<detail::linear_geometry<CONFIG>, CONFIG, ieee_on<CONFIG, data_t>::value> ieee;
    ieee::packed(x, packed_val, packed_slot, group_rows, acc);
    SPARSECC_LINEAR_EPILOGUE(1);
}

#undef SPARSECC_LINEAR_EPILOGUE
#undef SPARSECC_LINEAR_EPILOGUE_ARGS

}  // namespace sparsecc

#endif  // SPARSECC_LINEAR_H
