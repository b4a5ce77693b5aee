// Test driver of the sparsecc HLS kernel headers (tests/test_hls_kernels.py).
//
// Every entry point is `extern "C"`, takes float value arrays and int32 index arrays from numpy, converts
// values to the kernel's data type, runs one kernel on one sample and converts the result back to float.
// Value type families: `_f` float (float accumulator), `_q` ap_fixed<16,6> (ap_fixed<16,6> accumulator),
// `_w` ap_fixed<16,6> (ap_fixed<32,12> accumulator). The dimensions below are mirrored in the Python test.
#include <sparsecc/sparsecc.h>

namespace {

struct f32 {
    typedef float data_t;
    typedef float accum_t;
};
struct q16 {
    typedef ap_fixed<16, 6> data_t;
    typedef ap_fixed<16, 6> accum_t;
};
struct q16w {
    typedef ap_fixed<16, 6> data_t;
    typedef ap_fixed<32, 12> accum_t;
};

// ----- value conversion -----------------------------------------------------------------------------------
template <class T, unsigned N>
void load(const float* src, T (&dst)[N]) {
    for (unsigned i = 0; i < N; i++) dst[i] = T(src[i]);
}
template <class T, unsigned R, unsigned C>
void load(const float* src, T (&dst)[R][C]) {
    for (unsigned i = 0; i < R; i++)
        for (unsigned j = 0; j < C; j++) dst[i][j] = T(src[i * C + j]);
}
template <class T, unsigned N>
void store(const T (&src)[N], float* dst) {
    for (unsigned i = 0; i < N; i++) dst[i] = sparsecc::to_float(src[i]);
}
template <unsigned C>
const int (*rows(const int* p))[C] {
    return reinterpret_cast<const int(*)[C]>(p);
}

// ----- layer configs ---------------------------------------------------------------------------------------
// conv: 3x9x8 input, 5 filters 3x2, stride (2, 1), padding (top 1, left 0, bottom 2, right 1) -> 5x5x8.
// Capacities: ELL fan_in 8, CSC nnz O*COLS, complementary n_groups O (unused groups empty), pack_size 3.
template <class T>
struct conv_base : sparsecc::conv2d_defaults {
    static constexpr unsigned in_channels = 3, in_height = 9, in_width = 8;
    static constexpr unsigned out_channels = 5, out_height = 5, out_width = 8;
    static constexpr unsigned kernel_h = 3, kernel_w = 2;
    static constexpr unsigned stride_h = 2, stride_w = 1;
    static constexpr unsigned pad_top = 1, pad_left = 0, pad_bottom = 2, pad_right = 1;
    static constexpr unsigned fan_in = 8, nnz = 5 * 18, n_groups = 5, pack_size = 3;
    typedef typename T::accum_t accum_t;
    typedef typename T::data_t scale_t;
};
// GSC-like: affine -> global k-WTA with per-channel boost -> maxpool 2x2 (output 5x2x4).
template <class T>
struct conv_gsc : conv_base<T> {
    static constexpr bool affine = true;
    struct kwta_config : sparsecc::kwta_defaults {
        static constexpr unsigned k = 37;
        static constexpr bool boost = true;
        typedef typename T::data_t boost_t;
    };
    typedef sparsecc::pool2d<2, 2> pool_config;
};
// VGG-like dense: affine -> relu -> maxpool 3x2 stride (2, 3) (output 5x2x3).
template <class T>
struct conv_vgg : conv_base<T> {
    static constexpr bool affine = true, relu = true;
    typedef sparsecc::pool2d<3, 2, 2, 3> pool_config;
};
// local k-WTA (2 of 5 channels at each pixel), ties broken, no pooling.
template <class T>
struct conv_local : conv_base<T> {
    struct kwta_config : sparsecc::kwta_defaults {
        static constexpr unsigned k = 2;
        static constexpr bool local = true, break_ties = true, boost = true;
        typedef typename T::data_t boost_t;
    };
};

// linear: 37 -> 11. Capacities: ELL fan_in 6, CSC nnz O*I, n_groups O, pack_size 4.
template <class T>
struct linear_base : sparsecc::linear_defaults {
    static constexpr unsigned in_features = 37, out_features = 11;
    static constexpr unsigned fan_in = 6, nnz = 11 * 37, n_groups = 11, pack_size = 4;
    typedef typename T::accum_t accum_t;
    typedef typename T::data_t scale_t;
};
// affine -> 1-D k-WTA with boost, ties broken (k = 3 of 11).
template <class T>
struct linear_kwta : linear_base<T> {
    static constexpr bool affine = true;
    struct kwta_config : sparsecc::kwta_defaults {
        static constexpr unsigned k = 3;
        static constexpr bool boost = true, break_ties = true;
        typedef typename T::data_t boost_t;
    };
};
// relu only.
template <class T>
struct linear_relu : linear_base<T> {
    static constexpr bool relu = true;
};

template <class CFG>
constexpr bool has_epilogue_arrays() {
    return CFG::affine || CFG::kwta_config::enabled;
}

// The boost argument of a layer: the array when its k-WTA boosts, else nullptr (as the generator passes it).
template <class CFG, class D>
const typename CFG::kwta_config::boost_t* boost_arg(const D* boost) {
    if constexpr (CFG::kwta_config::enabled)
        return boost;
    else
        return sparsecc::no_values<typename CFG::kwta_config::boost_t, 1>::values;
}

// ----- runners ---------------------------------------------------------------------------------------------
// One sample's input, output and per-unit arrays (O units), converted to the kernel's data type.
template <class T, unsigned NX, unsigned NY, unsigned O>
struct layer_io {
    typedef typename T::data_t D;
    D x[NX];
    D y[NY];
    D bias[O], scale[O], shift[O], boost[O];
    layer_io(const float* x_, const float* b, const float* sc, const float* sh, const float* bo) {
        load(x_, x);
        load(b, bias);
        load(sc, scale);
        load(sh, shift);
        load(bo, boost);
    }
};
template <class CFG, class T>
using conv_io = layer_io<T, CFG::in_channels * CFG::in_height * CFG::in_width, sparsecc::conv2d_output_size<CFG>(),
                         CFG::out_channels>;
template <class CFG, class T>
using linear_io = layer_io<T, CFG::in_features, sparsecc::linear_output_size<CFG>(), CFG::out_features>;
template <class CFG>
constexpr unsigned conv_cols = CFG::in_channels * CFG::kernel_h * CFG::kernel_w;

// Calls `kernel(epilogue...)` with the trailing arrays a layer of CFG takes: scale, shift, boost, or none.
template <class CFG, class IO, class F>
void with_epilogue(IO& io, F kernel) {
    if constexpr (has_epilogue_arrays<CFG>())
        kernel(io.scale, io.shift, boost_arg<CFG>(io.boost));
    else
        kernel(sparsecc::no_values<typename CFG::scale_t, sizeof(io.bias) / sizeof(io.bias[0])>::values,
               sparsecc::no_values<typename CFG::scale_t, sizeof(io.bias) / sizeof(io.bias[0])>::values,
               sparsecc::no_values<typename CFG::kwta_config::boost_t, sizeof(io.bias) / sizeof(io.bias[0])>::values);
}

template <class CFG, class T>
void conv_dense(const float* x, float* y, const float* b, const float* sc, const float* sh, const float* bo,
                const float* w) {
    conv_io<CFG, T> io(x, b, sc, sh, bo);
    typename T::data_t wd[CFG::out_channels][conv_cols<CFG>];
    load(w, wd);
    with_epilogue<CFG>(io, [&](auto... e) { sparsecc::conv2d_dense<CFG>(io.x, io.y, wd, io.bias, e...); });
    store(io.y, y);
}

template <class CFG, class T>
void conv_ell(const float* x, float* y, const float* b, const float* sc, const float* sh, const float* bo,
              const int* idx, const float* val) {
    conv_io<CFG, T> io(x, b, sc, sh, bo);
    typename T::data_t vd[CFG::out_channels][CFG::fan_in];
    load(val, vd);
    with_epilogue<CFG>(io, [&](auto... e) {
        sparsecc::conv2d_ell<CFG>(io.x, io.y, rows<CFG::fan_in>(idx), vd, io.bias, e...);
    });
    store(io.y, y);
}

template <class CFG, class T>
void conv_sparse(const float* x, float* y, const float* b, const float* sc, const float* sh, const float* bo,
                 const int* col_ptr, const int* row_idx, const float* val) {
    conv_io<CFG, T> io(x, b, sc, sh, bo);
    typename T::data_t vd[CFG::nnz];
    load(val, vd);
    with_epilogue<CFG>(io, [&](auto... e) {
        sparsecc::conv2d_sparse_sparse<CFG>(io.x, io.y, col_ptr, row_idx, vd, io.bias, e...);
    });
    store(io.y, y);
}

template <class CFG, class T, bool SPARSE_INPUT>
void conv_comp(const float* x, float* y, const float* b, const float* sc, const float* sh, const float* bo,
               const float* packed_val, const int* packed_slot, const int* group_rows) {
    constexpr unsigned COLS = conv_cols<CFG>;
    conv_io<CFG, T> io(x, b, sc, sh, bo);
    typename T::data_t pv[CFG::n_groups][COLS];
    load(packed_val, pv);
    const auto ps = rows<COLS>(packed_slot);
    const auto gr = rows<CFG::pack_size>(group_rows);
    with_epilogue<CFG>(io, [&](auto... e) {
        if constexpr (SPARSE_INPUT)
            sparsecc::conv2d_complementary_sparse<CFG>(io.x, io.y, pv, ps, gr, io.bias, e...);
        else
            sparsecc::conv2d_complementary<CFG>(io.x, io.y, pv, ps, gr, io.bias, e...);
    });
    store(io.y, y);
}

template <class CFG, class T>
void linear_dense(const float* x, float* y, const float* b, const float* sc, const float* sh, const float* bo,
                  const float* w) {
    linear_io<CFG, T> io(x, b, sc, sh, bo);
    typename T::data_t wd[CFG::out_features][CFG::in_features];
    load(w, wd);
    with_epilogue<CFG>(io, [&](auto... e) { sparsecc::linear_dense<CFG>(io.x, io.y, wd, io.bias, e...); });
    store(io.y, y);
}

template <class CFG, class T>
void linear_ell(const float* x, float* y, const float* b, const float* sc, const float* sh, const float* bo,
                const int* idx, const float* val) {
    linear_io<CFG, T> io(x, b, sc, sh, bo);
    typename T::data_t vd[CFG::out_features][CFG::fan_in];
    load(val, vd);
    with_epilogue<CFG>(io, [&](auto... e) {
        sparsecc::linear_ell<CFG>(io.x, io.y, rows<CFG::fan_in>(idx), vd, io.bias, e...);
    });
    store(io.y, y);
}

template <class CFG, class T>
void linear_sparse(const float* x, float* y, const float* b, const float* sc, const float* sh, const float* bo,
                   const int* col_ptr, const int* row_idx, const float* val) {
    linear_io<CFG, T> io(x, b, sc, sh, bo);
    typename T::data_t vd[CFG::nnz];
    load(val, vd);
    with_epilogue<CFG>(io, [&](auto... e) {
        sparsecc::linear_sparse_sparse<CFG>(io.x, io.y, col_ptr, row_idx, vd, io.bias, e...);
    });
    store(io.y, y);
}

template <class CFG, class T, bool SPARSE_INPUT>
void linear_comp(const float* x, float* y, const float* b, const float* sc, const float* sh, const float* bo,
                 const float* packed_val, const int* packed_slot, const int* group_rows) {
    linear_io<CFG, T> io(x, b, sc, sh, bo);
    typename T::data_t pv[CFG::n_groups][CFG::in_features];
    load(packed_val, pv);
    const auto ps = rows<CFG::in_features>(packed_slot);
    const auto gr = rows<CFG::pack_size>(group_rows);
    with_epilogue<CFG>(io, [&](auto... e) {
        if constexpr (SPARSE_INPUT)
            sparsecc::linear_complementary_sparse<CFG>(io.x, io.y, pv, ps, gr, io.bias, e...);
        else
            sparsecc::linear_complementary<CFG>(io.x, io.y, pv, ps, gr, io.bias, e...);
    });
    store(io.y, y);
}

// ----- the first two layers of GSCSparseCNN at full size (DESIGN.md section 3), float -----------------------
struct gsc_conv1 : sparsecc::conv2d_defaults {   // 1x32x32 -> 64x28x28 -> BN -> k-WTA -> maxpool -> 64x14x14
    static constexpr unsigned in_channels = 1, in_height = 32, in_width = 32;
    static constexpr unsigned out_channels = 64, out_height = 28, out_width = 28;
    static constexpr unsigned kernel_h = 5, kernel_w = 5, fan_in = 12;
    typedef float accum_t;
    static constexpr bool affine = true;
    struct kwta_config : sparsecc::kwta_defaults {
        static constexpr unsigned k = 4767;
        static constexpr bool boost = true;
    };
    typedef sparsecc::pool2d<2, 2> pool_config;
};
struct gsc_conv2 : sparsecc::conv2d_defaults {   // 64x14x14 -> 64x10x10 -> BN -> k-WTA -> maxpool -> 64x5x5
    static constexpr unsigned in_channels = 64, in_height = 14, in_width = 14;
    static constexpr unsigned out_channels = 64, out_height = 10, out_width = 10;
    static constexpr unsigned kernel_h = 5, kernel_w = 5, nnz = 64 * 320;
    typedef float accum_t;
    static constexpr bool affine = true;
    struct kwta_config : sparsecc::kwta_defaults {
        static constexpr unsigned k = 800;
        static constexpr bool boost = true;
    };
    typedef sparsecc::pool2d<2, 2> pool_config;
};

// ----- k-WTA -----------------------------------------------------------------------------------------------
template <unsigned C, unsigned H, unsigned W, unsigned K, bool LOCAL, bool BREAK_TIES, bool BOOST, unsigned R,
          class D>
struct kwta_cfg : sparsecc::kwta_defaults {
    static constexpr unsigned channels = C, height = H, width = W, k = K, radix_bits = R;
    static constexpr bool local = LOCAL, break_ties = BREAK_TIES, boost = BOOST;
    typedef D boost_t;
};

template <class KCFG, class D>
void run_kwta(const float* x, float* y, const float* boost) {
    constexpr unsigned N = KCFG::channels * KCFG::height * KCFG::width;
    D xd[N], yd[N], bd[KCFG::channels];
    load(x, xd);
    load(boost, bd);
    if constexpr (KCFG::boost)
        sparsecc::kwta<KCFG>(xd, yd, bd);
    else
        sparsecc::kwta<KCFG>(xd, yd, sparsecc::no_values<typename KCFG::boost_t, KCFG::channels>::values);
    store(yd, y);
}

// ----- pooling and element-wise ----------------------------------------------------------------------------
template <class T>
struct pool_cfg : sparsecc::pool2d<3, 2, 2, 3> {   // 3x7x9 -> 3x3x3
    static constexpr unsigned channels = 3, in_height = 7, in_width = 9;
    typedef typename T::accum_t accum_t;
};
template <class T>
struct avgpool_cfg : sparsecc::pool2d<2, 2> {   // 3x7x9 -> 3x3x4
    static constexpr unsigned channels = 3, in_height = 7, in_width = 9;
    typedef typename T::accum_t accum_t;
};
template <class T>
struct map_cfg {   // 3x7x9
    static constexpr unsigned channels = 3, height = 7, width = 9;
    typedef typename T::accum_t accum_t;
    typedef typename T::data_t scale_t;
};

template <class T>
void run_pools(const float* x, float* max_out, float* avg_out, float* gap_out) {
    typedef typename T::data_t D;
    D xd[3 * 7 * 9], maxd[3 * 3 * 3], avgd[3 * 3 * 4], gapd[3];
    load(x, xd);
    sparsecc::maxpool2d<pool_cfg<T> >(xd, maxd);
    sparsecc::avgpool2d<avgpool_cfg<T> >(xd, avgd);
    sparsecc::global_avgpool<map_cfg<T> >(xd, gapd);
    store(maxd, max_out);
    store(avgd, avg_out);
    store(gapd, gap_out);
}

template <class T>
void run_elementwise(const float* x, const float* scale, const float* shift, const float* other, float* relu_out,
                     float* affine_out, float* concat_out, float* flat_out) {
    typedef typename T::data_t D;
    constexpr unsigned N = 3 * 7 * 9, M = 2 * 7 * 9;
    D xd[N], sd[3], hd[3], od[M], relud[N], affined[N], concatd[N + M], flatd[N];
    load(x, xd);
    load(scale, sd);
    load(shift, hd);
    load(other, od);
    sparsecc::relu<N, 0>(xd, relud);
    sparsecc::affine<map_cfg<T> >(xd, affined, sd, hd);
    sparsecc::concat_channels<N, M, 0>(xd, od, concatd);
    sparsecc::flatten<N>(xd, flatd);
    store(relud, relu_out);
    store(affined, affine_out);
    store(concatd, concat_out);
    store(flatd, flat_out);
}

template <class T>
void run_softmax(const float* x, float* log_softmax_out, float* softmax_out) {
    typedef typename T::data_t D;
    D xd[12], ld[12], sd[12];
    load(x, xd);
    sparsecc::log_softmax<12, 0>(xd, ld);
    sparsecc::softmax<12, 0>(xd, sd);
    store(ld, log_softmax_out);
    store(sd, softmax_out);
}

}  // namespace

