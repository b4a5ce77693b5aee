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

/// The affine stage of the pointwise loop: v * scale[c] + shift[c] when ON, v otherwise (scale / shift are then
/// not read).
template <bool ON>
struct affine_stage {
    template <class acc_t, class scale_t>
    static acc_t apply(const acc_t& v, const scale_t* /*scale*/, const scale_t* /*shift*/, unsigned /*c*/) {
#pragma HLS INLINE
        return v;
    }
};
template <>
struct affine_stage<true> {
    template <class acc_t, class scale_t>
    static acc_t apply(const acc_t& v, const scale_t* scale, const scale_t* shift, unsigned c) {
#pragma HLS INLINE
        return v * value_of(scale[c]) + value_of(shift[c]);
    }
};

/// acc -> [affine] -> [relu when RELU] -> res_t, over C channels of HW pixels. The accumulator comes in BANKS
/// blocks of N / BANKS elements (the MAC loop's banks: block b holds elements b * N / BANKS ...).
template <class CONFIG, bool RELU, unsigned C, unsigned HW, unsigned BANKS, class acc_t, class res_t>
void epilogue_pointwise(const acc_t acc[BANKS][C * HW / BANKS], res_t y[C * HW],
                        const typename CONFIG::scale_t* scale, const typename CONFIG::scale_t* shift) {
    const unsigned BANK = C * HW / BANKS;
    SPARSECC_ENTER(CONFIG::layer, instrument::POINTWISE);
epilogue_pointwise:
    for (unsigned i = 0; i < C * HW; i++) {
#pragma HLS PIPELINE II = 1
        SPARSECC_COUNT(CONFIG::layer, instrument::POINTWISE, 1);
        acc_t v = affine_stage<CONFIG::affine>::apply(acc[i / BANK][i % BANK], scale, shift, i / HW);
        if (RELU && v < acc_t(0)) v = acc_t(0);
        y[i] = res_t(v);
    }
}

/// y = max(x, 0) over N values (the ReLU after a k-WTA).
template <unsigned N, unsigned ID, class res_t>
void epilogue_relu(const res_t x[N], res_t y[N]) {
    SPARSECC_ENTER(ID, instrument::POINTWISE);
epilogue_relu:
    for (unsigned i = 0; i < N; i++) {
#pragma HLS PIPELINE II = 1
        SPARSECC_COUNT(ID, instrument::POINTWISE, 1);
        y[i] = x[i] < res_t(0) ? res_t(0) : x[i];
    }
}

/// k-WTA and max pooling of the pointwise result, in the configured order (one specialisation per order).
template <class CONFIG, unsigned C, unsigned H, unsigned W, bool KWTA = CONFIG::kwta_config::enabled,
          bool POOL = CONFIG::pool_config::enabled, bool POOL_FIRST = CONFIG::pool_before_kwta>
struct select_pool;

/// k-WTA only.
template <class CONFIG, unsigned C, unsigned H, unsigned W>
struct select_pool<CONFIG, C, H, W, true, false, false> {
    template <class res_t>
    static void run(const res_t act[C * H * W], res_t y[C * H * W],
                    const typename CONFIG::kwta_config::boost_t* boost) {
#pragma HLS INLINE
        kwta_apply<typename CONFIG::kwta_config, C, H * W, CONFIG::ieee>(act, y, boost);
    }
};

/// Max pooling only.
template <class CONFIG, unsigned C, unsigned H, unsigned W>
struct select_pool<CONFIG, C, H, W, false, true, false> {
    template <class res_t>
    static void run(const res_t act[C * H * W], res_t y[epilogue_output<CONFIG, C, H, W>::size],
                    const typename CONFIG::kwta_config::boost_t* /*boost*/) {
#pragma HLS INLINE
        maxpool_apply<typename CONFIG::pool_config, C, H, W, CONFIG::layer, CONFIG::ieee>(act, y);
    }
};

/// k-WTA, then max pooling of the winners.
template <class CONFIG, unsigned C, unsigned H, unsigned W>
struct select_pool<CONFIG, C, H, W, true, true, false> {
    template <class res_t>
    static void run(const res_t act[C * H * W], res_t y[epilogue_output<CONFIG, C, H, W>::size],
                    const typename CONFIG::kwta_config::boost_t* boost) {
#pragma HLS INLINE
        res_t winners[C * H * W];
        kwta_apply<typename CONFIG::kwta_config, C, H * W, CONFIG::ieee>(act, winners, boost);
        maxpool_apply<typename CONFIG::pool_config, C, H, W, CONFIG::layer, CONFIG::ieee>(winners, y);
    }
};

