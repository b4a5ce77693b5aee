// sparsecc HLS kernel library — the transcendental functions of the kernels (softmax, log-softmax).
//
// Synthesis uses the hls:: maths library (hls_math.h, fixed-latency pipelined cores); C-simulation with g++
// uses the C++ standard library, so that g++ builds without Vitis. Kernels call sparsecc::math::exp / log.
#ifndef SPARSECC_MATHS_H
#define SPARSECC_MATHS_H

#ifdef __SYNTHESIS__
#include <hls_math.h>
#else
#include <cmath>
#endif

namespace sparsecc {
namespace math {

inline float exp(float v) {
#pragma HLS INLINE
#ifdef __SYNTHESIS__
    return hls::expf(v);
#else
    return std::exp(v);
#endif
}

inline float log(float v) {
#pragma HLS INLINE
#ifdef __SYNTHESIS__
    return hls::logf(v);
#else
    return std::log(v);
#endif
}

}  // namespace math
}  // namespace sparsecc

#endif  // SPARSECC_MATHS_H
