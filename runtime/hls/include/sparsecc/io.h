// sparsecc HLS kernel library — moving one sample between AXI4-Stream ports and the arrays the layers use.
//
// A generated top function with the AXI-stream interface reads its input stream into an array, runs its
// layers on arrays, and writes the result array to its output stream: one value per stream beat, in the
// NCHW order of the sample. Cost: N cycles each (II = 1).
#ifndef SPARSECC_IO_H
#define SPARSECC_IO_H

#include "common.h"

namespace sparsecc {

/// Reads N values (one sample) from `in` into `x`.
template <unsigned N, class stream_t, class data_t>
void stream_to_array(hls::stream<stream_t>& in, data_t x[N]) {
stream_to_array:
    for (unsigned i = 0; i < N; i++) {
#pragma HLS PIPELINE II = 1
        x[i] = data_t(in.read());
    }
}

/// Writes the N values of `y` (one sample) to `out`.
template <unsigned N, class data_t, class stream_t>
void array_to_stream(const data_t y[N], hls::stream<stream_t>& out) {
array_to_stream:
    for (unsigned i = 0; i < N; i++) {
#pragma HLS PIPELINE II = 1
        out.write(stream_t(y[i]));
    }
}

}  // namespace sparsecc

#endif  // SPARSECC_IO_H
