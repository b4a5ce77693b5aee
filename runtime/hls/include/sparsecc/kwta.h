// sparsecc HLS kernel library — k-winners-take-all.
//
// Semantics (nupic.torch at inference, DESIGN.md §2), per selection group:
//     boosted   = x * boost[c]            (x itself when the config has boost = false)
//     threshold = k-th largest boosted value of the group
//     y         = (boosted < threshold) ? 0 : x
// Ties at the threshold all survive (more than k outputs may be non-zero) unless `break_ties`, in which
// case exactly k survive and among equal values the LOWER index wins. Winners keep their ORIGINAL x
// (possibly negative).
//
// Groups: global (`local = false`) selects over all C*H*W values of the sample; local (`local = true`)
// selects over the C channels independently at each (h, w). 1-D KWinners(n) is channels = n, H = W = 1.
// The boost factor is per channel (`boost[c]` for every h, w; per unit for 1-D).
//
// Algorithm: exact radix select on an order-preserving integer key of the boosted value (no sort).
//   key(float): IEEE bits, sign bit set for positives / all bits flipped for negatives, with -0.0 mapped to
//               the key of +0.0, so that `key(a) < key(b)` <=> `a < b` (IEEE) for all non-NaN floats;
//   key(ap_fixed<W,...>): the W raw bits with the sign bit flipped (two's complement -> offset binary);
//               the boosted value of an ap_fixed x and ap_(u)fixed boost is their full-precision product.
//   With R = radix_bits and B = key bits, P = ceil(B / R) passes, most significant digit first: each pass
//   builds a 2^R-bin histogram of the digit of the keys that match the digits chosen so far, then scans it
//   from the top bin to find the bin holding the rank-th largest key. After P passes the chosen digits form
//   the exact key of the k-th largest value, and `rank` is how many values EQUAL to it must be kept to
//   have k winners (used by break_ties: the first `rank` equal values in index order).
//   R = 1 is the bitwise binary search (count of keys >= candidate, one bit per pass).
//
// Cycle cost per group of N values (all loops pipelined at II = 1, histogram bins in registers):
//     P * (N + 2^R) + N        e.g. float, R = 4: 8 * (N + 16) + N  ~ 9 N
//                                   float, R = 8: 4 * (N + 256) + N ~ 5 N  (256 counters in registers)
//                                   float, R = 1: 32 * (N + 2) + N  ~ 33 N
// Global: one group, N = C*H*W. Local: H*W groups of N = C. No extra storage: the key is recomputed from
// x and boost in every pass (one multiplier), so x must stay readable for P + 1 passes (a PIPO buffer).
// GSC layer 1 (N = 50176, float, R = 4): ~9 x 50176 = 0.45 M cycles at one lane. With U = KCFG::lanes
// (global selection) the count and select loops handle U values per cycle (x and y partitioned cyclic by U,
// U histograms summed in the scan): P * (ceil(N / U) + 2^R) + ceil(N / U) cycles.
// IEEE (float data, KCFG::ieee or the fused layer's ieee, see ieee.h): every NaN gets the largest key, so NaN
// ranks above +inf and all NaN tie (lower index first with break_ties); with ties kept, a group holding k or
// more NaN has a NaN threshold and keeps every unit (nothing is below NaN). One comparator per key.
#ifndef SPARSECC_KWTA_H
#define SPARSECC_KWTA_H

#include <type_traits>

#include "common.h"
#include "ieee.h"

