// sparsecc HLS kernel library — 2-D convolution layers (NCHW, weights OIHW, dilation 1, groups 1):
// y = epilogue(conv(x, W, stride, zero padding) + b).
//
// CONFIG (derive from conv2d_defaults):
//     in_channels, in_height, in_width                    required
//     out_channels, out_height, out_width                 required (checked against the geometry)
//     kernel_h, kernel_w                                  required
//     stride_h, stride_w                                  default 1
//     pad_top, pad_left, pad_bottom, pad_right            default 0
//     fan_in                                              conv2d_ell
//     nnz                                                 conv2d_sparse_sparse
//     n_groups, pack_size                                 conv2d_complementary(_sparse)
//     typedef ... accum_t                                 accumulator type (required)
//     epilogue members: affine, relu, kwta_config, pool_config, scale_t (see epilogue.h)
//
// Every kernel has the signature  (x, y, <weight arrays>, bias, scale, shift, boost); a layer without batch
// norm or boost passes no_values<T, O>::values (common.h) for the arrays it does not use. y has
// conv2d_output_size<CONFIG>() elements (pooled size when the epilogue pools). CONFIG::lanes (L): see each
// kernel; sparse-sparse / act-sparse kernels need L to divide out_channels.
// Weight formats: see formats.h; a column index is c * kernel_h * kernel_w + ky * kernel_w + kx.
//
// Cycles of the MAC stage per sample (II = 1 loops; OUT = O * OH * OW, A = active inputs, T = their taps that
// reach an output pixel; the input scan / replication and the epilogue are stages of their own):
//     dense                 ceil(COLS / L) * OUT                 (+ C*H*W to fill the input replicas, L > 2)
//     ell                   ceil(fan_in / L) * OUT               (+ the same)
//     act_sparse            OUT + 1 + A * KK + T * (O / L - 1)   (bias pass, then max(1, steps) per tap)
//     sparse_sparse         OUT + 1 + sum over A x KK of max(1, the tap's column slots; 0 outside the output)
//     complementary         G * OP * (COLS + P)                  (one lane)
//     complementary_sparse  OUT + T * G                          (one lane)
#ifndef SPARSECC_CONV2D_H
#define SPARSECC_CONV2D_H

#include "common.h"
#include "epilogue.h"
#include "formats.h"
#include "ieee.h"

namespace sparsecc {

/// Base of every conv2d layer config.
struct conv2d_defaults : epilogue_defaults {
    static constexpr unsigned stride_h = 1;
    static constexpr unsigned stride_w = 1;
    static constexpr unsigned pad_top = 0;
    static constexpr unsigned pad_left = 0;
    static constexpr unsigned pad_bottom = 0;
    static constexpr unsigned pad_right = 0;
};

/// Number of outputs a fused conv2d layer writes.
template <class CONFIG>
constexpr unsigned conv2d_output_size() {
    return epilogue_output<CONFIG, CONFIG::out_channels, CONFIG::out_height, CONFIG::out_width>::size;
}

namespace detail {

/// Index arithmetic of a convolution.
template <class CONFIG>
struct conv_geometry {
    static constexpr unsigned C = CONFIG::in_channels, H = CONFIG::in_height, W = CONFIG::in_width;
    static constexpr unsigned O = CONFIG::out_channels, OH = CONFIG::out_height, OW = CONFIG::out_width;
    static constexpr unsigned KH = CONFIG::kernel_h, KW = CONFIG::kernel_w, KK = KH * KW;
    static constexpr unsigned COLS = C * KK;
    static constexpr unsigned IN_SIZE = C * H * W;
    static constexpr unsigned OUT_SIZE = O * OH * OW;

    static_assert(OH == (H + CONFIG::pad_top + CONFIG::pad_bottom - KH) / CONFIG::stride_h + 1,
                  "conv2d config: out_height does not match in_height, kernel, stride and padding");
    static_assert(OW == (W + CONFIG::pad_left + CONFIG::pad_right - KW) / CONFIG::stride_w + 1,
                  "conv2d config: out_width does not match in_width, kernel, stride and padding");

