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
// -Wno-unknown-pragmas). `__SYNTHESIS__` guards the few C-simulation-only checks. The library is C++14
// (the language level Vitis HLS documents): no `if constexpr`, stage choices by template specialisation.
//
// Parallelism: every layer config carries `lanes` (L, default 1), chosen by the compiler. It is the UNROLL
// factor of the layer's MAC loop and of its k-WTA count/select loops, and the cyclic / block partition factor
// of the arrays those unrolled loops read (see each kernel). Loops that are not unrolled process one element
// per cycle. The estimate (sparsecc/targets/hls/estimate.py) is computed from the same L.
//
// Instrumentation: compiled with -DSPARSECC_INSTRUMENT, every pipelined loop adds its initiation interval to a
// per-(layer, stage) cycle counter on every iteration and counts its entries (each entry pays the pipeline
// depth); `sparsecc::instrument::table()` holds the counts. Without the macro the counters compile to
// nothing.
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
// Instrumented C-simulation (see the header comment).
// ---------------------------------------------------------------------------------------------------------
namespace instrument {
/// Stages of a layer, as the estimate names them (estimate.STAGES).
enum stage { MAC = 0, SCAN = 1, POINTWISE = 2, KWTA = 3, POOL = 4, STAGES = 5 };
static const unsigned MAX_LAYERS = 512;
struct counts {
    unsigned long long cycles[MAX_LAYERS][STAGES];    // sum over iterations of the loop's II
    unsigned long long entries[MAX_LAYERS][STAGES];   // times a pipelined loop was entered
};
#ifdef SPARSECC_INSTRUMENT
inline counts& table() {
    static counts c;
    return c;
}
#endif
}  // namespace instrument

#ifdef SPARSECC_INSTRUMENT
#define SPARSECC_COUNT(ID, STAGE, II) (::sparsecc::instrument::table().cycles[(ID)][(STAGE)] += (II))
#define SPARSECC_ENTER(ID, STAGE) (++::sparsecc::instrument::table().entries[(ID)][(STAGE)])
#else
#define SPARSECC_COUNT(ID, STAGE, II) ((void)0)
#define SPARSECC_ENTER(ID, STAGE) ((void)0)
#endif

/// An array of N value-initialised constants of type T, passed for an epilogue array a layer does not use
/// (scale / shift without batch norm, boost without boosting): the kernel never reads it.
template <class T, unsigned N>
struct no_values {
    static const T values[N];
};
template <class T, unsigned N>
const T no_values<T, N>::values[N] = {};

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
    static constexpr unsigned layer = 0;        // layer number (instrumentation counters)
    static constexpr unsigned lanes = 1;        // values counted / selected per cycle (global k-WTA only)
    static constexpr unsigned height = 1;       // 1-D KWinners(n): channels = n, height = width = 1
    static constexpr unsigned width = 1;
    static constexpr bool local = false;        // false: one group of C*H*W; true: C channels at each (h, w)
    static constexpr bool break_ties = false;   // false: every value tied at the threshold survives
    static constexpr bool boost = false;        // true: select on x * boost[c] (boost array is per channel)
    static constexpr unsigned radix_bits = 4;   // digit width of the radix select, 1..8 (1 = bitwise search)
    typedef float boost_t;                      // element type of the boost array
    static constexpr bool ieee = true;          // float data: NaN ranks above +inf (false: fast math, see ieee.h)
};

/// Pooling window (no padding, floor mode): a fused epilogue max-pools with it; the configs of the standalone
/// maxpool2d / avgpool2d derive from it.
template <unsigned KH, unsigned KW, unsigned SH = KH, unsigned SW = KW>
struct pool2d {
    static constexpr bool enabled = true;
    static constexpr unsigned layer = 0;   // layer number of a standalone pooling layer (instrumentation)
    static constexpr unsigned kernel_h = KH;
    static constexpr unsigned kernel_w = KW;
    static constexpr unsigned stride_h = SH;
    static constexpr unsigned stride_w = SW;
    static constexpr bool ieee = true;     // float data: a window holding NaN pools to NaN (false: fast math)
};

