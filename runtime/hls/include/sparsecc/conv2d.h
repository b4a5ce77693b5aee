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
// Every kernel has the signature  (x, y, <weight arrays>, bias, scale = nullptr, shift = nullptr,
// boost = nullptr). y has conv2d_output_size<CONFIG>() elements (pooled size when the epilogue pools).
// Weight formats: see formats.h; a column index is c * kernel_h * kernel_w + ky * kernel_w + kx.
//
// Cycle cost per sample (pipelined inner loops, II = 1; OP = out_height * out_width, plus the epilogue):
//     dense                 O * OP * COLS
//     ell                   O * OP * fan_in
//     act_sparse            C*H*W (compaction) + active inputs * taps * O  ~ C*H*W + a * O * COLS * OP
//     sparse_sparse         C*H*W (compaction) + sum over active inputs and their kernel taps that hit an
//                           output pixel of the column's non-zeros  ~ C*H*W + a * nnz * H*W / (sh*sw)
//     complementary         G * OP * COLS
//     complementary_sparse  C*H*W + active inputs * taps * G
#ifndef SPARSECC_CONV2D_H
#define SPARSECC_CONV2D_H

#include "common.h"
#include "epilogue.h"
#include "formats.h"

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

template <class CONFIG, class data_t, class weight_t, class bias_t, class acc_t>
void conv_dense_acc(const data_t x[conv_geometry<CONFIG>::IN_SIZE],
                    const weight_t w[CONFIG::out_channels][conv_geometry<CONFIG>::COLS],
                    const bias_t bias[CONFIG::out_channels], acc_t acc[conv_geometry<CONFIG>::OUT_SIZE]) {
    typedef conv_geometry<CONFIG> geo;
conv_dense_outputs:
    for (unsigned q = 0; q < geo::OUT_SIZE; q++) {
        const unsigned o = q / (geo::OH * geo::OW), oy = (q / geo::OW) % geo::OH, ox = q % geo::OW;
        acc_t a = value_of(bias[o]);
    conv_dense_mac:
        for (unsigned col = 0; col < geo::COLS; col++) {
#pragma HLS PIPELINE II = 1
            unsigned i;
            if (geo::input_of(col, oy, ox, i)) a += value_of(w[o][col]) * x[i];
        }
        acc[q] = a;
    }
}

template <class CONFIG, class data_t, class index_t, class weight_t, class bias_t, class acc_t>
void conv_ell_acc(const data_t x[conv_geometry<CONFIG>::IN_SIZE],
                  const index_t idx[CONFIG::out_channels][CONFIG::fan_in],
                  const weight_t val[CONFIG::out_channels][CONFIG::fan_in],
                  const bias_t bias[CONFIG::out_channels], acc_t acc[conv_geometry<CONFIG>::OUT_SIZE]) {
    typedef conv_geometry<CONFIG> geo;
conv_ell_outputs:
    for (unsigned q = 0; q < geo::OUT_SIZE; q++) {
        const unsigned o = q / (geo::OH * geo::OW), oy = (q / geo::OW) % geo::OH, ox = q % geo::OW;
        acc_t a = value_of(bias[o]);
    conv_ell_mac:
        for (unsigned f = 0; f < CONFIG::fan_in; f++) {
#pragma HLS PIPELINE II = 1
            unsigned i;
            if (geo::input_of(idx[o][f], oy, ox, i)) a += value_of(val[o][f]) * x[i];
        }
        acc[q] = a;
    }
}

template <class CONFIG, class bias_t, class acc_t>
void conv_bias_init(const bias_t bias[CONFIG::out_channels], acc_t acc[conv_geometry<CONFIG>::OUT_SIZE]) {
    typedef conv_geometry<CONFIG> geo;
conv_bias_init:
    for (unsigned q = 0; q < geo::OUT_SIZE; q++) {
#pragma HLS PIPELINE II = 1
        acc[q] = value_of(bias[q / (geo::OH * geo::OW)]);
    }
}

