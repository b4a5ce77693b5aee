// sparsecc HLS kernel library — pooling (NCHW, one sample, no padding, floor mode).
//
// Standalone configs derive from pool2d<KH, KW, SH, SW> and add `channels`, `in_height`, `in_width`;
// the output is channels x pooled_dim(in_height, KH, SH) x pooled_dim(in_width, KW, SW).
#ifndef SPARSECC_POOL_H
#define SPARSECC_POOL_H

#include "common.h"
#include "ieee.h"

namespace sparsecc {

namespace detail {

/// Max pooling of a C x H x W sample with the window of PCFG (kernel_h/w, stride_h/w). Windows that do not
/// overlap (stride >= kernel) are pooled in one pass over the input in raster order, one element per cycle:
/// a row of running maxima (one per output column) is updated and each window's maximum written when its
/// last element arrives (one read of x and one read-modify-write of the row per cycle). Overlapping windows
/// read the window of each output: KH*KW reads from a dual-port buffer, II = ceil(KH*KW / 2).
template <class PCFG, unsigned C, unsigned H, unsigned W, unsigned ID, bool IEEE,
          bool OVERLAP = (PCFG::stride_h < PCFG::kernel_h || PCFG::stride_w < PCFG::kernel_w)>
struct maxpool_impl {
    static const unsigned OH = pooled_dim(H, PCFG::kernel_h, PCFG::stride_h);
    static const unsigned OW = pooled_dim(W, PCFG::kernel_w, PCFG::stride_w);
    template <class data_t, class res_t>
    static void run(const data_t x[C * H * W], res_t y[C * OH * OW]) {
        data_t row[OW > 0 ? OW : 1];
        SPARSECC_ENTER(ID, instrument::POOL);
    pool_stream:
        for (unsigned i = 0; i < C * H * W; i++) {
#pragma HLS PIPELINE II = 1
            SPARSECC_COUNT(ID, instrument::POOL, 1);
            const unsigned c = i / (H * W), iy = (i / W) % H, ix = i % W;
            const unsigned oy = iy / PCFG::stride_h, ry = iy % PCFG::stride_h;
            const unsigned ox = ix / PCFG::stride_w, rx = ix % PCFG::stride_w;
            if (ry < PCFG::kernel_h && rx < PCFG::kernel_w && oy < OH && ox < OW) {
                const data_t v = x[i];
                const data_t m = (ry == 0 && rx == 0) ? v : pool_max<IEEE>(row[ox], v);
                row[ox] = m;
                if (ry == PCFG::kernel_h - 1 && rx == PCFG::kernel_w - 1) y[(c * OH + oy) * OW + ox] = res_t(m);
            }
        }
    }
};

template <class PCFG, unsigned C, unsigned H, unsigned W, unsigned ID, bool IEEE>
struct maxpool_impl<PCFG, C, H, W, ID, IEEE, true> {
    static const unsigned OH = pooled_dim(H, PCFG::kernel_h, PCFG::stride_h);
    static const unsigned OW = pooled_dim(W, PCFG::kernel_w, PCFG::stride_w);
    static const unsigned II = (PCFG::kernel_h * PCFG::kernel_w + 1) / 2;
    template <class data_t, class res_t>
    static void run(const data_t x[C * H * W], res_t y[C * OH * OW]) {
        SPARSECC_ENTER(ID, instrument::POOL);
    pool_out:
        for (unsigned o = 0; o < C * OH * OW; o++) {
#pragma HLS PIPELINE II = II
            SPARSECC_COUNT(ID, instrument::POOL, II);
            const unsigned c = o / (OH * OW);
            const unsigned oy = (o / OW) % OH;
            const unsigned ox = o % OW;
            const unsigned base = c * H * W + oy * PCFG::stride_h * W + ox * PCFG::stride_w;
            data_t m = x[base];
        pool_window:
            for (unsigned t = 1; t < PCFG::kernel_h * PCFG::kernel_w; t++) {
                const data_t v = x[base + (t / PCFG::kernel_w) * W + t % PCFG::kernel_w];
                m = pool_max<IEEE>(m, v);
            }
            y[o] = res_t(m);
        }
    }
};

/// Max pooling of a C x H x W sample (see maxpool_impl); IEEE (float data): a window holding NaN gives NaN.
template <class PCFG, unsigned C, unsigned H, unsigned W, unsigned ID, bool IEEE_CONFIG = PCFG::ieee, class data_t,
          class res_t>
void maxpool_apply(const data_t x[C * H * W],
                   res_t y[C * pooled_dim(H, PCFG::kernel_h, PCFG::stride_h) *
                           pooled_dim(W, PCFG::kernel_w, PCFG::stride_w)]) {
    maxpool_impl<PCFG, C, H, W, ID, IEEE_CONFIG && std::is_floating_point<data_t>::value>::run(x, y);
}

}  // namespace detail

/// Max pooling (MaxPool2d, no padding, floor mode).
template <class PCFG, class data_t, class res_t>
void maxpool2d(const data_t x[PCFG::channels * PCFG::in_height * PCFG::in_width],
               res_t y[PCFG::channels * pooled_dim(PCFG::in_height, PCFG::kernel_h, PCFG::stride_h) *
                       pooled_dim(PCFG::in_width, PCFG::kernel_w, PCFG::stride_w)]) {
    detail::maxpool_apply<PCFG, PCFG::channels, PCFG::in_height, PCFG::in_width, PCFG::layer>(x, y);
}

/// Average pooling (AvgPool2d, no padding, floor mode): the window sum (in PCFG::accum_t) divided by
/// kernel_h * kernel_w.
template <class PCFG, class data_t, class res_t>
void avgpool2d(const data_t x[PCFG::channels * PCFG::in_height * PCFG::in_width],
               res_t y[PCFG::channels * pooled_dim(PCFG::in_height, PCFG::kernel_h, PCFG::stride_h) *
                       pooled_dim(PCFG::in_width, PCFG::kernel_w, PCFG::stride_w)]) {
    typedef typename PCFG::accum_t acc_t;
    constexpr unsigned H = PCFG::in_height, W = PCFG::in_width;
    constexpr unsigned OH = pooled_dim(H, PCFG::kernel_h, PCFG::stride_h);
    constexpr unsigned OW = pooled_dim(W, PCFG::kernel_w, PCFG::stride_w);
    constexpr unsigned KK = PCFG::kernel_h * PCFG::kernel_w;
    const unsigned II = (KK + 1) / 2;   // KK reads from a dual-port buffer
    SPARSECC_ENTER(PCFG::layer, instrument::POOL);
avgpool_out:
    for (unsigned o = 0; o < PCFG::channels * OH * OW; o++) {
#pragma HLS PIPELINE II = II
        SPARSECC_COUNT(PCFG::layer, instrument::POOL, II);
        const unsigned c = o / (OH * OW);
        const unsigned oy = (o / OW) % OH;
        const unsigned ox = o % OW;
        const unsigned base = c * H * W + oy * PCFG::stride_h * W + ox * PCFG::stride_w;
        acc_t sum = 0;
    avgpool_window:
        for (unsigned t = 0; t < KK; t++) sum += x[base + (t / PCFG::kernel_w) * W + t % PCFG::kernel_w];
        y[o] = res_t(sum / int(KK));   // integer divisor: no overflow of acc_t
    }
}

/// Global average pooling: y[c] = mean over H x W of x[c] (sum in CONFIG::accum_t, then / (H*W)).
/// CONFIG members: channels, height, width, accum_t. The sum of a channel is kept in GAP_PARTIALS interleaved
/// partial sums (consecutive elements add into different ones), so a float add's latency does not limit the
/// loop's II; the partials are added at the end of the channel.
static const unsigned GAP_PARTIALS = 4;

template <class CONFIG, class data_t, class res_t>
void global_avgpool(const data_t x[CONFIG::channels * CONFIG::height * CONFIG::width],
                    res_t y[CONFIG::channels]) {
    typedef typename CONFIG::accum_t acc_t;
    constexpr unsigned HW = CONFIG::height * CONFIG::width;
gap_channels:
    for (unsigned c = 0; c < CONFIG::channels; c++) {
        acc_t partial[GAP_PARTIALS];
#pragma HLS ARRAY_PARTITION variable = partial complete
        for (unsigned p = 0; p < GAP_PARTIALS; p++) partial[p] = acc_t(0);
        SPARSECC_ENTER(CONFIG::layer, instrument::POOL);
    gap_sum:
        for (unsigned i = 0; i < HW; i++) {
#pragma HLS PIPELINE II = 1
#pragma HLS DEPENDENCE variable = partial type = inter false
            SPARSECC_COUNT(CONFIG::layer, instrument::POOL, 1);
            partial[i % GAP_PARTIALS] += x[c * HW + i];
        }
        acc_t sum = 0;
        for (unsigned p = 0; p < GAP_PARTIALS; p++) sum += partial[p];
        y[c] = res_t(sum / int(HW));
    }
}

}  // namespace sparsecc

#endif  // SPARSECC_POOL_H