/// Max pooling, then k-WTA over the pooled values.
template <class CONFIG, unsigned C, unsigned H, unsigned W>
struct select_pool<CONFIG, C, H, W, true, true, true> {
    template <class res_t>
    static void run(const res_t act[C * H * W], res_t y[epilogue_output<CONFIG, C, H, W>::size],
                    const typename CONFIG::kwta_config::boost_t* boost) {
#pragma HLS INLINE
        typedef epilogue_output<CONFIG, C, H, W> out;
        res_t pooled[out::size];
        maxpool_apply<typename CONFIG::pool_config, C, H, W, CONFIG::layer, CONFIG::ieee>(act, pooled);
        kwta_apply<typename CONFIG::kwta_config, C, out::height * out::width, CONFIG::ieee>(pooled, y, boost);
    }
};

/// The stages after the pointwise loop: none (the pointwise loop writes y), select/pool, or select/pool then
/// the late ReLU.
template <class CONFIG, unsigned C, unsigned H, unsigned W,
          bool SELECT = CONFIG::kwta_config::enabled || CONFIG::pool_config::enabled,
          bool LATE_RELU = CONFIG::relu && CONFIG::relu_after_kwta && CONFIG::kwta_config::enabled>
struct epilogue_tail;

template <class CONFIG, unsigned C, unsigned H, unsigned W>
struct epilogue_tail<CONFIG, C, H, W, false, false> {
    template <unsigned BANKS, class acc_t, class res_t>
    static void run(const acc_t acc[BANKS][C * H * W / BANKS], res_t y[C * H * W],
                    const typename CONFIG::scale_t* scale, const typename CONFIG::scale_t* shift,
                    const typename CONFIG::kwta_config::boost_t* /*boost*/) {
#pragma HLS INLINE
        epilogue_pointwise<CONFIG, CONFIG::relu, C, H * W, BANKS>(acc, y, scale, shift);
    }
};

template <class CONFIG, unsigned C, unsigned H, unsigned W>
struct epilogue_tail<CONFIG, C, H, W, true, false> {
    template <unsigned BANKS, class acc_t, class res_t>
    static void run(const acc_t acc[BANKS][C * H * W / BANKS], res_t y[epilogue_output<CONFIG, C, H, W>::size],
                    const typename CONFIG::scale_t* scale, const typename CONFIG::scale_t* shift,
                    const typename CONFIG::kwta_config::boost_t* boost) {
#pragma HLS INLINE
        res_t act[C * H * W];
        epilogue_pointwise<CONFIG, CONFIG::relu, C, H * W, BANKS>(acc, act, scale, shift);
        select_pool<CONFIG, C, H, W>::run(act, y, boost);
    }
};

template <class CONFIG, unsigned C, unsigned H, unsigned W>
struct epilogue_tail<CONFIG, C, H, W, true, true> {
    template <unsigned BANKS, class acc_t, class res_t>
    static void run(const acc_t acc[BANKS][C * H * W / BANKS], res_t y[epilogue_output<CONFIG, C, H, W>::size],
                    const typename CONFIG::scale_t* scale, const typename CONFIG::scale_t* shift,
                    const typename CONFIG::kwta_config::boost_t* boost) {
#pragma HLS INLINE
        const unsigned OUT = epilogue_output<CONFIG, C, H, W>::size;
        res_t act[C * H * W];
        res_t selected[OUT];
        epilogue_pointwise<CONFIG, false, C, H * W, BANKS>(acc, act, scale, shift);
        select_pool<CONFIG, C, H, W>::run(act, selected, boost);
        epilogue_relu<OUT, CONFIG::layer>(selected, y);
    }
};

/// The whole epilogue of a layer whose output is C x H x W (H = W = 1 for linear layers); the accumulator
/// arrives in BANKS blocks (see epilogue_pointwise).
template <class CONFIG, unsigned C, unsigned H, unsigned W, unsigned BANKS, class acc_t, class res_t>
void epilogue(const acc_t acc[BANKS][C * H * W / BANKS], res_t y[epilogue_output<CONFIG, C, H, W>::size],
              const typename CONFIG::scale_t* scale, const typename CONFIG::scale_t* shift,
              const typename CONFIG::kwta_config::boost_t* boost) {
#pragma HLS INLINE
    static_assert(!CONFIG::pool_before_kwta || (CONFIG::kwta_config::enabled && CONFIG::pool_config::enabled),
                  "epilogue: pool_before_kwta needs both a k-WTA and a pooling stage");
    static_assert((C * H * W) % BANKS == 0, "epilogue: the accumulator banks must split the output evenly");
    epilogue_tail<CONFIG, C, H, W>::template run<BANKS>(acc, y, scale, shift, boost);
}

}  // namespace detail
}  // namespace sparsecc

#endif  // SPARSECC_EPILOGUE_H
