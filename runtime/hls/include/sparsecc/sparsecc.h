// sparsecc HLS kernel library — umbrella header. Generated HLS projects include only this file:
//     #include <sparsecc/sparsecc.h>
// and compile with the directory holding `sparsecc/` and the ap_types headers on the include path
// (C-simulation: g++ -std=c++14 -O2 -ffp-contract=off -Wno-unknown-pragmas -Wno-unused-label, see
// sparsecc.runtime.hls.csim).
//
// common.h       configuration building blocks (kwta_defaults, pool2d, epilogue_defaults), helpers,
//                stored constants (word<T, S>: an ap_fixed ROM word as raw bits; value_of)
// formats.h      weight storage formats: dense, ELL, CSC, complementary packing
// ieee.h         float designs: the IEEE stage of weight-skipping kernels (0 * inf), NaN-aware helpers
// kwta.h         k-winners-take-all unit (exact radix select)
// pool.h         maxpool2d, avgpool2d, global_avgpool
// elementwise.h  relu, affine (batch norm), copy / flatten, concat_channels, softmax, log_softmax
// maths.h        exp / log: hls:: maths in synthesis, std:: in C-simulation
// epilogue.h     fused epilogue: [affine] -> [relu] -> [k-WTA] -> [maxpool] (also pool before k-WTA, ReLU after)
// linear.h       linear_{dense, ell, act_sparse, sparse_sparse, complementary, complementary_sparse}
// conv2d.h       conv2d_{dense, ell, act_sparse, sparse_sparse, complementary, complementary_sparse}
// io.h           stream_to_array / array_to_stream (AXI4-Stream top-level ports)
//
// What generated glue looks like (the first layer of GSCSparseCNN, DESIGN.md section 3, in ap_fixed):
//
//     typedef ap_fixed<16, 6> data_t;
//     struct conv1_config : sparsecc::conv2d_defaults {            // Conv2d(1, 64, 5), 12 of 25 per filter
//         static constexpr unsigned layer = 0;                     // instrumentation counters
//         static constexpr unsigned lanes = 4;                     // MAC / k-WTA lanes (chosen by sparsecc)
//         static constexpr unsigned in_channels = 1, in_height = 32, in_width = 32;
//         static constexpr unsigned out_channels = 64, out_height = 28, out_width = 28;
//         static constexpr unsigned kernel_h = 5, kernel_w = 5;
//         static constexpr unsigned fan_in = 12;                   // ELL weights
//         typedef ap_fixed<32, 12> accum_t;
//         static constexpr bool affine = true;                     // BatchNorm2d(64, affine=False)
//         typedef data_t scale_t;
//         struct kwta_config : sparsecc::kwta_defaults {           // KWinners2d, global, boosted
//             static constexpr unsigned k = 4767;
//             static constexpr bool boost = true;
//             typedef data_t boost_t;
//         };
//         typedef sparsecc::pool2d<2, 2> pool_config;              // MaxPool2d(2)
//     };
//     // conv1_weights.h: const unsigned char conv1_idx[64][12] = {...};
//     //                  const sparsecc::word<data_t, int16_t> conv1_val[64][12] = {...};   // raw ROM bits
//     //                  (same for conv1_bias[64], bn1_scale[64], bn1_shift[64], kwta1_boost[64]; float
//     //                  designs store plain `const float` arrays)
//
//     void gsc_sparse(const data_t x[1 * 32 * 32], data_t y[12]) {
//         data_t a1[sparsecc::conv2d_output_size<conv1_config>()];   // 64 x 14 x 14
//         sparsecc::conv2d_ell<conv1_config>(x, a1, conv1_idx, conv1_val, conv1_bias, bn1_scale, bn1_shift,
//                                            kwta1_boost);
//         data_t a2[sparsecc::conv2d_output_size<conv2_config>()];
//         sparsecc::conv2d_sparse_sparse<conv2_config>(a1, a2, conv2_col_ptr, conv2_row_idx, conv2_val,
//                                                      conv2_bias, bn2_scale, bn2_shift, kwta2_boost);
//         ...
//         sparsecc::log_softmax<12>(logits, y);
//     }
//
// Unused epilogue arrays are passed as sparsecc::no_values<T, N>::values (never read), e.g.
// `..., bias, no_values<conv1_config::scale_t, 64>::values, <the same>, boost)` for k-WTA without batch norm.
#ifndef SPARSECC_SPARSECC_H
#define SPARSECC_SPARSECC_H

#include "common.h"
#include "conv2d.h"
#include "elementwise.h"
#include "epilogue.h"
#include "formats.h"
#include "ieee.h"
#include "io.h"
#include "kwta.h"
#include "linear.h"
#include "maths.h"
#include "pool.h"

#endif  // SPARSECC_SPARSECC_H
