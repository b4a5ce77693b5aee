// sparsecc HLS kernel library — common definitions.
//
// Every kernel in this library processes ONE sample of an NCHW tensor held in a flat array
// (`x[c * H * W + y * W + x]`). The generated top function loops over the batch.
//
// Types: kernels are templated on their data, weight and result types (deduced from the array arguments)
// and read the accumulator type and the epilogue parameter types from the layer's config struct. Both
// `float` and `ap_fixed<W, I>` (any quantisation / overflow mode) work; fixed-point products are formed at
// full precision and rounded only when assigned to the accumulator (ap_fixed semantics).
//
// HLS pragmas are placed as a hardware engineer would; g++ ignores them (compile with
// -Wno-unknown-pragmas). `__SYNTHESIS__` guards the few C-simulation-only checks.
#ifndef SPARSECC_COMMON_H
#define SPARSECC_COMMON_H

#include <ap_fixed.h>
#include <ap_int.h>
#include <hls_stream.h>

#include <cstdint>

#ifndef __SYNTHESIS__
#include <cassert>
#define SPARSECC_CSIM_ASSERT(cond) assert(cond)
#else
#define SPARSECC_CSIM_ASSERT(cond) ((void)0)
#endif

namespace sparsecc {

// ---------------------------------------------------------------------------------------------------------
// Configuration building blocks. A generated layer config derives from one of the `*_defaults` structs and
// overrides the members it needs (static constexpr members of the derived struct hide the base's).
// ---------------------------------------------------------------------------------------------------------

/// No k-WTA stage in a fused epilogue.
struct no_kwta {
    static constexpr bool enabled = false;
    typedef float boost_t;   // type of the (unused) boost argument
};

/// No pooling stage in a fused epilogue.
struct no_pool {
    static constexpr bool enabled = false;
};

// ---------------------------------------------------------------------------------------------------------
// Constant storage. Weight, bias, scale/shift and boost arrays may hold plain values (float, ap_fixed) or
// `word<T, S>`: the raw two's-complement bits of an ap_fixed T in a plain integer S (int8_t .. int64_t).
// An array of ap_fixed with initialisers is compiled element by element by C++ compilers (a 20k-element
// ap_fixed ROM takes minutes in g++); an array of `word` is static data, and in hardware the same ROM
// bits. Kernels read every constant through `value_of`, which is the identity for plain values and a bit
// cast (no logic) for words.
// ---------------------------------------------------------------------------------------------------------

/// A constant of the ap_fixed / ap_ufixed type T stored as its raw bits, sign-extended into the integer S.
template <class T, class S>
struct word {
    S bits;
};

/// The value type of a stored constant: T for word<T, S>, the type itself otherwise.
template <class T>
struct value_type {
    typedef T type;
};
template <class T, class S>
struct value_type<word<T, S> > {
    typedef T type;
};

/// The value of a stored constant (see `word`).
template <class T>
inline const T& value_of(const T& v) {
#pragma HLS INLINE
    return v;
}
template <class T, class S>
inline T value_of(const word<T, S>& w) {
#pragma HLS INLINE
    T v;
    v.range(T::width - 1, 0) = w.bits;
    return v;
}

/// Base of every k-WTA config (standalone `kwta<>` and the `kwta_config` of a fused layer).
/// Required in the derived struct: `k`; for the standalone kernel also `channels` (and `height`, `width`
/// for KWinners2d).
struct kwta_defaults {
    static constexpr bool enabled = true;
    static constexpr unsigned height = 1;       // 1-D KWinners(n): channels = n, height = width = 1
    static constexpr unsigned width = 1;
    static constexpr bool local = false;        // false: one group of C*H*W; true: C channels at each (h, w)
    static constexpr bool break_ties = false;   // false: every value tied at the threshold survives
    static constexpr bool boost = false;        // true: select on x * boost[c] (boost array is per channel)
    static constexpr unsigned radix_bits = 4;   // digit width of the radix select, 1..8 (1 = bitwise search)
    typedef float boost_t;                      // element type of the boost array
};

/// Pooling window (no padding, floor mode): a fused epilogue max-pools with it; the configs of the standalone
/// maxpool2d / avgpool2d derive from it.
template <unsigned KH, unsigned KW, unsigned SH = KH, unsigned SW = KW>
struct pool2d {
    static constexpr bool enabled = true;
    static constexpr unsigned kernel_h = KH;
    static constexpr unsigned kernel_w = KW;
    static constexpr unsigned stride_h = SH;
    static constexpr unsigned stride_w = SW;
};

/// The fused epilogue of a conv/linear layer: acc (+bias, done by the kernel) -> [affine] -> [relu]
/// -> cast to the result type -> [k-WTA] -> [maxpool] (see epilogue.h for the other stage orders).
struct epilogue_defaults {
    static constexpr bool affine = false;   // y = acc * scale[c] + shift[c] (batch norm at inference)
    static constexpr bool relu = false;
    typedef no_kwta kwta_config;            // or a struct derived from kwta_defaults
    typedef no_pool pool_config;            // or pool2d<KH, KW, SH, SW> (max pooling)
    typedef float scale_t;                  // element type of the scale / shift arrays (may be a word<>)
    static constexpr bool pool_before_kwta = false;   // true: max-pool first, k-WTA over the pooled values
    static constexpr bool relu_after_kwta = false;    // true: ReLU on the k-WTA winners (not before k-WTA)
};

/// Size of a pooled dimension (no padding, floor mode).
constexpr unsigned pooled_dim(unsigned in, unsigned kernel, unsigned stride) {
    return in < kernel ? 0 : (in - kernel) / stride + 1;
}

/// Number of elements one fused layer writes: C x H x W, or the pooled size when the epilogue pools
/// (whether it pools before or after its k-WTA).
template <class CONFIG, unsigned C, unsigned H, unsigned W, bool POOL = CONFIG::pool_config::enabled>
struct epilogue_output {
    static constexpr unsigned size = C * H * W;
};
template <class CONFIG, unsigned C, unsigned H, unsigned W>
struct epilogue_output<CONFIG, C, H, W, true> {
    typedef typename CONFIG::pool_config P;
    static constexpr unsigned height = pooled_dim(H, P::kernel_h, P::stride_h);
    static constexpr unsigned width = pooled_dim(W, P::kernel_w, P::stride_w);
    static constexpr unsigned size = C * height * width;
};

// ---------------------------------------------------------------------------------------------------------
// Small helpers.
// ---------------------------------------------------------------------------------------------------------

/// Conversion of any supported scalar (float, double, ap_fixed, ap_int) to float.
template <class T>
inline float to_float(const T& v) {
#pragma HLS INLINE
    return static_cast<float>(v);
}

/// True when `v` is not zero (for float, -0.0 counts as zero).
template <class T>
inline bool is_nonzero(const T& v) {
#pragma HLS INLINE
    return v != T(0);
}

/// One active (non-zero) input of a sparse-sparse kernel, as streamed from `compact_nonzero`.
template <class T>
struct active_entry {
    unsigned index;   // flat index into the input sample
    T value;
    bool last;        // end-of-sample marker (index/value unused)
};

/// Writes the non-zero elements of `x[N]` in index order to `active`, then an end marker.
/// Cost: N cycles (II = 1), independent of the activation density.
template <unsigned N, class T>
void compact_nonzero(const T x[N], hls::stream<active_entry<T> >& active) {
compact:
    for (unsigned i = 0; i < N; i++) {
#pragma HLS PIPELINE II = 1
        if (is_nonzero(x[i])) {
            active_entry<T> e = {i, x[i], false};
            active.write(e);
        }
    }
    active_entry<T> end = {0, T(0), true};
    active.write(end);
}

}  // namespace sparsecc

#endif  // SPARSECC_COMMON_H