// ----- extern "C" entry points -----------------------------------------------------------------------------
#define LAYER_ARGS const float *x, float *y, const float *b, const float *sc, const float *sh, const float *bo
#define LAYER_PASS x, y, b, sc, sh, bo

#define LAYER_ENTRIES(PREFIX, CFG, T, SUFFIX)                                                                  \
    extern "C" void PREFIX##_dense_##SUFFIX(LAYER_ARGS, const float* w) { PREFIX##_dense<CFG<T>, T>(LAYER_PASS, w); } \
    extern "C" void PREFIX##_ell_##SUFFIX(LAYER_ARGS, const int* idx, const float* val) {                   \
        PREFIX##_ell<CFG<T>, T>(LAYER_PASS, idx, val);                                                         \
    }                                                                                                          \
    extern "C" void PREFIX##_sparse_##SUFFIX(LAYER_ARGS, const int* cp, const int* ri, const float* val) {  \
        PREFIX##_sparse<CFG<T>, T>(LAYER_PASS, cp, ri, val);                                                   \
    }                                                                                                          \
    extern "C" void PREFIX##_comp_##SUFFIX(LAYER_ARGS, const float* pv, const int* ps, const int* gr) {     \
        PREFIX##_comp<CFG<T>, T, false>(LAYER_PASS, pv, ps, gr);                                               \
    }                                                                                                          \
    extern "C" void PREFIX##_comp_sparse_##SUFFIX(LAYER_ARGS, const float* pv, const int* ps, const int* gr) { \
        PREFIX##_comp<CFG<T>, T, true>(LAYER_PASS, pv, ps, gr);                                                \
    }