template <class CONFIG, class data_t, class ptr_t, class index_t, class weight_t, class bias_t, class acc_t>
void conv_scatter_acc(hls::stream<active_entry<data_t> >& active,
                      const ptr_t col_ptr[conv_geometry<CONFIG>::COLS + 1], const index_t row_idx[CONFIG::nnz],
                      const weight_t val[CONFIG::nnz], const bias_t bias[CONFIG::out_channels],
                      acc_t acc[conv_geometry<CONFIG>::OUT_SIZE]) {
    typedef conv_geometry<CONFIG> geo;
    constexpr unsigned OP = geo::OH * geo::OW;
    conv_bias_init<CONFIG>(bias, acc);
conv_scatter_inputs:
    for (;;) {
#pragma HLS LOOP_TRIPCOUNT min = 0 max = geo::IN_SIZE
        const active_entry<data_t> e = active.read();
        if (e.last) break;
        const unsigned c = e.index / (geo::H * geo::W);
        const unsigned iy = (e.index / geo::W) % geo::H, ix = e.index % geo::W;
    conv_scatter_taps:
        for (unsigned tap = 0; tap < geo::KK; tap++) {
            unsigned pixel;
            if (!geo::output_of(iy, ix, tap, pixel)) continue;
            const unsigned col = c * geo::KK + tap;
        conv_scatter_column:
            for (unsigned p = col_ptr[col]; p < unsigned(col_ptr[col + 1]); p++) {
#pragma HLS LOOP_TRIPCOUNT min = 0 max = CONFIG::out_channels
#pragma HLS PIPELINE II = 1
// the rows of one column are distinct: no read-after-write between iterations
#pragma HLS DEPENDENCE variable = acc type = inter false
                acc[unsigned(row_idx[p]) * OP + pixel] += value_of(val[p]) * e.value;
            }
        }
    }
}

template <class CONFIG, class data_t, class weight_t, class bias_t, class acc_t>
void conv_column_scatter_acc(hls::stream<active_entry<data_t> >& active,
                             const weight_t w[CONFIG::out_channels][conv_geometry<CONFIG>::COLS],
                             const bias_t bias[CONFIG::out_channels], acc_t acc[conv_geometry<CONFIG>::OUT_SIZE]) {
    typedef conv_geometry<CONFIG> geo;
    constexpr unsigned OP = geo::OH * geo::OW;
    conv_bias_init<CONFIG>(bias, acc);
conv_column_scatter_inputs:
    for (;;) {
#pragma HLS LOOP_TRIPCOUNT min = 0 max = geo::IN_SIZE
        const active_entry<data_t> e = active.read();
        if (e.last) break;
        const unsigned c = e.index / (geo::H * geo::W);
        const unsigned iy = (e.index / geo::W) % geo::H, ix = e.index % geo::W;
    conv_column_scatter_taps:
        for (unsigned tap = 0; tap < geo::KK; tap++) {
            unsigned pixel;
            if (!geo::output_of(iy, ix, tap, pixel)) continue;
            const unsigned col = c * geo::KK + tap;
        // the whole (dense) weight column: one product per output channel
        conv_column_scatter_rows:
            for (unsigned o = 0; o < geo::O; o++) {
#pragma HLS PIPELINE II = 1
#pragma HLS DEPENDENCE variable = acc type = inter false
                acc[o * OP + pixel] += value_of(w[o][col]) * e.value;
            }
        }
    }
}

