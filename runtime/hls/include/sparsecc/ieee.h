// sparsecc HLS kernel library — IEEE special values (inf, NaN) in float designs.
//
// The reference interpreter (= onnxruntime's dense product) forms `0 * x` for every zero weight, so an output
// whose window holds an inf or NaN input met by a zero weight is NaN. The weight-skipping kernels (ell,
// sparse_sparse, complementary, complementary_sparse) never form those products. For float data, unless the
// layer config says `ieee = false` (fast math), the kernel runs one more stage between its MAC stage and its
// epilogue that restores the dense result exactly:
//
//     scan x once, counting non-finite inputs (one comparator on the exponent bits, IN_SIZE cycles, II = 1);
//     if none (the common case): done.
//     else, for ELL (row) formats: per output pixel, the number of non-finite inputs in its window (all
//         C x KH x KW taps; one counter per output pixel, filled by scattering only the non-finite inputs),
//         and per output (unit, pixel) the number of non-finite inputs its non-zero weights meet (re-reading
//         the row's idx / val, no multiplier): when the two counts differ, a zero weight met an inf or NaN and
//         the output is NaN;
//       for column formats (banked CSC, complementary packing): per non-finite input and kernel tap that
//         reaches an output pixel, the column's units with a stored weight are marked (an O-bit mask) and
//         every unmarked unit's output at that pixel becomes NaN.
//
// The products of the non-zero weights are unchanged, so the accumulators then hold exactly what the dense
// sum gives (up to the sign of zero and float rounding order, as before). NaN is absorbing, so the order of
// this stage and the MAC stage does not matter. ap_fixed data have no inf / NaN: every function here is the
// empty specialisation for them (no hardware). The dense and activation-sparse kernels multiply every weight
// (zeros included) and need no fix.
//
// k-WTA keys and max pooling are NaN-aware in float designs as well (see kwta.h, pool.h): NaN ranks above +inf
// (equal to every other NaN), a window holding a NaN pools to NaN.
#ifndef SPARSECC_IEEE_H
#define SPARSECC_IEEE_H

#include <limits>
#include <type_traits>

#include "common.h"

namespace sparsecc {

/// Whether a layer follows the IEEE rules: floating-point data and CONFIG::ieee (false with fast math).
template <class CONFIG, class data_t>
struct ieee_on {
    static constexpr bool value = CONFIG::ieee && std::is_floating_point<data_t>::value;
};

/// True for inf and NaN (all exponent bits set); false for every fixed-point value.
template <class T>
inline bool non_finite(const T& /*v*/) {
#pragma HLS INLINE
    return false;
}
inline bool non_finite(float v) {
#pragma HLS INLINE
    union {
        float f;
        uint32_t u;
    } pun;
    pun.f = v;
    return (pun.u & 0x7F800000u) == 0x7F800000u;
}
inline bool non_finite(double v) {
#pragma HLS INLINE
    union {
        double f;
        uint64_t u;
    } pun;
    pun.f = v;
    const uint64_t exponent = uint64_t(0x7FF) << 52;
    return (pun.u & exponent) == exponent;
}

/// True for NaN; false for every fixed-point value.
template <class T>
inline bool is_nan(const T& /*v*/) {
#pragma HLS INLINE
    return false;
}
inline bool is_nan(float v) {
#pragma HLS INLINE
    return v != v;
}
inline bool is_nan(double v) {
#pragma HLS INLINE
    return v != v;
}

/// max(a, b) for max pooling: with IEEE, a NaN on either side gives NaN (numpy's max); otherwise b > a ? b : a.
template <bool IEEE, class T>
inline T pool_max(const T& a, const T& b) {
#pragma HLS INLINE
    return (b > a || (IEEE && is_nan(b))) ? b : a;
}

namespace detail {

/// Geometry of a linear layer in the interface of conv_geometry (conv2d.h): C = in_features inputs of 1 x 1,
/// a 1 x 1 kernel, O = out_features units of one pixel.
template <class CONFIG>
struct linear_geometry {
    static constexpr unsigned C = CONFIG::in_features, H = 1, W = 1;
    static constexpr unsigned O = CONFIG::out_features, OH = 1, OW = 1;
    static constexpr unsigned KH = 1, KW = 1, KK = 1;
    static constexpr unsigned COLS = C, IN_SIZE = C, OUT_SIZE = O;
    static bool input_of(unsigned col, unsigned /*oy*/, unsigned /*ox*/, unsigned& index) {
#pragma HLS INLINE
        index = col;
        return true;
    }
    static bool output_of(unsigned /*iy*/, unsigned /*ix*/, unsigned /*tap*/, unsigned& pixel) {
#pragma HLS INLINE
        pixel = 0;
        return true;
    }
};

/// The IEEE stage of a weight-skipping layer (see the header comment); ON = false: nothing.
/// GEO: conv_geometry<CONFIG> or linear_geometry<CONFIG>. The accumulator comes in BANKS blocks of O / BANKS
/// units (block b holds units b * O / BANKS ..., each as OH * OW pixels).
template <class GEO, class CONFIG, bool ON>
struct ieee_fix {
    template <unsigned BANKS, class... A>
    static void rows(const A&... /*args*/) {}
    template <unsigned BANKS, class... A>
    static void csc(const A&... /*args*/) {}
    template <class... A>
    static void packed(const A&... /*args*/) {}
};

template <class GEO, class CONFIG>
struct ieee_fix<GEO, CONFIG, true> {
    static const unsigned OP = GEO::OH * GEO::OW;