// plain kernels (no epilogue), three type families
LAYER_ENTRIES(conv, conv_base, f32, f)
LAYER_ENTRIES(conv, conv_base, q16, q)
LAYER_ENTRIES(conv, conv_base, q16w, w)
LAYER_ENTRIES(linear, linear_base, f32, f)
LAYER_ENTRIES(linear, linear_base, q16, q)
LAYER_ENTRIES(linear, linear_base, q16w, w)

// fused chains (float and wide-accumulator fixed point, where results are exactly predictable)
#define CHAIN_ENTRIES(SUFFIX, T)                                                                               \
    extern "C" void gsc_ell_##SUFFIX(LAYER_ARGS, const int* idx, const float* val) {                        \
        conv_ell<conv_gsc<T>, T>(LAYER_PASS, idx, val);                                                        \
    }                                                                                                          \
    extern "C" void gsc_sparse_##SUFFIX(LAYER_ARGS, const int* cp, const int* ri, const float* val) {       \
        conv_sparse<conv_gsc<T>, T>(LAYER_PASS, cp, ri, val);                                                  \
    }                                                                                                          \
    extern "C" void vgg_dense_##SUFFIX(LAYER_ARGS, const float* w) { conv_dense<conv_vgg<T>, T>(LAYER_PASS, w); } \
    extern "C" void local_comp_sparse_##SUFFIX(LAYER_ARGS, const float* pv, const int* ps, const int* gr) { \
        conv_comp<conv_local<T>, T, true>(LAYER_PASS, pv, ps, gr);                                             \
    }                                                                                                          \
    extern "C" void lkwta_sparse_##SUFFIX(LAYER_ARGS, const int* cp, const int* ri, const float* val) {     \
        linear_sparse<linear_kwta<T>, T>(LAYER_PASS, cp, ri, val);                                             \
    }                                                                                                          \
    extern "C" void lkwta_comp_##SUFFIX(LAYER_ARGS, const float* pv, const int* ps, const int* gr) {        \
        linear_comp<linear_kwta<T>, T, false>(LAYER_PASS, pv, ps, gr);                                         \
    }                                                                                                          \
    extern "C" void lrelu_ell_##SUFFIX(LAYER_ARGS, const int* idx, const float* val) {                      \
        linear_ell<linear_relu<T>, T>(LAYER_PASS, idx, val);                                                   \
    }