template <class CONFIG, class data_t, class weight_t, class slot_t, class row_t, class bias_t, class acc_t>
void conv_packed_acc(const data_t x[conv_geometry<CONFIG>::IN_SIZE],
                     const weight_t packed_val[CONFIG::n_groups][conv_geometry<CONFIG>::COLS],
                     const slot_t packed_slot[CONFIG::n_groups][conv_geometry<CONFIG>::COLS],
                     const row_t group_rows[CONFIG::n_groups][CONFIG::pack_size],
                     const bias_t bias[CONFIG::out_channels], acc_t acc[conv_geometry<CONFIG>::OUT_SIZE]) {
    typedef conv_geometry<CONFIG> geo;
    constexpr unsigned P = CONFIG::pack_size, OP = geo::OH * geo::OW;
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
        // one dense MAC pass for all units of the group, products routed by slot
        conv_packed_mac:
            for (unsigned col = 0; col < geo::COLS; col++) {
#pragma HLS PIPELINE II = 1
                unsigned i;
                if (geo::input_of(col, oy, ox, i)) slot_acc[packed_slot[g][col]] += value_of(packed_val[g][col]) * x[i];
            }
        conv_packed_store:
            for (unsigned s = 0; s < P; s++) {
#pragma HLS PIPELINE II = 1
                const unsigned r = group_rows[g][s];
                if (r < geo::O) acc[r * OP + pixel] = slot_acc[s];
            }
        }
    }
}

template <class CONFIG, class data_t, class weight_t, class slot_t, class row_t, class bias_t, class acc_t>
void conv_packed_scatter_acc(hls::stream<active_entry<data_t> >& active,
                             const weight_t packed_val[CONFIG::n_groups][conv_geometry<CONFIG>::COLS],
                             const slot_t packed_slot[CONFIG::n_groups][conv_geometry<CONFIG>::COLS],
                             const row_t group_rows[CONFIG::n_groups][CONFIG::pack_size],
                             const bias_t bias[CONFIG::out_channels], acc_t acc[conv_geometry<CONFIG>::OUT_SIZE]) {
    typedef conv_geometry<CONFIG> geo;
    constexpr unsigned OP = geo::OH * geo::OW;
    check_packed_rows<geo::O, CONFIG::n_groups, CONFIG::pack_size>(group_rows);
    conv_bias_init<CONFIG>(bias, acc);
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
        // one packed weight per group; the groups' units are distinct
        conv_packed_scatter_groups:
            for (unsigned g = 0; g < CONFIG::n_groups; g++) {
#pragma HLS PIPELINE II = 1
#pragma HLS DEPENDENCE variable = acc type = inter false
                const typename value_type<weight_t>::type w = value_of(packed_val[g][col]);
                if (is_nonzero(w)) acc[unsigned(group_rows[g][packed_slot[g][col]]) * OP + pixel] += w * e.value;
            }
        }
    }
}

}  // namespace detail

#define SPARSECC_CONV2D_EPILOGUE_ARGS                                                           \
    const typename CONFIG::scale_t scale[CONFIG::out_channels] = nullptr,                        \
    const typename CONFIG::scale_t shift[CONFIG::out_channels] = nullptr,                        \
    const typename CONFIG::kwta_config::boost_t boost[CONFIG::out_channels] = nullptr

/// Dense convolution: w[O][COLS].
template <class CONFIG, class data_t, class res_t, class weight_t, class bias_t>
void conv2d_dense(const data_t x[detail::conv_geometry<CONFIG>::IN_SIZE], res_t y[conv2d_output_size<CONFIG>()],
                  const weight_t w[CONFIG::out_channels][detail::conv_geometry<CONFIG>::COLS],
                  const bias_t bias[CONFIG::out_channels], SPARSECC_CONV2D_EPILOGUE_ARGS) {
#pragma HLS DATAFLOW
    typename CONFIG::accum_t acc[detail::conv_geometry<CONFIG>::OUT_SIZE];
    detail::conv_dense_acc<CONFIG>(x, w, bias, acc);
    detail::epilogue<CONFIG, CONFIG::out_channels, CONFIG::out_height, CONFIG::out_width>(acc, y, scale, shift,
                                                                                         boost);
}