/// The fused epilogue of a conv/linear layer: acc (+bias, done by the kernel) -> [affine] -> [relu]
/// -> cast to the result type -> [k-WTA] -> [maxpool] (see epilogue.h for the other stage orders).
struct epilogue_defaults {
    static constexpr unsigned layer = 0;    // layer number (instrumentation counters)
    static constexpr unsigned lanes = 1;    // MAC lanes: UNROLL factor of the MAC loop (see each kernel)
    static constexpr bool affine = false;   // y = acc * scale[c] + shift[c] (batch norm at inference)
    static constexpr bool relu = false;
    typedef no_kwta kwta_config;            // or a struct derived from kwta_defaults
    typedef no_pool pool_config;            // or pool2d<KH, KW, SH, SW> (max pooling)
    typedef float scale_t;                  // element type of the scale / shift arrays (may be a word<>)
    static constexpr bool pool_before_kwta = false;   // true: max-pool first, k-WTA over the pooled values
    static constexpr bool relu_after_kwta = false;    // true: ReLU on the k-WTA winners (not before k-WTA)
    static constexpr bool ieee = true;      // float data: the dense sum's inf/NaN results, NaN-aware k-WTA and
                                            // max-pool (ieee.h); false: fast math
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
template <unsigned N, unsigned ID, class T>
void compact_nonzero(const T x[N], hls::stream<active_entry<T> >& active) {
    SPARSECC_ENTER(ID, instrument::SCAN);
compact:
    for (unsigned i = 0; i < N; i++) {
#pragma HLS PIPELINE II = 1
        SPARSECC_COUNT(ID, instrument::SCAN, 1);
        if (is_nonzero(x[i])) {
            active_entry<T> e = {i, x[i], false};
            active.write(e);
        }
    }
    active_entry<T> end = {0, T(0), true};
    active.write(end);
}

/// ceil(a / b) for the loop bounds of the lane-parallel kernels.
constexpr unsigned ceil_div(unsigned a, unsigned b) {
    return (a + b - 1) / b;
}

/// Copies x[N] into R replicas (one per two gather lanes: a BRAM has two read ports), so that L lanes
/// gathering data-dependent elements of x each read their own replica. Cost: N cycles (II = 1).
template <unsigned N, unsigned R, unsigned ID, class T>
void replicate(const T x[N], T copies[R][N]) {
    SPARSECC_ENTER(ID, instrument::SCAN);
replicate:
    for (unsigned i = 0; i < N; i++) {
#pragma HLS PIPELINE II = 1
        SPARSECC_COUNT(ID, instrument::SCAN, 1);
        for (unsigned r = 0; r < R; r++) {
#pragma HLS UNROLL
            copies[r][i] = x[i];
        }
    }
}

namespace detail {

/// A source of gathered inputs for L lanes: x itself when L <= 2 (a BRAM has two read ports), else
/// ceil(L / 2) replicas filled by one copy pass (see replicate in common.h); lane l reads replica l / 2.
template <unsigned N, unsigned L, unsigned ID, class data_t>
struct gather_source {
    static const unsigned R = L > 2 ? (L + 1) / 2 : 1;
    static void fill(const data_t x[N], data_t copies[R][N]) {
#pragma HLS INLINE
        if (R > 1) replicate<N, R, ID>(x, copies);
    }
    static data_t read(const data_t x[N], const data_t copies[R][N], unsigned lane, unsigned i) {
#pragma HLS INLINE
        return R > 1 ? copies[lane / 2][i] : x[i];
    }
};

/// acc = bias, over BANKS blocks of the accumulator (the MAC stage's first pass: OUT_SIZE cycles).
template <class CONFIG, unsigned N, unsigned OP, unsigned BANKS, class bias_t, class acc_t>
void bias_init(const bias_t bias[N / OP], acc_t acc[BANKS][N / BANKS]) {
    const unsigned BANK = N / BANKS;
    SPARSECC_ENTER(CONFIG::layer, instrument::MAC);
bias_init:
    for (unsigned q = 0; q < N; q++) {
#pragma HLS PIPELINE II = 1
        SPARSECC_COUNT(CONFIG::layer, instrument::MAC, 1);
        acc[q / BANK][q % BANK] = value_of(bias[q / OP]);
    }
}

}  // namespace detail

}  // namespace sparsecc

#endif  // SPARSECC_COMMON_H