CHAIN_ENTRIES(f, f32)
CHAIN_ENTRIES(w, q16w)

// k-WTA: NAME(x, y, boost) with boost[channels] (ignored when the config has no boost)
#define KWTA_ENTRY(NAME, D, ...) \
    extern "C" void NAME(const float* x, float* y, const float* boost) { run_kwta<kwta_cfg<__VA_ARGS__, D>, D>(x, y, boost); }

//         name                     type      C  H  W  k   local  break  boost  radix
KWTA_ENTRY(kwta_global_f,           float,    4, 3, 5, 9,  false, false, true,  4)
KWTA_ENTRY(kwta_global_break_f,     float,    4, 3, 5, 9,  false, true,  true,  4)
KWTA_ENTRY(kwta_global_r1_f,        float,    4, 3, 5, 9,  false, false, true,  1)
KWTA_ENTRY(kwta_global_r8_f,        float,    4, 3, 5, 9,  false, false, true,  8)
KWTA_ENTRY(kwta_global_r5_f,        float,    4, 3, 5, 9,  false, false, true,  5)
KWTA_ENTRY(kwta_global_break_r3_f,  float,    4, 3, 5, 9,  false, true,  true,  3)
KWTA_ENTRY(kwta_local_f,            float,    6, 2, 3, 2,  true,  false, true,  4)
KWTA_ENTRY(kwta_local_break_f,      float,    6, 2, 3, 2,  true,  true,  true,  4)
KWTA_ENTRY(kwta_1d_f,               float,    50, 1, 1, 7, false, false, false, 4)
KWTA_ENTRY(kwta_1d_break_f,         float,    50, 1, 1, 7, false, true,  false, 4)
KWTA_ENTRY(kwta_1d_k1_f,            float,    50, 1, 1, 1, false, false, false, 4)
KWTA_ENTRY(kwta_1d_kall_f,          float,    50, 1, 1, 50, false, true, false, 4)
KWTA_ENTRY(kwta_global_q,           q16::data_t, 4, 3, 5, 9, false, false, true, 4)
KWTA_ENTRY(kwta_global_break_q,     q16::data_t, 4, 3, 5, 9, false, true,  true, 4)
KWTA_ENTRY(kwta_local_q,            q16::data_t, 6, 2, 3, 2, true,  false, true, 8)
KWTA_ENTRY(kwta_1d_q,               q16::data_t, 50, 1, 1, 7, false, false, false, 1)