/// Weight-sparse convolution (ELL gather per output, dense input): idx/val[O][fan_in].
template <class CONFIG, class data_t, class res_t, class index_t, class weight_t, class bias_t>
void conv2d_ell(const data_t x[detail::conv_geometry<CONFIG>::IN_SIZE], res_t y[conv2d_output_size<CONFIG>()],
                const index_t idx[CONFIG::out_channels][CONFIG::fan_in],
                const weight_t val[CONFIG::out_channels][CONFIG::fan_in], const bias_t bias[CONFIG::out_channels],
                SPARSECC_CONV2D_EPILOGUE_ARGS) {
#pragma HLS DATAFLOW
    typename CONFIG::accum_t acc[detail::conv_geometry<CONFIG>::OUT_SIZE];
    detail::conv_ell_acc<CONFIG>(x, idx, val, bias, acc);
    detail::epilogue<CONFIG, CONFIG::out_channels, CONFIG::out_height, CONFIG::out_width>(acc, y, scale, shift,
                                                                                         boost);
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
    typename CONFIG::accum_t acc[detail::conv_geometry<CONFIG>::OUT_SIZE];
    compact_nonzero<detail::conv_geometry<CONFIG>::IN_SIZE>(x, active);
    detail::conv_column_scatter_acc<CONFIG>(active, w, bias, acc);
    detail::epilogue<CONFIG, CONFIG::out_channels, CONFIG::out_height, CONFIG::out_width>(acc, y, scale, shift,
                                                                                         boost);
}

/// Sparse-sparse convolution: only the non-zero inputs, each scattering, through every kernel tap that
/// reaches an output pixel, the non-zeros of its CSC column.
template <class CONFIG, class data_t, class res_t, class ptr_t, class index_t, class weight_t, class bias_t>
void conv2d_sparse_sparse(const data_t x[detail::conv_geometry<CONFIG>::IN_SIZE],
                          res_t y[conv2d_output_size<CONFIG>()],
                          const ptr_t col_ptr[detail::conv_geometry<CONFIG>::COLS + 1],
                          const index_t row_idx[CONFIG::nnz], const weight_t val[CONFIG::nnz],
                          const bias_t bias[CONFIG::out_channels], SPARSECC_CONV2D_EPILOGUE_ARGS) {
#pragma HLS DATAFLOW
    hls::stream<active_entry<data_t> > active("active_inputs");
#pragma HLS STREAM variable = active depth = 64
    typename CONFIG::accum_t acc[detail::conv_geometry<CONFIG>::OUT_SIZE];
    compact_nonzero<detail::conv_geometry<CONFIG>::IN_SIZE>(x, active);
    detail::conv_scatter_acc<CONFIG>(active, col_ptr, row_idx, val, bias, acc);
    detail::epilogue<CONFIG, CONFIG::out_channels, CONFIG::out_height, CONFIG::out_width>(acc, y, scale, shift,
                                                                                         boost);
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
    typename CONFIG::accum_t acc[detail::conv_geometry<CONFIG>::OUT_SIZE];
    detail::conv_packed_acc<CONFIG>(x, packed_val, packed_slot, group_rows, bias, acc);
    detail::epilogue<CONFIG, CONFIG::out_channels, CONFIG::out_height, CONFIG::out_width>(acc, y, scale, shift,
                                                                                         boost);
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
    typename CONFIG::accum_t acc[detail::conv_geometry<CONFIG>::OUT_SIZE];
    compact_nonzero<detail::conv_geometry<CONFIG>::IN_SIZE>(x, active);
    detail::conv_packed_scatter_acc<CONFIG>(active, packed_val, packed_slot, group_rows, bias, acc);
    detail::epilogue<CONFIG, CONFIG::out_channels, CONFIG::out_height, CONFIG::out_width>(acc, y, scale, shift,
                                                                                         boost);
}

#undef SPARSECC_CONV2D_EPILOGUE_ARGS

}  // namespace sparsecc

#endif  // SPARSECC_CONV2D_H
