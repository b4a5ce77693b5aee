// sparsecc HLS kernel library — the fused epilogue of a conv / linear layer.
//
// Every conv2d_* / linear_* kernel computes acc = W.x + bias into an accumulator buffer (CONFIG::accum_t)
// and then runs this epilogue, configured by the layer's config (members from epilogue_defaults):
//
//     acc -> [affine: v = v * scale[c] + shift[c], in accum_t]   (CONFIG::affine)
//         -> [relu: v = max(v, 0)]                               (CONFIG::relu)
//         -> cast to the result type res_t
//         -> [k-WTA over the C x H x W output]                   (CONFIG::kwta_config, see kwta.h)
//         -> [max pooling]                                       (CONFIG::pool_config = pool2d<...>)
//         -> y
//
// Networks also pool before their activation. `CONFIG::pool_before_kwta` swaps the last two stages (k-WTA
// then selects over the pooled C x PH x PW values), and `CONFIG::relu_after_kwta` moves the ReLU after the
// k-WTA (onto its winners). ReLU and max-pooling commute exactly (max is monotone), so these two flags
// express every order of the three stages.
//
// The k-WTA and the pooling see res_t values, as they would after an unfused conv. For float the fused layer
// is bit-identical to the unfused sequence conv -> affine<> -> relu<> -> kwta<> -> maxpool2d<>; in fixed point
// the affine and relu work on the accumulator (one rounding fewer than affine<> on a res_t conv output).
// With no stage enabled the epilogue is a cast-copy of the accumulator.
#ifndef SPARSECC_EPILOGUE_H
#define SPARSECC_EPILOGUE_H

#include "common.h"
#include "kwta.h"
#include "pool.h"

namespace sparsecc {
namespace detail {

/// acc -> [affine] -> [relu when RELU] -> res_t, over C channels of HW pixels.
template <class CONFIG, bool RELU, unsigned C, unsigned HW, class acc_t, class res_t>
void epilogue_pointwise(const acc_t acc[C * HW], res_t y[C * HW], const typename CONFIG::scale_t* scale,
                        const typename CONFIG::scale_t* shift) {
epilogue_pointwise:
    for (unsigned i = 0; i < C * HW; i++) {
#pragma HLS PIPELINE II = 1
        acc_t v = acc[i];
        if constexpr (CONFIG::affine) {   // scale / shift are not referenced (may be nullptr) otherwise
            const unsigned c = i / HW;
            v = v * value_of(scale[c]) + value_of(shift[c]);
        }
        if constexpr (RELU) {
            if (v < acc_t(0)) v = acc_t(0);
        }
        y[i] = res_t(v);
    }
}

/// y = max(x, 0) over N values (the ReLU after a k-WTA).
template <unsigned N, class res_t>
void epilogue_relu(const res_t x[N], res_t y[N]) {
epilogue_relu:
    for (unsigned i = 0; i < N; i++) {
#pragma HLS PIPELINE II = 1
        y[i] = x[i] < res_t(0) ? res_t(0) : x[i];
    }
}

/// k-WTA and max pooling of the pointwise result, in the configured order, into `y`.
template <class CONFIG, unsigned C, unsigned H, unsigned W, class res_t>
void epilogue_select_pool(const res_t act[C * H * W], res_t y[epilogue_output<CONFIG, C, H, W>::size],
                          const typename CONFIG::kwta_config::boost_t* boost) {
#pragma HLS INLINE
    typedef typename CONFIG::kwta_config KCFG;
    typedef typename CONFIG::pool_config PCFG;
    typedef epilogue_output<CONFIG, C, H, W> out;
    if constexpr (KCFG::enabled && PCFG::enabled && CONFIG::pool_before_kwta) {
        res_t pooled[out::size];
        maxpool_apply<PCFG, C, H, W>(act, pooled);
        kwta_apply<KCFG, C, out::height * out::width>(pooled, y, boost);
    } else if constexpr (KCFG::enabled && PCFG::enabled) {
        res_t winners[C * H * W];
        kwta_apply<KCFG, C, H * W>(act, winners, boost);
        maxpool_apply<PCFG, C, H, W>(winners, y);
    } else if constexpr (KCFG::enabled) {
        kwta_apply<KCFG, C, H * W>(act, y, boost);
    } else {
        maxpool_apply<PCFG, C, H, W>(act, y);
    }
}

/// The whole epilogue of a layer whose output is C x H x W (H = W = 1 for linear layers).
template <class CONFIG, unsigned C, unsigned H, unsigned W, class acc_t, class res_t>
void epilogue(const acc_t acc[C * H * W], res_t y[epilogue_output<CONFIG, C, H, W>::size],
              const typename CONFIG::scale_t* scale, const typename CONFIG::scale_t* shift,
              const typename CONFIG::kwta_config::boost_t* boost) {
#pragma HLS DATAFLOW
    typedef typename CONFIG::kwta_config KCFG;
    typedef typename CONFIG::pool_config PCFG;
    constexpr unsigned N = C * H * W;
    constexpr unsigned OUT = epilogue_output<CONFIG, C, H, W>::size;
    constexpr bool late_relu = CONFIG::relu && CONFIG::relu_after_kwta && KCFG::enabled;
    constexpr bool early_relu = CONFIG::relu && !late_relu;
    static_assert(!CONFIG::pool_before_kwta || (KCFG::enabled && PCFG::enabled),
                  "epilogue: pool_before_kwta needs both a k-WTA and a pooling stage");
    SPARSECC_CSIM_ASSERT(!CONFIG::affine || (scale != nullptr && shift != nullptr));
    if constexpr (!KCFG::enabled && !PCFG::enabled) {
        epilogue_pointwise<CONFIG, early_relu, C, H * W>(acc, y, scale, shift);
    } else {
        res_t act[N];
        epilogue_pointwise<CONFIG, early_relu, C, H * W>(acc, act, scale, shift);
        if constexpr (late_relu) {
            res_t selected[OUT];
            epilogue_select_pool<CONFIG, C, H, W>(act, selected, boost);
            epilogue_relu<OUT>(selected, y);
        } else {
            epilogue_select_pool<CONFIG, C, H, W>(act, y, boost);
        }
    }
}

}  // namespace detail
}  // namespace sparsecc

#endif  // SPARSECC_EPILOGUE_H