extern "C" void pools_f(const float* x, float* mx, float* avg, float* gap) { run_pools<f32>(x, mx, avg, gap); }
extern "C" void pools_w(const float* x, float* mx, float* avg, float* gap) { run_pools<q16w>(x, mx, avg, gap); }
extern "C" void elementwise_f(const float* x, const float* sc, const float* sh, const float* other, float* relu,
                              float* affine, float* concat, float* flat) {
    run_elementwise<f32>(x, sc, sh, other, relu, affine, concat, flat);
}
extern "C" void elementwise_w(const float* x, const float* sc, const float* sh, const float* other, float* relu,
                              float* affine, float* concat, float* flat) {
    run_elementwise<q16w>(x, sc, sh, other, relu, affine, concat, flat);
}
extern "C" void softmax_f(const float* x, float* log_softmax, float* softmax) { run_softmax<f32>(x, log_softmax, softmax); }
extern "C" void softmax_q(const float* x, float* log_softmax, float* softmax) { run_softmax<q16>(x, log_softmax, softmax); }

// layer 1 (weight-sparse ELL gather) feeding layer 2 (sparse-sparse CSC scatter)
extern "C" void gsc_two_layers_f(const float* x, float* y1, float* y2, const int* idx1, const float* val1,
                                 const float* b1, const float* sc1, const float* sh1, const float* bo1,
                                 const int* cp2, const int* ri2, const float* val2, const float* b2,
                                 const float* sc2, const float* sh2, const float* bo2) {
    sparsecc::conv2d_ell<gsc_conv1>(x, y1, rows<12>(idx1), reinterpret_cast<const float(*)[12]>(val1), b1, sc1,
                                    sh1, bo1);
    sparsecc::conv2d_sparse_sparse<gsc_conv2>(y1, y2, cp2, ri2, val2, b2, sc2, sh2, bo2);
}