    /// How many of x's elements are inf or NaN (IN_SIZE cycles).
    template <class data_t>
    static unsigned count_non_finite(const data_t x[GEO::IN_SIZE]) {
        unsigned count = 0;
        SPARSECC_ENTER(CONFIG::layer, instrument::SCAN);
    ieee_scan:
        for (unsigned i = 0; i < GEO::IN_SIZE; i++) {
#pragma HLS PIPELINE II = 1
            SPARSECC_COUNT(CONFIG::layer, instrument::SCAN, 1);
            count += non_finite(x[i]) ? 1u : 0u;
        }
        return count;
    }

    /// Sets the output (unit o, pixel) to NaN, for an accumulator of BANKS blocks.
    template <unsigned BANKS, class acc_t>
    static void poison(acc_t acc[BANKS][GEO::OUT_SIZE / BANKS], unsigned o, unsigned pixel) {
#pragma HLS INLINE
        const unsigned ROWS = GEO::O / BANKS;
        acc[o / ROWS][(o % ROWS) * OP + pixel] = std::numeric_limits<acc_t>::quiet_NaN();
    }

    /// ELL rows idx / val [O][fan_in] (val 0: padding, skipped by the MAC stage). Only when x holds an inf or
    /// NaN: window counts per pixel, then per output the count its non-zero weights meet.
    template <unsigned BANKS, unsigned FAN_IN, class data_t, class index_t, class weight_t, class acc_t>
    static void rows(const data_t x[GEO::IN_SIZE], const index_t idx[][FAN_IN], const weight_t val[][FAN_IN],
                     acc_t acc[BANKS][GEO::OUT_SIZE / BANKS]) {
        if (count_non_finite(x) == 0) return;
        unsigned window[OP];   // non-finite inputs in each output pixel's window
    ieee_window_clear:
        for (unsigned p = 0; p < OP; p++) window[p] = 0;
    ieee_window_inputs:
        for (unsigned i = 0; i < GEO::IN_SIZE; i++) {
            if (!non_finite(x[i])) continue;
            const unsigned iy = (i / GEO::W) % GEO::H, ix = i % GEO::W;
        ieee_window_taps:
            for (unsigned tap = 0; tap < GEO::KK; tap++) {
                unsigned pixel;
                if (GEO::output_of(iy, ix, tap, pixel)) window[pixel]++;
            }
        }
    ieee_rows:
        for (unsigned q = 0; q < GEO::OUT_SIZE; q++) {
            const unsigned o = q / OP, pixel = q % OP;
            if (window[pixel] == 0) continue;
            const unsigned oy = pixel / GEO::OW, ox = pixel % GEO::OW;
            unsigned met = 0;
        ieee_row_taps:
            for (unsigned f = 0; f < FAN_IN; f++) {
                unsigned i;
                if (is_nonzero(value_of(val[o][f])) && GEO::input_of(unsigned(idx[o][f]), oy, ox, i) &&
                    non_finite(x[i]))
                    met++;
            }
            if (met != window[pixel]) poison<BANKS>(acc, o, pixel);
        }
    }