namespace sparsecc {

/// Order-preserving unsigned key of a value: `key(a) < key(b)` iff `a < b`, equal keys iff `a == b`.
template <class T>
struct order_key {
    static_assert(sizeof(T) == 0, "sparsecc::order_key: k-WTA supports float, double, ap_fixed, ap_ufixed");
};

template <>
struct order_key<float> {
    static constexpr unsigned bits = 32;
    typedef uint32_t type;
    static type of(float v) {
#pragma HLS INLINE
        union {
            float f;
            uint32_t u;
        } pun;
        pun.f = v;
        if (v == 0.0f) return 0x80000000u;   // -0.0 == +0.0
        return (pun.u & 0x80000000u) ? ~pun.u : (pun.u | 0x80000000u);
    }
};

template <>
struct order_key<double> {
    static constexpr unsigned bits = 64;
    typedef uint64_t type;
    static type of(double v) {
#pragma HLS INLINE
        union {
            double f;
            uint64_t u;
        } pun;
        pun.f = v;
        const uint64_t sign = uint64_t(1) << 63;
        if (v == 0.0) return sign;
        return (pun.u & sign) ? ~pun.u : (pun.u | sign);
    }
};

template <int W, int I, ap_q_mode Q, ap_o_mode O, int N>
struct order_key<ap_fixed<W, I, Q, O, N> > {
    static constexpr unsigned bits = W;
    typedef ap_uint<W> type;
    static type of(const ap_fixed<W, I, Q, O, N>& v) {
#pragma HLS INLINE
        type k = v.range(W - 1, 0);
        k[W - 1] = !k[W - 1];
        return k;
    }
};

template <int W, int I, ap_q_mode Q, ap_o_mode O, int N>
struct order_key<ap_ufixed<W, I, Q, O, N> > {
    static constexpr unsigned bits = W;
    typedef ap_uint<W> type;
    static type of(const ap_ufixed<W, I, Q, O, N>& v) {
#pragma HLS INLINE
        type k = v.range(W - 1, 0);
        return k;
    }
};

namespace detail {

/// The value k-WTA ranks: x, or x * boost at full precision.
template <bool BOOST, class data_t, class boost_t>
struct selection_value {
    typedef data_t type;
    static type of(const data_t& x, const boost_t* /*boost*/, unsigned /*c*/) {
#pragma HLS INLINE
        return x;
    }
};
template <class data_t, class boost_t>
struct selection_value<true, data_t, boost_t> {
    typedef typename value_type<boost_t>::type factor_t;   // boost_t may be a stored word<>
    static_assert(std::is_floating_point<data_t>::value == std::is_floating_point<factor_t>::value,
                  "k-WTA boost: use a floating-point boost_t with floating-point data and an ap_fixed / "
                  "ap_ufixed boost_t with ap_fixed data (the product must be exact or IEEE-rounded)");
    typedef decltype(data_t() * factor_t()) type;
    static type of(const data_t& x, const boost_t* boost, unsigned c) {
#pragma HLS INLINE
        return x * value_of(boost[c]);
    }
};

/// The k-WTA key of a selection value (order_key); with IEEE every NaN maps to the largest key (above +inf).
template <bool IEEE, class value_t>
inline typename order_key<value_t>::type selection_key(const value_t& v) {
#pragma HLS INLINE
    typedef typename order_key<value_t>::type key_t;
    return (IEEE && is_nan(v)) ? key_t(~key_t(0)) : order_key<value_t>::of(v);
}

/// Digit `shift / R` (R bits) of a key.
template <unsigned R, class key_t>
inline unsigned key_digit(const key_t& key, unsigned shift) {
#pragma HLS INLINE
    return static_cast<unsigned>((key >> shift) & key_t((1u << R) - 1u));
}

/// Geometry of the selection groups: element j of group g lives at x[index(g, j)] and has channel
/// channel(g, j).
template <unsigned C, unsigned HW, bool LOCAL>
struct kwta_groups {
    static constexpr unsigned count = LOCAL ? HW : 1;
    static constexpr unsigned size = LOCAL ? C : C * HW;
    static unsigned index(unsigned g, unsigned j) {
#pragma HLS INLINE
        return LOCAL ? j * HW + g : j;
    }
    static unsigned channel(unsigned /*g*/, unsigned j) {
#pragma HLS INLINE
        return LOCAL ? j : j / HW;
    }
};

/// Lanes of a k-WTA unit: KCFG::lanes for global selection (consecutive values, x partitioned cyclic),
/// 1 for local selection (its group's values are strided).
template <class KCFG>
struct kwta_lanes {
    static constexpr unsigned value = KCFG::local ? 1 : KCFG::lanes;
};

/// Exact radix select in one group: the key of the K-th largest selection value (`threshold`) and how
/// many elements equal to it are needed to make K winners (`ties_needed`, >= 1). U = kwta_lanes lanes
/// each count into their own histogram (registers); the bin scan adds the U counts of a bin.
template <class KCFG, unsigned C, unsigned HW, bool IEEE, class data_t, class boost_t>
void kwta_threshold(const data_t x[C * HW], const boost_t* boost, unsigned g,
                    typename order_key<typename selection_value<KCFG::boost, data_t, boost_t>::type>::type& threshold,
                    unsigned& ties_needed) {
#pragma HLS INLINE off
    typedef selection_value<KCFG::boost, data_t, boost_t> sel;
    typedef order_key<typename sel::type> keys;
    typedef typename keys::type key_t;
    typedef kwta_groups<C, HW, KCFG::local> groups;
    const unsigned R = KCFG::radix_bits;
    const unsigned BINS = 1u << R;
    const unsigned PASSES = (keys::bits + R - 1) / R;
    const unsigned N = groups::size;
    const unsigned U = kwta_lanes<KCFG>::value;
    const unsigned STEPS = ceil_div(N, U);

    key_t prefix = 0;   // digits chosen so far
    key_t known = 0;    // mask of the bits chosen so far
    unsigned rank = KCFG::k;   // rank (1 = largest) still to find among the keys matching `prefix`
kwta_passes:
    for (unsigned p = 0; p < PASSES; p++) {
        const unsigned shift = (PASSES - 1 - p) * R;
        unsigned hist[U][BINS];
#pragma HLS ARRAY_PARTITION variable = hist complete dim = 0
    kwta_clear:
        for (unsigned u = 0; u < U; u++) {
#pragma HLS UNROLL
            for (unsigned b = 0; b < BINS; b++) {
#pragma HLS UNROLL
                hist[u][b] = 0;
            }
        }
        SPARSECC_ENTER(KCFG::layer, instrument::KWTA);
    kwta_count:
        for (unsigned s = 0; s < STEPS; s++) {
#pragma HLS PIPELINE II = 1
            SPARSECC_COUNT(KCFG::layer, instrument::KWTA, 1);
        kwta_count_lanes:
            for (unsigned u = 0; u < U; u++) {
#pragma HLS UNROLL
                const unsigned j = s * U + u;
                if (j < N) {
                    const unsigned i = groups::index(g, j);
                    const key_t key = selection_key<IEEE>(sel::of(x[i], boost, groups::channel(g, j)));
                    if ((key & known) == prefix) hist[u][key_digit<R>(key, shift)]++;
                }
            }
        }
        unsigned above = 0;   // matching keys in bins above the chosen one
        unsigned chosen = 0;
        bool found = false;
        SPARSECC_ENTER(KCFG::layer, instrument::KWTA);
    kwta_scan:
        for (unsigned t = 0; t < BINS; t++) {
#pragma HLS PIPELINE II = 1
            SPARSECC_COUNT(KCFG::layer, instrument::KWTA, 1);
            const unsigned b = BINS - 1 - t;   // from the largest digit down
            unsigned count = 0;
        kwta_scan_lanes:
            for (unsigned u = 0; u < U; u++) {
#pragma HLS UNROLL
                count += hist[u][b];
            }
            if (!found) {
                if (above + count >= rank) {
                    chosen = b;
                    found = true;
                } else {
                    above += count;
                }
            }
        }
        rank -= above;
        prefix |= key_t(chosen) << shift;
        known |= key_t(BINS - 1) << shift;
    }
    threshold = prefix;
    ties_needed = rank;
}

/// k-WTA over a C x (H*W) sample; the kernel behind `kwta<>` and the fused epilogue. With U lanes, x and y
/// are read / written U consecutive elements per cycle (partition them cyclic by U).
template <class KCFG, unsigned C, unsigned HW, bool IEEE_CONFIG = KCFG::ieee, class data_t, class res_t,
          class boost_t>
void kwta_apply(const data_t x[C * HW], res_t y[C * HW], const boost_t* boost) {
    typedef selection_value<KCFG::boost, data_t, boost_t> sel;
    static const bool IEEE = IEEE_CONFIG && std::is_floating_point<typename sel::type>::value;
    typedef order_key<typename sel::type> keys;
    typedef typename keys::type key_t;
    typedef kwta_groups<C, HW, KCFG::local> groups;
    static_assert(KCFG::k >= 1 && KCFG::k <= groups::size, "k-WTA: k must be in [1, group size]");
    static_assert(KCFG::radix_bits >= 1 && KCFG::radix_bits <= 8, "k-WTA: radix_bits must be in [1, 8]");
    static_assert(KCFG::lanes >= 1, "k-WTA: lanes must be >= 1");
    const unsigned U = kwta_lanes<KCFG>::value;
    const unsigned STEPS = ceil_div(groups::size, U);
#pragma HLS ARRAY_PARTITION variable = x cyclic factor = U
#pragma HLS ARRAY_PARTITION variable = y cyclic factor = U

kwta_groups_loop:
    for (unsigned g = 0; g < groups::count; g++) {
        key_t threshold = 0;
        unsigned ties_needed = 0;
        kwta_threshold<KCFG, C, HW, IEEE>(x, boost, g, threshold, ties_needed);
        // IEEE, ties kept: a NaN threshold (k or more NaN) keeps every unit
        const bool keep_all = IEEE && !KCFG::break_ties && threshold == key_t(~key_t(0));
        unsigned ties_taken = 0;
        SPARSECC_ENTER(KCFG::layer, instrument::KWTA);
    kwta_select:
        for (unsigned s = 0; s < STEPS; s++) {
#pragma HLS PIPELINE II = 1
            SPARSECC_COUNT(KCFG::layer, instrument::KWTA, 1);
            unsigned equal_before = 0;   // ties met by the lower lanes of this step (index order)
        kwta_select_lanes:
            for (unsigned u = 0; u < U; u++) {
#pragma HLS UNROLL
                const unsigned j = s * U + u;
                if (j < groups::size) {
                    const unsigned i = groups::index(g, j);
                    const key_t key = selection_key<IEEE>(sel::of(x[i], boost, groups::channel(g, j)));
                    bool keep = key > threshold || keep_all;
                    if (key == threshold) {
                        keep = !KCFG::break_ties || ties_taken + equal_before < ties_needed;
                        equal_before++;
                    }
                    y[i] = keep ? res_t(x[i]) : res_t(0);
                }
            }
            ties_taken += equal_before;
        }
    }
}

}  // namespace detail

/// Standalone k-WTA (KWinners / KWinners2d) on one sample.
/// KCFG derives from kwta_defaults and sets k, channels (and height, width for 2-D).
/// `boost[channels]` is read only when KCFG::boost; its type is KCFG::boost_t.
/// Unboosted layers pass `no_values<boost_t, channels>::values`.
template <class KCFG, class data_t, class res_t>
void kwta(const data_t x[KCFG::channels * KCFG::height * KCFG::width],
          res_t y[KCFG::channels * KCFG::height * KCFG::width],
          const typename KCFG::boost_t boost[KCFG::channels]) {
    detail::kwta_apply<KCFG, KCFG::channels, KCFG::height * KCFG::width>(x, y, boost);
}

}  // namespace sparsecc

#endif  // SPARSECC_KWTA_H
