// sparsecc HLS kernel library — element-wise and shape ops on one NCHW sample.
#ifndef SPARSECC_ELEMENTWISE_H
#define SPARSECC_ELEMENTWISE_H

#include "common.h"
#include "maths.h"

namespace sparsecc {

/// y = max(x, 0) over N elements (NaN stays NaN, as in the interpreter).
template <unsigned N, unsigned ID, class data_t, class res_t>
void relu(const data_t x[N], res_t y[N]) {
    SPARSECC_ENTER(ID, instrument::POINTWISE);
relu_loop:
    for (unsigned i = 0; i < N; i++) {
#pragma HLS PIPELINE II = 1
        SPARSECC_COUNT(ID, instrument::POINTWISE, 1);
        y[i] = x[i] < data_t(0) ? res_t(0) : res_t(x[i]);
    }
}

/// Per-channel affine (batch norm at inference): y = x * scale[c] + shift[c], computed in
/// CONFIG::accum_t. CONFIG members: channels, height, width (1, 1 for BatchNorm1d), accum_t, scale_t.
template <class CONFIG, class data_t, class res_t>
void affine(const data_t x[CONFIG::channels * CONFIG::height * CONFIG::width],
            res_t y[CONFIG::channels * CONFIG::height * CONFIG::width],
            const typename CONFIG::scale_t scale[CONFIG::channels],
            const typename CONFIG::scale_t shift[CONFIG::channels]) {
    typedef typename CONFIG::accum_t acc_t;
    constexpr unsigned HW = CONFIG::height * CONFIG::width;
    SPARSECC_ENTER(CONFIG::layer, instrument::POINTWISE);
affine_loop:
    for (unsigned i = 0; i < CONFIG::channels * HW; i++) {
#pragma HLS PIPELINE II = 1
        SPARSECC_COUNT(CONFIG::layer, instrument::POINTWISE, 1);
        const unsigned c = i / HW;
        acc_t v = x[i] * value_of(scale[c]) + value_of(shift[c]);
        y[i] = res_t(v);
    }
}

/// Element-wise copy with conversion (also what Flatten is: NCHW is already flat).
template <unsigned N, class data_t, class res_t>
void copy(const data_t x[N], res_t y[N]) {
copy_loop:
    for (unsigned i = 0; i < N; i++) {
#pragma HLS PIPELINE II = 1
        y[i] = res_t(x[i]);
    }
}

/// Flatten (C, H, W) -> (C*H*W): a copy; the generator may instead pass the same buffer on.
template <unsigned N, class data_t, class res_t>
void flatten(const data_t x[N], res_t y[N]) {
#pragma HLS INLINE
    copy<N>(x, y);
}

/// Concatenation along channels of two samples of A and B elements (A = C1*H*W, B = C2*H*W): in NCHW the
/// channels of `b` simply follow those of `a`.
template <unsigned A, unsigned B, unsigned ID, class a_t, class b_t, class res_t>
void concat_channels(const a_t a[A], const b_t b[B], res_t y[A + B]) {
    SPARSECC_ENTER(ID, instrument::POINTWISE);
    SPARSECC_ENTER(ID, instrument::POINTWISE);
concat_a:
    for (unsigned i = 0; i < A; i++) {
#pragma HLS PIPELINE II = 1
        SPARSECC_COUNT(ID, instrument::POINTWISE, 1);
        y[i] = res_t(a[i]);
    }
concat_b:
    for (unsigned i = 0; i < B; i++) {
#pragma HLS PIPELINE II = 1
        SPARSECC_COUNT(ID, instrument::POINTWISE, 1);
        y[A + i] = res_t(b[i]);
    }
}

namespace detail {

/// Interleaved partial sums of the float exp-sum: consecutive iterations add into different partial sums,
/// so the loop-carried float add (latency ~4 cycles) does not limit the loop to II = 4.
static const unsigned SOFTMAX_PARTIALS = 4;

/// max(x) and sum(exp(x - max)) in float (ap_fixed inputs are converted to float first).
template <unsigned N, unsigned ID, class data_t>
void softmax_stats(const data_t x[N], float& max_value, float& exp_sum) {
    float m = to_float(x[0]);
    SPARSECC_ENTER(ID, instrument::POINTWISE);
softmax_max:
    for (unsigned i = 1; i < N; i++) {
#pragma HLS PIPELINE II = 1
        SPARSECC_COUNT(ID, instrument::POINTWISE, 1);
        const float v = to_float(x[i]);
        if (v > m) m = v;
    }
    float partial[SOFTMAX_PARTIALS];
#pragma HLS ARRAY_PARTITION variable = partial complete
    for (unsigned p = 0; p < SOFTMAX_PARTIALS; p++) partial[p] = 0.0f;
    SPARSECC_ENTER(ID, instrument::POINTWISE);
softmax_sum:
    for (unsigned i = 0; i < N; i++) {
#pragma HLS PIPELINE II = 1
#pragma HLS DEPENDENCE variable = partial type = inter false
        SPARSECC_COUNT(ID, instrument::POINTWISE, 1);
        partial[i % SOFTMAX_PARTIALS] += math::exp(to_float(x[i]) - m);
    }
    float sum = 0.0f;
    for (unsigned p = 0; p < SOFTMAX_PARTIALS; p++) sum += partial[p];
    max_value = m;
    exp_sum = sum;
}

}  // namespace detail

/// y = x - max - log(sum(exp(x - max))) over N logits (float math).
template <unsigned N, unsigned ID, class data_t, class res_t>
void log_softmax(const data_t x[N], res_t y[N]) {
    float m, sum;
    detail::softmax_stats<N, ID>(x, m, sum);
    const float log_sum = math::log(sum);
    SPARSECC_ENTER(ID, instrument::POINTWISE);
log_softmax_out:
    for (unsigned i = 0; i < N; i++) {
#pragma HLS PIPELINE II = 1
        SPARSECC_COUNT(ID, instrument::POINTWISE, 1);
        y[i] = res_t((to_float(x[i]) - m) - log_sum);
    }
}

/// y = exp(x - max) / sum(exp(x - max)) over N logits (float math).
template <unsigned N, unsigned ID, class data_t, class res_t>
void softmax(const data_t x[N], res_t y[N]) {
    float m, sum;
    detail::softmax_stats<N, ID>(x, m, sum);
    SPARSECC_ENTER(ID, instrument::POINTWISE);
softmax_out:
    for (unsigned i = 0; i < N; i++) {
#pragma HLS PIPELINE II = 1
        SPARSECC_COUNT(ID, instrument::POINTWISE, 1);
        y[i] = res_t(math::exp(to_float(x[i]) - m) / sum);
    }
}

}  // namespace sparsecc

#endif  // SPARSECC_ELEMENTWISE_H