    /// Units with no stored weight in the column `col` at `pixel` get NaN (mark holds the stored ones).
    template <unsigned BANKS, class acc_t>
    static void poison_unmarked(bool mark[GEO::O], unsigned pixel, acc_t acc[BANKS][GEO::OUT_SIZE / BANKS]) {
    ieee_poison:
        for (unsigned o = 0; o < GEO::O; o++) {
#pragma HLS PIPELINE II = 1
            if (!mark[o]) poison<BANKS>(acc, o, pixel);
            mark[o] = false;
        }
    }

    /// Banked CSC columns (formats.h): col_ptr counts slots of BANKS entries (row O: empty).
    template <unsigned BANKS, class data_t, class ptr_t, class index_t, class acc_t>
    static void csc(const data_t x[GEO::IN_SIZE], const ptr_t col_ptr[GEO::COLS + 1], const index_t* row_idx,
                    acc_t acc[BANKS][GEO::OUT_SIZE / BANKS]) {
        if (count_non_finite(x) == 0) return;
        bool mark[GEO::O];
    ieee_mark_clear:
        for (unsigned o = 0; o < GEO::O; o++) mark[o] = false;
    ieee_csc_inputs:
        for (unsigned i = 0; i < GEO::IN_SIZE; i++) {
            if (!non_finite(x[i])) continue;
            const unsigned c = i / (GEO::H * GEO::W), iy = (i / GEO::W) % GEO::H, ix = i % GEO::W;
        ieee_csc_taps:
            for (unsigned tap = 0; tap < GEO::KK; tap++) {
                unsigned pixel;
                if (!GEO::output_of(iy, ix, tap, pixel)) continue;
                const unsigned col = c * GEO::KK + tap;
            ieee_csc_slots:
                for (unsigned e = unsigned(col_ptr[col]) * BANKS; e < unsigned(col_ptr[col + 1]) * BANKS; e++) {
                    const unsigned row = row_idx[e];
                    if (row < GEO::O) mark[row] = true;
                }
                poison_unmarked<BANKS>(mark, pixel, acc);
            }
        }
    }

    /// Complementary packing (formats.h): in column col, group g's unit group_rows[g][packed_slot[g][col]]
    /// has a stored weight where packed_val[g][col] != 0 (the MAC stage skips the others).
    template <unsigned P, class data_t, class weight_t, class slot_t, class row_t, class acc_t>
    static void packed(const data_t x[GEO::IN_SIZE], const weight_t packed_val[][GEO::COLS],
                       const slot_t packed_slot[][GEO::COLS], const row_t group_rows[][P],
                       acc_t acc[1][GEO::OUT_SIZE]) {
        if (count_non_finite(x) == 0) return;
        bool mark[GEO::O];
    ieee_mark_clear:
        for (unsigned o = 0; o < GEO::O; o++) mark[o] = false;
    ieee_packed_inputs:
        for (unsigned i = 0; i < GEO::IN_SIZE; i++) {
            if (!non_finite(x[i])) continue;
            const unsigned c = i / (GEO::H * GEO::W), iy = (i / GEO::W) % GEO::H, ix = i % GEO::W;
        ieee_packed_taps:
            for (unsigned tap = 0; tap < GEO::KK; tap++) {
                unsigned pixel;
                if (!GEO::output_of(iy, ix, tap, pixel)) continue;
                const unsigned col = c * GEO::KK + tap;
            ieee_packed_groups:
                for (unsigned g = 0; g < CONFIG::n_groups; g++) {
                    if (is_nonzero(value_of(packed_val[g][col]))) {
                        const unsigned row = group_rows[g][packed_slot[g][col]];
                        if (row < GEO::O) mark[row] = true;
                    }
                }
                poison_unmarked<1>(mark, pixel, acc);
            }
        }
    }
};

}  // namespace detail
}  // namespace sparsecc

#endif  // SPARSECC_IEEE_H