    /// The input element that weight column `col` meets at output pixel (oy, ox); false in the padding.
    static bool input_of(unsigned col, unsigned oy, unsigned ox, unsigned& index) {
#pragma HLS INLINE
        const unsigned c = col / KK;
        const unsigned ky = (col % KK) / KW;
        const unsigned kx = col % KW;
        const int iy = int(oy * CONFIG::stride_h + ky) - int(CONFIG::pad_top);
        const int ix = int(ox * CONFIG::stride_w + kx) - int(CONFIG::pad_left);
        index = c * H * W + unsigned(iy) * W + unsigned(ix);
        return iy >= 0 && iy < int(H) && ix >= 0 && ix < int(W);
    }

    /// The output pixel that input pixel (iy, ix) feeds through kernel tap `tap` = ky * KW + kx; false if none.
    static bool output_of(unsigned iy, unsigned ix, unsigned tap, unsigned& pixel) {
#pragma HLS INLINE
        const int ty = int(iy + CONFIG::pad_top) - int(tap / KW);
        const int tx = int(ix + CONFIG::pad_left) - int(tap % KW);
        const int oy = ty / int(CONFIG::stride_h);
        const int ox = tx / int(CONFIG::stride_w);
        pixel = unsigned(oy) * OW + unsigned(ox);
        return ty >= 0 && tx >= 0 && ty % int(CONFIG::stride_h) == 0 && tx % int(CONFIG::stride_w) == 0 &&
               oy < int(OH) && ox < int(OW);
    }
};

/// Dense convolution, L = CONFIG::lanes columns of a filter per cycle. One flattened loop over
/// (step, output): output q gets the products of columns step * L .. step * L + L - 1 added in column order
/// (bit-identical for every L); an output is revisited OUT_SIZE iterations later, so the accumulator's
/// read-after-write distance is OUT_SIZE and float adds keep II = 1. Weights partitioned cyclic by L.
template <class CONFIG, class data_t, class weight_t, class bias_t, class acc_t>
void conv_dense_acc(const data_t x[conv_geometry<CONFIG>::IN_SIZE],
                    const weight_t w[CONFIG::out_channels][conv_geometry<CONFIG>::COLS],
                    const bias_t bias[CONFIG::out_channels], acc_t acc[1][conv_geometry<CONFIG>::OUT_SIZE]) {
    typedef conv_geometry<CONFIG> geo;
    typedef gather_source<geo::IN_SIZE, CONFIG::lanes, CONFIG::layer, data_t> source;
    const unsigned L = CONFIG::lanes;
    const unsigned STEPS = ceil_div(geo::COLS, L);
#pragma HLS ARRAY_PARTITION variable = w cyclic factor = L dim = 2
    data_t copies[source::R][geo::IN_SIZE];
#pragma HLS ARRAY_PARTITION variable = copies complete dim = 1
    source::fill(x, copies);
    SPARSECC_ENTER(CONFIG::layer, instrument::MAC);
conv_dense_mac:
    for (unsigned t = 0; t < STEPS * geo::OUT_SIZE; t++) {
#pragma HLS PIPELINE II = 1
#pragma HLS DEPENDENCE variable = acc type = inter false
        SPARSECC_COUNT(CONFIG::layer, instrument::MAC, 1);
        const unsigned step = t / geo::OUT_SIZE, q = t % geo::OUT_SIZE;
        const unsigned o = q / (geo::OH * geo::OW), oy = (q / geo::OW) % geo::OH, ox = q % geo::OW;
        acc_t a = step == 0 ? acc_t(value_of(bias[o])) : acc[0][q];
    conv_dense_lanes:
        for (unsigned l = 0; l < L; l++) {
#pragma HLS UNROLL
            const unsigned col = step * L + l;
            unsigned i;
            if (col < geo::COLS && geo::input_of(col, oy, ox, i))
                a += value_of(w[o][col]) * source::read(x, copies, l, i);
        }
        acc[0][q] = a;
    }
}

/// Weight-sparse (ELL) convolution, L = CONFIG::lanes non-zeros of a filter per cycle; the same flattened
/// (step, output) loop as conv_dense_acc over fan_in instead of COLS. idx / val partitioned cyclic by L.
template <class CONFIG, class data_t, class index_t, class weight_t, class bias_t, class acc_t>
void conv_ell_acc(const data_t x[conv_geometry<CONFIG>::IN_SIZE],
                  const index_t idx[CONFIG::out_channels][CONFIG::fan_in],
                  const weight_t val[CONFIG::out_channels][CONFIG::fan_in],
                  const bias_t bias[CONFIG::out_channels], acc_t acc[1][conv_geometry<CONFIG>::OUT_SIZE]) {
    typedef conv_geometry<CONFIG> geo;
    typedef gather_source<geo::IN_SIZE, CONFIG::lanes, CONFIG::layer, data_t> source;
    const unsigned L = CONFIG::lanes;
    const unsigned STEPS = ceil_div(CONFIG::fan_in, L);
#pragma HLS ARRAY_PARTITION variable = idx cyclic factor = L dim = 2
#pragma HLS ARRAY_PARTITION variable = val cyclic factor = L dim = 2
    data_t copies[source::R][geo::IN_SIZE];
#pragma HLS ARRAY_PARTITION variable = copies complete dim = 1
    source::fill(x, copies);
    SPARSECC_ENTER(CONFIG::layer, instrument::MAC);
conv_ell_mac:
    for (unsigned t = 0; t < STEPS * geo::OUT_SIZE; t++) {
#pragma HLS PIPELINE II = 1
#pragma HLS DEPENDENCE variable = acc type = inter false
        SPARSECC_COUNT(CONFIG::layer, instrument::MAC, 1);
        const unsigned step = t / geo::OUT_SIZE, q = t % geo::OUT_SIZE;
        const unsigned o = q / (geo::OH * geo::OW), oy = (q / geo::OW) % geo::OH, ox = q % geo::OW;
        acc_t a = step == 0 ? acc_t(value_of(bias[o])) : acc[0][q];
    conv_ell_lanes:
        for (unsigned l = 0; l < L; l++) {
#pragma HLS UNROLL
            const unsigned f = step * L + l;
            unsigned i;
            // padding entries of short rows hold 0: skipped, so that no 0 * inf turns a sum into NaN
            if (f < CONFIG::fan_in && is_nonzero(value_of(val[o][f])) && geo::input_of(idx[o][f], oy, ox, i))
                a += value_of(val[o][f]) * source::read(x, copies, l, i);
        }
        acc[0][q] = a;
    }
}

/// Sparse-sparse convolution: a flattened work list over the active inputs, their kernel taps and the
/// non-zeros of the tap's weight column. Banked CSC (formats.h): a column is a run of slots of L lanes, lane l
/// holding a row of bank l (rows l * O / L .. (l + 1) * O / L - 1) or the empty marker O, so lane l always
/// updates accumulator bank l: L MACs per cycle without bank conflicts. The iteration that handles a column's
/// last slot also fetches the next tap's column (and reads the next active input when the taps are done), so
/// a tap costs max(1, its slots) iterations. Within a column the rows are distinct.
template <class CONFIG, class data_t, class ptr_t, class index_t, class weight_t, class bias_t, class acc_t>
void conv_scatter_acc(hls::stream<active_entry<data_t> >& active,
                      const ptr_t col_ptr[conv_geometry<CONFIG>::COLS + 1], const index_t row_idx[CONFIG::nnz],
                      const weight_t val[CONFIG::nnz], const bias_t bias[CONFIG::out_channels],
                      acc_t acc[CONFIG::lanes][conv_geometry<CONFIG>::OUT_SIZE / CONFIG::lanes]) {
    typedef conv_geometry<CONFIG> geo;
    const unsigned L = CONFIG::lanes, OP = geo::OH * geo::OW, ROWS = geo::O / L;
    static_assert(geo::O % CONFIG::lanes == 0, "sparse-sparse conv: lanes must divide out_channels");
    static_assert(CONFIG::nnz % CONFIG::lanes == 0, "sparse-sparse conv: nnz counts whole slots");
#pragma HLS ARRAY_PARTITION variable = row_idx cyclic factor = L
#pragma HLS ARRAY_PARTITION variable = val cyclic factor = L
#pragma HLS ARRAY_PARTITION variable = acc complete dim = 1
    bias_init<CONFIG, geo::OUT_SIZE, OP, L>(bias, acc);
    unsigned c = 0, iy = 0, ix = 0, tap = geo::KK, p = 0, end = 0, pixel = 0;
    data_t value = data_t(0);
    SPARSECC_ENTER(CONFIG::layer, instrument::MAC);
conv_scatter_work:
    for (;;) {
#pragma HLS LOOP_TRIPCOUNT min = 1 max = geo::IN_SIZE * geo::KK + CONFIG::nnz / CONFIG::lanes * OP + 1
#pragma HLS PIPELINE II = 1
#pragma HLS DEPENDENCE variable = acc type = inter false
        SPARSECC_COUNT(CONFIG::layer, instrument::MAC, 1);
        if (p < end) {   // one slot: L non-zeros of the column, one per bank
        conv_scatter_lanes:
            for (unsigned l = 0; l < L; l++) {
#pragma HLS UNROLL
                const unsigned row = row_idx[p * L + l];
                if (row < geo::O) acc[l][(row - l * ROWS) * OP + pixel] += value_of(val[p * L + l]) * value;
            }
            p++;
        }
        if (p >= end) {   // the column is done (in the same iteration as its last slot): what comes next
            if (tap == geo::KK) {   // the next active input
                const active_entry<data_t> e = active.read();
                if (e.last) break;
                c = e.index / (geo::H * geo::W);
                iy = (e.index / geo::W) % geo::H;
                ix = e.index % geo::W;
                value = e.value;
                tap = 0;
            }
            // the next kernel tap of the current input: its column's slots (none outside the output)
            unsigned hit = 0;
            const bool inside = geo::output_of(iy, ix, tap, hit);
            const unsigned col = c * geo::KK + tap;
            p = inside ? unsigned(col_ptr[col]) : 0;
            end = inside ? unsigned(col_ptr[col + 1]) : 0;
            pixel = hit;
            tap++;
        }
    }
}

/// Activation-sparse convolution with dense weights: the flattened work list of conv_scatter_acc where
/// every column holds all O rows; lane l updates rows l * O / L + s (w partitioned in L blocks of rows).
template <class CONFIG, class data_t, class weight_t, class bias_t, class acc_t>
void conv_column_scatter_acc(hls::stream<active_entry<data_t> >& active,
                             const weight_t w[CONFIG::out_channels][conv_geometry<CONFIG>::COLS],
                             const bias_t bias[CONFIG::out_channels],
                             acc_t acc[CONFIG::lanes][conv_geometry<CONFIG>::OUT_SIZE / CONFIG::lanes]) {
    typedef conv_geometry<CONFIG> geo;
    const unsigned L = CONFIG::lanes, OP = geo::OH * geo::OW, ROWS = geo::O / L;
    static_assert(geo::O % CONFIG::lanes == 0, "activation-sparse conv: lanes must divide out_channels");
#pragma HLS ARRAY_PARTITION variable = w block factor = L dim = 1
#pragma HLS ARRAY_PARTITION variable = acc complete dim = 1
    bias_init<CONFIG, geo::OUT_SIZE, OP, L>(bias, acc);
    unsigned c = 0, iy = 0, ix = 0, tap = geo::KK, s = ROWS, pixel = 0, col = 0;
    data_t value = data_t(0);
    SPARSECC_ENTER(CONFIG::layer, instrument::MAC);
conv_column_scatter_work:
    for (;;) {
#pragma HLS LOOP_TRIPCOUNT min = 1 max = geo::IN_SIZE * geo::KK * (geo::O / CONFIG::lanes) + 1
#pragma HLS PIPELINE II = 1
#pragma HLS DEPENDENCE variable = acc type = inter false
        SPARSECC_COUNT(CONFIG::layer, instrument::MAC, 1);
        if (s < ROWS) {
        conv_column_scatter_lanes:
            for (unsigned l = 0; l < L; l++) {
#pragma HLS UNROLL
                acc[l][s * OP + pixel] += value_of(w[l * ROWS + s][col]) * value;
            }
            s++;
        }
        if (s >= ROWS) {
            if (tap == geo::KK) {
                const active_entry<data_t> e = active.read();
                if (e.last) break;
                c = e.index / (geo::H * geo::W);
                iy = (e.index / geo::W) % geo::H;
                ix = e.index % geo::W;
                value = e.value;
                tap = 0;
            }
            unsigned hit = 0;
            const bool inside = geo::output_of(iy, ix, tap, hit);
            col = c * geo::KK + tap;
            s = inside ? 0 : ROWS;
            pixel = hit;
            tap++;
        }
    }
}

/// Complementary-packed convolution, dense input (one lane): per group and output pixel one dense MAC pass.
template <class CONFIG, class data_t, class weight_t, class slot_t, class row_t, class bias_t, class acc_t>
void conv_packed_acc(const data_t x[conv_geometry<CONFIG>::IN_SIZE],
                     const weight_t packed_val[CONFIG::n_groups][conv_geometry<CONFIG>::COLS],
                     const slot_t packed_slot[CONFIG::n_groups][conv_geometry<CONFIG>::COLS],
                     const row_t group_rows[CONFIG::n_groups][CONFIG::pack_size],
                     const bias_t bias[CONFIG::out_channels], acc_t acc[1][conv_geometry<CONFIG>::OUT_SIZE]) {
    typedef conv_geometry<CONFIG> geo;
    const unsigned P = CONFIG::pack_size, OP = geo::OH * geo::OW;
    static_assert(CONFIG::lanes == 1, "complementary kernels have one lane");
    check_packed_rows<geo::O, CONFIG::n_groups, P>(group_rows);
conv_packed_groups:
    for (unsigned g = 0; g < CONFIG::n_groups; g++) {
    conv_packed_pixels:
        for (unsigned pixel = 0; pixel < OP; pixel++) {
            const unsigned oy = pixel / geo::OW, ox = pixel % geo::OW;
            acc_t slot_acc[P];
#pragma HLS ARRAY_PARTITION variable = slot_acc complete
        conv_packed_init:
            for (unsigned s = 0; s < P; s++) {
#pragma HLS UNROLL
                const unsigned r = group_rows[g][s];
                slot_acc[s] = r < geo::O ? acc_t(value_of(bias[r])) : acc_t(0);
            }
            SPARSECC_ENTER(CONFIG::layer, instrument::MAC);
        // one dense MAC pass for all units of the group, products routed by slot
        conv_packed_mac:
            for (unsigned col = 0; col < geo::COLS; col++) {
#pragma HLS PIPELINE II = 1
                SPARSECC_COUNT(CONFIG::layer, instrument::MAC, 1);
                unsigned i;
                // columns no unit of the group owns hold 0: skipped (no 0 * inf)
                if (is_nonzero(value_of(packed_val[g][col])) && geo::input_of(col, oy, ox, i))
                    slot_acc[packed_slot[g][col]] += value_of(packed_val[g][col]) * x[i];
            }
            SPARSECC_ENTER(CONFIG::layer, instrument::MAC);
        conv_packed_store:
            for (unsigned s = 0; s < P; s++) {
#pragma HLS PIPELINE II = 1
                SPARSECC_COUNT(CONFIG::layer, instrument::MAC, 1);
                const unsigned r = group_rows[g][s];
                if (r < geo::O) acc[0][r * OP + pixel] = slot_acc[s];
            }
        }
    }
}

/// Complementary-packed convolution, sparse input (one lane).
template <class CONFIG, class data_t, class weight_t, class slot_t, class row_t, class bias_t, class acc_t>
void conv_packed_scatter_acc(hls::stream<active_entry<data_t> >& active,
                             const weight_t packed_val[CONFIG::n_groups][conv_geometry<CONFIG>::COLS],
                             const slot_t packed_slot[CONFIG::n_groups][conv_geometry<CONFIG>::COLS],
                             const row_t group_rows[CONFIG::n_groups][CONFIG::pack_size],
                             const bias_t bias[CONFIG::out_channels], acc_t acc[1][conv_geometry<CONFIG>::OUT_SIZE]) {
    typedef conv_geometry<CONFIG> geo;
    const unsigned OP = geo::OH * geo::OW;
    static_assert(CONFIG::lanes == 1, "complementary kernels have one lane");
    check_packed_rows<geo::O, CONFIG::n_groups, CONFIG::pack_size>(group_rows);
    bias_init<CONFIG, geo::OUT_SIZE, OP, 1>(bias, acc);
conv_packed_scatter_inputs:
    for (;;) {
#pragma HLS LOOP_TRIPCOUNT min = 0 max = geo::IN_SIZE
        const active_entry<data_t> e = active.read();
        if (e.last) break;
        const unsigned c = e.index / (geo::H * geo::W);
        const unsigned iy = (e.index / geo::W) % geo::H, ix = e.index % geo::W;
    conv_packed_scatter_taps:
        for (unsigned tap = 0; tap < geo::KK; tap++) {
            unsigned pixel;
            if (!geo::output_of(iy, ix, tap, pixel)) continue;
            const unsigned col = c * geo::KK + tap;
            SPARSECC_ENTER(CONFIG::layer, instrument::MAC);
        // one packed weight per group; the groups' units are distinct
        conv_packed_scatter_groups:
            for (unsigned g = 0; g < CONFIG::n_groups; g++) {
#pragma HLS PIPELINE II = 1
#pragma HLS DEPENDENCE variable = acc type = inter false
                SPARSECC_COUNT(CONFIG::layer, instrument::MAC, 1);
                const typename value_type<weight_t>::type w = value_of(packed_val[g][col]);
                if (is_nonzero(w)) acc[0][unsigned(group_rows[g][packed_slot[g][col]]) * OP + pixel] += w * e.value;
            }
        }
    }
}

}  // namespace detail

#define SPARSECC_CONV2D_EPILOGUE_ARGS                                                           \
    const typename CONFIG::scale_t scale[CONFIG::out_channels],                                  \
    const typename CONFIG::scale_t shift[CONFIG::out_channels],                                  \
    const typename CONFIG::kwta_config::boost_t boost[CONFIG::out_channels]

#define SPARSECC_CONV2D_EPILOGUE(BANKS)                                                                    \
    detail::epilogue<CONFIG, CONFIG::out_channels, CONFIG::out_height, CONFIG::out_width, BANKS>(acc, y, scale, \
                                                                                                 shift, boost)

/// Dense convolution: w[O][COLS].
template <class CONFIG, class data_t, class res_t, class weight_t, class bias_t>
void conv2d_dense(const data_t x[detail::conv_geometry<CONFIG>::IN_SIZE], res_t y[conv2d_output_size<CONFIG>()],
                  const weight_t w[CONFIG::out_channels][detail::conv_geometry<CONFIG>::COLS],
                  const bias_t bias[CONFIG::out_channels], SPARSECC_CONV2D_EPILOGUE_ARGS) {
#pragma HLS DATAFLOW
    typename CONFIG::accum_t acc[1][detail::conv_geometry<CONFIG>::OUT_SIZE];
    detail::conv_dense_acc<CONFIG>(x, w, bias, acc);
    SPARSECC_CONV2D_EPILOGUE(1);
}

/// Weight-sparse convolution (ELL gather per output, dense input): idx/val[O][fan_in].
template <class CONFIG, class data_t, class res_t, class index_t, class weight_t, class bias_t>
void conv2d_ell(const data_t x[detail::conv_geometry<CONFIG>::IN_SIZE], res_t y[conv2d_output_size<CONFIG>()],
                const index_t idx[CONFIG::out_channels][CONFIG::fan_in],
                const weight_t val[CONFIG::out_channels][CONFIG::fan_in], const bias_t bias[CONFIG::out_channels],
                SPARSECC_CONV2D_EPILOGUE_ARGS) {
#pragma HLS DATAFLOW
    typename CONFIG::accum_t acc[1][detail::conv_geometry<CONFIG>::OUT_SIZE];
    detail::conv_ell_acc<CONFIG>(x, idx, val, bias, acc);
    detail::ieee_fix<detail::conv_geometry<CONFIG>, CONFIG, ieee_on<CONFIG, data_t>::value>::template rows<1>(
        x, idx, val, acc);
    SPARSECC_CONV2D_EPILOGUE(1);
}

/// Activation-sparse convolution (dense weights w[O][COLS]): only the non-zero inputs, each scattering,
/// through every kernel tap that reaches an output pixel, its whole weight column.
template <class CONFIG, class data_t, class res_t, class weight_t, class bias_t>
void conv2d_act_sparse(const data_t x[detail::conv_geometry<CONFIG>::IN_SIZE],
                       res_t y[conv2d_output_size<CONFIG>()],
                       const weight_t w[CONFIG::out_channels][detail::conv_geometry<CONFIG>::COLS],
                       const bias_t bias[CONFIG::out_channels], SPARSECC_CONV2D_EPILOGUE_ARGS) {
#pragma HLS DATAFLOW
    hls::stream<active_entry<data_t> > active("active_inputs");
#pragma HLS STREAM variable = active depth = 64
    typename CONFIG::accum_t acc[CONFIG::lanes][detail::conv_geometry<CONFIG>::OUT_SIZE / CONFIG::lanes];
    compact_nonzero<detail::conv_geometry<CONFIG>::IN_SIZE, CONFIG::layer>(x, active);
    detail::conv_column_scatter_acc<CONFIG>(active, w, bias, acc);
    SPARSECC_CONV2D_EPILOGUE(CONFIG::lanes);
}

/// Sparse-sparse convolution: only the non-zero inputs, each scattering, through every kernel tap that
/// reaches an output pixel, the non-zeros of its banked CSC column (nnz = stored slots x lanes).
template <class CONFIG, class data_t, class res_t, class ptr_t, class index_t, class weight_t, class bias_t>
void conv2d_sparse_sparse(const data_t x[detail::conv_geometry<CONFIG>::IN_SIZE],
                          res_t y[conv2d_output_size<CONFIG>()],
                          const ptr_t col_ptr[detail::conv_geometry<CONFIG>::COLS + 1],
                          const index_t row_idx[CONFIG::nnz], const weight_t val[CONFIG::nnz],
                          const bias_t bias[CONFIG::out_channels], SPARSECC_CONV2D_EPILOGUE_ARGS) {
#pragma HLS DATAFLOW
    hls::stream<active_entry<data_t> > active("active_inputs");
#pragma HLS STREAM variable = active depth = 64
    typename CONFIG::accum_t acc[CONFIG::lanes][detail::conv_geometry<CONFIG>::OUT_SIZE / CONFIG::lanes];
    compact_nonzero<detail::conv_geometry<CONFIG>::IN_SIZE, CONFIG::layer>(x, active);
    detail::conv_scatter_acc<CONFIG>(active, col_ptr, row_idx, val, bias, acc);
    detail::ieee_fix<detail::conv_geometry<CONFIG>, CONFIG, ieee_on<CONFIG, data_t>::value>::template csc<
        CONFIG::lanes>(x, col_ptr, row_idx, acc);
    SPARSECC_CONV2D_EPILOGUE(CONFIG::lanes);
}

/// Complementary-packed convolution, dense input: per output pixel, one dense MAC pass per group.
template <class CONFIG, class data_t, class res_t, class weight_t, class slot_t, class row_t, class bias_t>
void conv2d_complementary(const data_t x[detail::conv_geometry<CONFIG>::IN_SIZE],
                          res_t y[conv2d_output_size<CONFIG>()],
                          const weight_t packed_val[CONFIG::n_groups][detail::conv_geometry<CONFIG>::COLS],
                          const slot_t packed_slot[CONFIG::n_groups][detail::conv_geometry<CONFIG>::COLS],
                          const row_t group_rows[CONFIG::n_groups][CONFIG::pack_size],
                          const bias_t bias[CONFIG::out_channels], SPARSECC_CONV2D_EPILOGUE_ARGS) {
#pragma HLS DATAFLOW
    typename CONFIG::accum_t acc[1][detail::conv_geometry<CONFIG>::OUT_SIZE];
    detail::conv_packed_acc<CONFIG>(x, packed_val, packed_slot, group_rows, bias, acc);
    detail::ieee_fix<detail::conv_geometry<CONFIG>, CONFIG, ieee_on<CONFIG, data_t>::value>::packed(
        x, packed_val, packed_slot, group_rows, acc);
    SPARSECC_CONV2D_EPILOGUE(1);
}

/// Complementary-packed convolution, sparse input: each active input, for each kernel tap that reaches an
/// output pixel, reads its packed column (one weight per group) and routes the products to their units.
template <class CONFIG, class data_t, class res_t, class weight_t, class slot_t, class row_t, class bias_t>
void conv2d_complementary_sparse(const data_t x[detail::conv_geometry<CONFIG>::IN_SIZE],
                                 res_t y[conv2d_output_size<CONFIG>()],
                                 const weight_t packed_val[CONFIG::n_groups][detail::conv_geometry<CONFIG>::COLS],
                                 const slot_t packed_slot[CONFIG::n_groups][detail::conv_geometry<CONFIG>::COLS],
                                 const row_t group_rows[CONFIG::n_groups][CONFIG::pack_size],
                                 const bias_t bias[CONFIG::out_channels], SPARSECC_CONV2D_EPILOGUE_ARGS) {
#pragma HLS DATAFLOW
    hls::stream<active_entry<data_t> > active("active_inputs");
#pragma HLS STREAM variable = active depth = 64
    typename CONFIG::accum_t acc[1][detail::conv_geometry<CONFIG>::OUT_SIZE];
    compact_nonzero<detail::conv_geometry<CONFIG>::IN_SIZE, CONFIG::layer>(x, active);
    detail::conv_packed_scatter_acc<CONFIG>(active, packed_val, packed_slot, group_rows, bias, acc);
    detail::ieee_fix<detail::conv_geometry<CONFIG>, CONFIG, ieee_on<CONFIG, data_t>::value>::packed(
        x, packed_val, packed_slot, group_rows, acc);
    SPARSECC_CONV2D_EPILOGUE(1);
}

#undef SPARSECC_CONV2D_EPILOGUE
#undef SPARSECC_CONV2D_EPILOGUE_ARGS

}  // namespace sparsecc

#endif  // SPARSECC_CONV2D_H
