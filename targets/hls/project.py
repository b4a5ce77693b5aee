"""The files of a generated Vitis HLS project (all text, built in memory; see :data:`LAYOUT`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sparsecc.compiler.feeds import random_inputs
from sparsecc.compiler.interpreter import interpret
from sparsecc.compiler.ir.core import Module
from sparsecc.runtime.hls.csim import kernel_include_dir

from .design import Buffer, Design, Layer, View
from .estimate import estimate as estimate_design
from .estimate import markdown, to_json
from .precision import accumulator_for

#: Samples in the testbench's data files.
TESTBENCH_SAMPLES = 4
#: Tolerance of the testbench for float designs (the same as ``sparsecc check``).
RTOL, ATOL = 1e-4, 1e-5
#: Entry points of the C-simulation bridge (csim/bridge.cpp): the run, and the loop counters of an
#: instrumented build.
BRIDGE_SYMBOL = "sparsecc_csim"
COUNTS_SYMBOL = "sparsecc_csim_counts"

#: The files of a project and what they hold (``{top}`` is the top function's name).
LAYOUT = (
    ("manifest.json", "sparsecc artifact manifest (model, target options, inputs/outputs)"),
    ("README.md", "this project: files, how to build, precision, estimates"),
    ("build.tcl", "Vitis HLS: csim_design, csynth_design, cosim_design, export_design"),
    ("{top}_test.cpp", "testbench: reads tb_data/, runs the top function per sample, compares"),
    ("firmware/{top}.cpp", "top function: one kernel call per layer"),
    ("firmware/{top}.h", "its prototype"),
    ("firmware/defines.h", "data, accumulator, weight and per-layer types; port sizes"),
    ("firmware/parameters.h", "per-layer configuration structs"),
    ("firmware/weights/<layer>.h", "compressed constants of each layer (only non-zeros and their indices)"),
    ("firmware/sparsecc/*.h", "the sparsecc kernel header library"),
    ("tb_data/tb_input_features.dat", "one sample per line (all inputs, NCHW order)"),
    ("tb_data/tb_output_predictions.dat", "expected outputs, bit-exact: a C-simulation of this design"),
    ("tb_data/tb_output_reference.dat", "outputs of sparsecc's reference interpreter (float, for information)"),
    ("csim/bridge.cpp", 'extern "C" entry used by sparsecc\'s C-simulation (ctypes)'),
    ("report/estimate.json, .md", "cycles, II, latency, DSP/BRAM/URAM/LUT: sparse vs dense, U250 and ZCU104"),
)


def layout(top: str) -> str:
    """The project tree as text."""
    rows = [(path.format(top=top), what) for path, what in LAYOUT]
    width = max(len(path) for path, _ in rows) + 2
    return "\n".join(["PROJECT/", *(f"  {path:<{width}}{what}" for path, what in rows)])


def testbench_lines(arrays: list[np.ndarray], samples: int) -> str:
    """Outputs (or inputs) of ``samples`` samples, one sample a line, float32 values that read back exactly."""
    rows = np.concatenate([np.asarray(a, dtype=np.float32).reshape(samples, -1) for a in arrays], axis=1)
    return "".join(" ".join(np.char.mod("%.9g", row).tolist()) + "\n" for row in rows)


def _guard(name: str) -> str:
    return "SPARSECC_" + "".join(ch if ch.isalnum() else "_" for ch in name).upper()


class ProjectWriter:
    """Builds every file of the project as text."""

    def __init__(self, design: Design, module: Module, pipeline: str, version: str) -> None:
        self.design = design
        self.module = module
        self.pipeline = pipeline
        self.version = version
        self.options = design.options
        self.top = design.top
        self._bind_outputs()

    # -- output ports -----------------------------------------------------------------------------------------
    def _bind_outputs(self) -> None:
        """Array interface: a layer whose result is only an output writes straight into the output port."""
        self.bound: dict[int, str] = {}  # id(buffer) -> port name
        if self.options.interface != "array":
            return
        readers: dict[int, int] = {}
        for layer in self.design.layers:
            for buffer in layer.inputs:
                readers[id(buffer.storage)] = readers.get(id(buffer.storage), 0) + 1
        producers = {id(layer.output) for layer in self.design.layers}
        seen: set[int] = set()
        for port in self.design.outputs:
            key = id(port.buffer.storage)
            if key in producers and not readers.get(key) and key not in seen:
                self.bound[key] = port.ident
            seen.add(key)

    def _name(self, buffer: Buffer) -> str:
        return self.bound.get(id(buffer.storage), buffer.storage.name)

    def _is_bound(self, buffer: Buffer) -> bool:
        return id(buffer.storage) in self.bound

    def _port_type(self, index: int) -> str:
        return "result_t" if index == 0 else f"result{index}_t"

    # -- files ------------------------------------------------------------------------------------------------
    def files(self, report: dict | None = None) -> dict[str, bytes]:
        out: dict[str, str] = {
            f"firmware/{self.top}.cpp": self.top_source(),
            f"firmware/{self.top}.h": self.top_header(),
            "firmware/defines.h": self.defines(),
            "firmware/parameters.h": self.parameters(),
            f"{self.top}_test.cpp": self.testbench(),
            "csim/bridge.cpp": self.bridge(),
            "build.tcl": self.build_tcl(),
        }
        for layer in self.design.layers:
            if layer.arrays:
                out[f"firmware/weights/{layer.ident}.h"] = self.weights_header(layer)
        for header in sorted((kernel_include_dir() / "sparsecc").glob("*.h")):
            out[f"firmware/sparsecc/{header.name}"] = header.read_text()
        inputs, expected = self.testbench_data()
        out["tb_data/tb_input_features.dat"] = inputs
        out["tb_data/tb_output_reference.dat"] = expected
        out["tb_data/tb_output_predictions.dat"] = expected  # replaced by a C-simulation run at export
        report = report if report is not None else estimate_design(self.design)
        out["report/estimate.json"] = to_json(report)
        out["report/estimate.md"] = markdown(report)
        out["README.md"] = self.readme(report)
        return {path: text.encode() for path, text in out.items()}

    def _banner(self, what: str) -> str:
        return (f"// {what}\n// Generated by sparsecc {self.version} from model '{self.design.model}' "
                f"(pipeline: {self.pipeline}).")

    # -- firmware ---------------------------------------------------------------------------------------------
    def signature(self) -> str:
        ports = []
        if self.options.interface == "axis":
            ports += [f"hls::stream<input_t>& {p.ident}" for p in self.design.inputs]
            ports += [f"hls::stream<{self._port_type(i)}>& {p.ident}" for i, p in enumerate(self.design.outputs)]
        else:
            ports += [f"const input_t {p.ident}[N_{p.ident.upper()}]" for p in self.design.inputs]
            ports += [f"{self._port_type(i)} {p.ident}[N_{p.ident.upper()}]"
                      for i, p in enumerate(self.design.outputs)]
        return f"void {self.top}({', '.join(ports)})"

    def top_header(self) -> str:
        guard = _guard(f"{self.top}_H")
        lines = [self._banner(f"{self.top}.h — the top function of the HLS design."), f"#ifndef {guard}",
                 f"#define {guard}", "", '#include "defines.h"', "",
                 f"/// {self.design.model}: one sample per call "
                 f"({'AXI4-Stream ports' if self.options.interface == 'axis' else 'array (ap_memory) ports'}).",
                 f"{self.signature()};", "", f"#endif  // {guard}", ""]
        return "\n".join(lines)

    def defines(self) -> str:
        guard = _guard("DEFINES_H")
        design = self.design
        precision = self.options.precision
        accum = self.options.accum_precision
        lines = [self._banner("defines.h — numeric types and port sizes."), f"#ifndef {guard}", f"#define {guard}",
                 "", "#include <ap_fixed.h>", "#include <ap_int.h>", "#include <hls_stream.h>", "",
                 "#include <cstdint>", "", '#include "sparsecc/sparsecc.h"', "",
                 f"typedef {precision.ctype()} data_t;    // activations (model precision)",
                 f"typedef {(accum or accumulator_for(precision)).ctype()} accum_t;   // accumulators of the layers "
                 "in the model precision",
                 f"typedef {self.options.constants.ctype()} weight_t;  // weights, biases, scale/shift, boost",
                 "typedef data_t input_t;   // input ports"]
        if design.layer_types:
            lines += ["", "// per-layer precision (layer_precision option; model outputs saturate: AP_SAT)"]
            lines += [f"typedef {p.ctype()} {name};" for name, p in design.layer_types.items()]
        lines.append("")
        for i, port in enumerate(design.outputs):
            lines.append(f"typedef {port.buffer.ctype} {self._port_type(i)};   // output port '{port.name}'")
        lines += ["", "// port sizes (one sample, NCHW order)"]
        for port in (*design.inputs, *design.outputs):
            lines.append(f"constexpr unsigned N_{port.ident.upper()} = {port.buffer.size};   // "
                         f"'{port.name}': {port.buffer.shape_text()}")
        lines += ["", f"#endif  // {guard}", ""]
        return "\n".join(lines)

    def parameters(self) -> str:
        guard = _guard("PARAMETERS_H")
        lines = [self._banner("parameters.h — one configuration struct per layer (see the sparsecc/ headers)."),
                 f"#ifndef {guard}", f"#define {guard}", "", '#include "defines.h"', ""]
        for layer in self.design.layers:
            if layer.config is not None:
                lines += [f"// ---- layer {layer.index + 1}: {layer.name}", layer.config.text(), ""]
        lines += [f"#endif  // {guard}", ""]
        return "\n".join(lines)

    def weights_header(self, layer: Layer) -> str:
        guard = _guard(f"WEIGHTS_{layer.ident}_H")
        lines = [self._banner(f"weights/{layer.ident}.h — constants of layer '{layer.name}' ({layer.op_name})."),
                 f"// {layer.summary}"]
        if layer.weight_format:
            lines.append(f"// Weight storage: {layer.weight_format}; {layer.stored_values} values stored for "
                         f"{layer.nonzeros} non-zero weights.")
        if not layer.precision.is_float:
            lines.append("// Values are sparsecc::word<T, intN_t>: the raw bits of T (quantised offline to the "
                         "nearest value, saturating).")
        lines += [f"#ifndef {guard}", f"#define {guard}", "", '#include "../defines.h"', ""]
        for array in layer.arrays:
            lines += [array.declaration(), ""]
        lines += [f"#endif  // {guard}", ""]
        return "\n".join(lines)

    def top_source(self) -> str:
        design = self.design
        opts = self.options
        lines = [self._banner(f"{self.top}.cpp — the top function: one kernel call per layer, in order."),
                 f"// Precision: {opts.precision}; interface: {opts.interface}; part {opts.part} at "
                 f"{opts.clock_mhz:g} MHz.",
                 f'#include "{self.top}.h"', "", '#include "parameters.h"']
        lines += [f'#include "weights/{layer.ident}.h"' for layer in design.layers if layer.arrays]
        lines += ["", f"{self.signature()} {{"]
        for port in (*design.inputs, *design.outputs):
            mode = "axis" if opts.interface == "axis" else "ap_memory"
            lines.append(f"#pragma HLS INTERFACE mode={mode} port={port.ident}")
        lines.append("#pragma HLS DATAFLOW")
        if opts.interface == "axis":
            lines.append("")
            for port in design.inputs:
                buf = port.buffer
                lines += [f"    // input port '{port.name}' ({buf.shape_text()}) into an array",
                          f"    input_t {buf.name}[{buf.size}];",
                          f"    sparsecc::stream_to_array<{buf.size}>({port.ident}, {buf.name});"]
        count = len(design.layers)
        for step in design.steps:
            lines.append("")
            if isinstance(step, View):
                lines.append(f"    // {step.name}: {step.op_name} to {'x'.join(map(str, step.shape))} is a view of "
                             f"{self._name(step.buffer)} (one sample is a flat NCHW array)")
                continue
            lines.append(f"    // [{step.index + 1}/{count}] {step.name}: {step.summary}")
            out = step.output
            if not self._is_bound(out):
                lines.append(f"    {out.ctype} {out.name}[{out.size}];   // {out.shape_text()}")
            args = [*(self._name(b) for b in step.inputs), self._name(out), *step.args]
            lines.append(f"    {step.function}({', '.join(args)});")
        for port in design.outputs:
            if self._is_bound(port.buffer) and self.bound[id(port.buffer.storage)] == port.ident:
                continue
            lines += ["", f"    // output port '{port.name}'"]
            if opts.interface == "axis":
                lines.append(f"    sparsecc::array_to_stream<{port.buffer.size}>({self._name(port.buffer)}, "
                             f"{port.ident});")
            else:
                lines.append(f"    sparsecc::copy<{port.buffer.size}>({self._name(port.buffer)}, {port.ident});")
        lines += ["}", ""]
        return "\n".join(lines)

    # -- C simulation and testbench ---------------------------------------------------------------------------
    def _io_blocks(self, sample: str | None) -> tuple[list[str], list[str], list[str]]:
        """(declarations and loads, call arguments, stores) of one sample (``sample``: the index expression of
        the sample in the float arrays, None for the first), for the bridge and the testbench."""
        design = self.design
        loads: list[str] = []
        call: list[str] = []
        stores: list[str] = []
        axis = self.options.interface == "axis"

        def at(n: str) -> str:
            return "i" if sample is None else f"{sample} * {n} + i"

        for port in design.inputs:
            n = f"N_{port.ident.upper()}"
            if axis:
                loads += [f"hls::stream<input_t> {port.ident}_stream;",
                          f"for (unsigned i = 0; i < {n}; i++) "
                          f"{port.ident}_stream.write(input_t({port.ident}_in[{at(n)}]));"]
                call.append(f"{port.ident}_stream")
            else:
                loads += [f"std::vector<input_t> {port.ident}_buf({n});",
                          f"for (unsigned i = 0; i < {n}; i++) "
                          f"{port.ident}_buf[i] = input_t({port.ident}_in[{at(n)}]);"]
                call.append(f"{port.ident}_buf.data()")
        for i, port in enumerate(design.outputs):
            n = f"N_{port.ident.upper()}"
            kind = self._port_type(i)
            if axis:
                loads.append(f"hls::stream<{kind}> {port.ident}_stream;")
                call.append(f"{port.ident}_stream")
                stores.append(f"for (unsigned i = 0; i < {n}; i++) {port.ident}_out[{at(n)}] = "
                              f"sparsecc::to_float({port.ident}_stream.read());")
            else:
                loads.append(f"std::vector<{kind}> {port.ident}_buf({n});")
                call.append(f"{port.ident}_buf.data()")
                stores.append(f"for (unsigned i = 0; i < {n}; i++) {port.ident}_out[{at(n)}] = "
                              f"sparsecc::to_float({port.ident}_buf[i]);")
        return loads, call, stores

    def bridge(self) -> str:
        design = self.design
        params = [f"const float* {p.ident}_in" for p in design.inputs]
        params += [f"float* {p.ident}_out" for p in design.outputs]
        loads, call, stores = self._io_blocks("n")
        lines = [self._banner("csim/bridge.cpp — C-simulation entry point for sparsecc (loaded with ctypes)."),
                 "// Runs the top function on `batch` samples of float inputs and writes float outputs; values are",
                 "// converted to and from the design's types exactly as the testbench does.",
                 "#include <vector>", "", f'#include "../firmware/{self.top}.h"', "",
                 f'extern "C" void {BRIDGE_SYMBOL}({", ".join([*params, "int batch"])}) {{',
                 "    for (int n = 0; n < batch; n++) {",
                 *["        " + line for line in loads],
                 f"        {self.top}({', '.join(call)});",
                 *["        " + line for line in stores],
                 "    }", "}", "",
                 "#ifdef SPARSECC_INSTRUMENT",
                 "// The loop counters of an instrumented build (common.h): copied out, or reset when `reset`.",
                 f'extern "C" void {COUNTS_SYMBOL}(unsigned long long* cycles, unsigned long long* entries, '
                 "int reset) {",
                 "    sparsecc::instrument::counts& table = sparsecc::instrument::table();",
                 "    const unsigned n = sparsecc::instrument::MAX_LAYERS * sparsecc::instrument::STAGES;",
                 "    for (unsigned i = 0; i < n; i++) {",
                 "        unsigned long long* c = &table.cycles[0][0] + i;",
                 "        unsigned long long* e = &table.entries[0][0] + i;",
                 "        if (reset) {",
                 "            *c = 0;",
                 "            *e = 0;",
                 "        } else {",
                 "            cycles[i] = *c;",
                 "            entries[i] = *e;",
                 "        }",
                 "    }",
                 "}",
                 "#endif", ""]
        return "\n".join(lines)

    def testbench(self) -> str:
        design = self.design
        n_in = " + ".join(f"N_{p.ident.upper()}" for p in design.inputs)
        n_out = " + ".join(f"N_{p.ident.upper()}" for p in design.outputs)
        loads, call, stores = self._io_blocks(None)
        in_offsets, offset = [], ""
        for port in design.inputs:
            in_offsets.append(f"    const float* {port.ident}_in = features.data(){offset};")
            offset = f"{offset} + N_{port.ident.upper()}"
        out_offsets, offset = [], ""
        for port in design.outputs:
            out_offsets.append(f"    float* {port.ident}_out = results.data(){offset};")
            offset = f"{offset} + N_{port.ident.upper()}"
        first = design.outputs[0].ident.upper()
        return "\n".join([
            self._banner(f"{self.top}_test.cpp — testbench (C simulation and C/RTL co-simulation)."),
            "// Reads tb_data/tb_input_features.dat (one sample per line: all inputs, NCHW order) and",
            "// tb_data/tb_output_predictions.dat (the expected outputs: a C-simulation of this same design, written",
            "// by sparsecc at export), runs the top function on every sample and compares BIT-EXACTLY (NaN equals",
            "// NaN): any difference fails the test (exit status 1). It also prints the max abs error and the top-1",
            "// agreement of the first output. Argument: the data directory (default tb_data).",
            "#include <cmath>", "#include <cstdio>", "#include <fstream>", "#include <sstream>", "#include <string>",
            "#include <vector>", "", f'#include "firmware/{self.top}.h"', "",
            "static bool read_sample(std::ifstream& file, std::vector<float>& values, size_t count) {",
            "    std::string line;",
            "    if (!std::getline(file, line)) return false;",
            "    std::istringstream fields(line);",
            "    values.assign(count, 0.0f);",
            "    for (size_t i = 0; i < count; i++)",
            "        if (!(fields >> values[i])) return false;",
            "    return true;",
            "}", "",
            "static unsigned argmax(const float* v, unsigned n) {",
            "    unsigned best = 0;",
            "    for (unsigned i = 1; i < n; i++)",
            "        if (v[i] > v[best]) best = i;",
            "    return best;",
            "}", "",
            "int main(int argc, char** argv) {",
            '    const std::string dir = argc > 1 ? argv[1] : "tb_data";',
            '    std::ifstream inputs(dir + "/tb_input_features.dat"), expected(dir + "/tb_output_predictions.dat");',
            "    if (!inputs || !expected) {",
            '        std::fprintf(stderr, "cannot open %s/tb_input_features.dat or tb_output_predictions.dat\\n", '
            "dir.c_str());",
            "        return 2;",
            "    }",
            "    std::vector<float> features, reference, results;",
            "    unsigned samples = 0, mismatched = 0, top1 = 0;",
            "    double max_error = 0.0;",
            f"    while (read_sample(inputs, features, {n_in})) {{",
            f"        if (!read_sample(expected, reference, {n_out})) {{",
            '            std::fprintf(stderr, "tb_output_predictions.dat has fewer samples than the inputs\\n");',
            "            return 2;",
            "        }",
            f"        results.assign({n_out}, 0.0f);",
            *["    " + line for line in in_offsets],
            *["    " + line for line in out_offsets],
            *["        " + line for line in loads],
            f"        {self.top}({', '.join(call)});",
            *["        " + line for line in stores],
            "        bool ok = true;",
            "        for (size_t i = 0; i < results.size(); i++) {",
            "            const bool both_nan = std::isnan(results[i]) && std::isnan(reference[i]);",
            "            const double error = std::fabs(double(results[i]) - double(reference[i]));",
            "            if (error > max_error) max_error = error;",
            "            if (!both_nan && !(results[i] == reference[i] && "
            "std::signbit(results[i]) == std::signbit(reference[i]))) ok = false;",
            "        }",
            f"        if (argmax(results.data(), N_{first}) == argmax(reference.data(), N_{first})) top1++;",
            "        if (!ok) mismatched++;",
            "        samples++;",
            "    }",
            '    std::printf("%u sample(s): max abs error %.3g, top-1 agreement %u/%u, %u mismatched\\n", '
            "samples, max_error, top1, samples, mismatched);",
            "    if (samples == 0) return 2;",
            '    std::printf(mismatched ? "FAIL\\n" : "PASS\\n");',
            "    return mismatched ? 1 : 0;",
            "}", ""])

    def testbench_data(self) -> tuple[str, str]:
        """Seeded random inputs and the reference interpreter's outputs, one sample per line."""
        feeds = random_inputs(self.module, TESTBENCH_SAMPLES, seed=0)
        outputs = interpret(self.module, feeds)
        names = [a.name or "" for a in self.module.func.args]

        return (testbench_lines([feeds[n] for n in names], TESTBENCH_SAMPLES),
                testbench_lines(outputs, TESTBENCH_SAMPLES))

    # -- build script and README ------------------------------------------------------------------------------
    def build_tcl(self) -> str:
        top = self.top
        return "\n".join([
            f"# build.tcl — Vitis HLS build of {top} (model '{self.design.model}'), generated by sparsecc "
            f"{self.version}.",
            "#   vitis_hls -f build.tcl                                   C simulation + C synthesis",
            "#   vitis_hls -f build.tcl -tclargs csim=1 synth=1 cosim=1 export=1",
            "array set opt {csim 1 synth 1 cosim 0 export 0}",
            "foreach arg $::argv {",
            "    set kv [split $arg =]",
            "    if {[llength $kv] == 2 && [info exists opt([lindex $kv 0])]} {",
            "        set opt([lindex $kv 0]) [lindex $kv 1]",
            "    }",
            "}",
            "",
            f"set part {{{self.options.part}}}",
            f"set clock_mhz {self.options.clock_mhz:g}",
            f"set top {top}",
            "set cflags {-std=c++14 -Ifirmware}",
            "",
            "open_project -reset ${top}_prj",
            "set_top $top",
            "add_files firmware/${top}.cpp -cflags $cflags",
            "add_files -tb ${top}_test.cpp -cflags $cflags",
            "add_files -tb tb_data",
            "open_solution -reset solution1 -flow_target vivado",
            "set_part $part",
            "create_clock -period [expr {1000.0 / $clock_mhz}] -name default",
            "",
            "if {$opt(csim)} {",
            "    csim_design -argv tb_data",
            "}",
            "if {$opt(synth)} {",
            "    csynth_design",
            "}",
            "if {$opt(cosim)} {",
            "    cosim_design -argv tb_data",
            "}",
            "if {$opt(export)} {",
            "    export_design -format ip_catalog",
            "}",
            "exit",
            ""])

    def _numerics(self) -> str:
        """The README's paragraph on inf / NaN (sparsecc README, 'IEEE special values')."""
        opts = self.options
        if not opts.precision.is_float:
            return ("This design is fixed point: it has no inf or NaN. The input port's ap_fixed conversion decides "
                    "what becomes of them (AP_WRAP: 0; AP_SAT: the range's ends; -0.0 and denormals: 0).")
        if opts.fast_math:
            return ("Fast math (`ieee = false` in every layer config): sparse kernels form only the products of "
                    "stored (non-zero) weights, so the dense product's 0 x inf = NaN is not formed (such units stay "
                    "finite where onnxruntime gives NaN); k-WTA keys rank NaN by its bits and max-pool may drop it.")
        return ("Float inputs holding inf or NaN give the reference interpreter's results: the weight-skipping "
                "kernels (ELL, banked CSC, complementary) run an IEEE stage after their MAC stage (one pass over "
                "the layer input counting inf/NaN, in the estimate's scan cycles; only when one is found, the "
                "outputs whose zero weights meet one become NaN, as in the dense sum: "
                "`firmware/sparsecc/ieee.h`); k-WTA ranks NaN above +inf and a window holding NaN max-pools to "
                "NaN. `fast_math` drops this.")

    def readme(self, report: dict) -> str:
        design = self.design
        opts = self.options
        top = self.top
        rows = []
        for layer in design.layers:
            rows.append(f"| {layer.index + 1} | `{layer.name}` | `{layer.function}` | "
                        f"{layer.weight_format or ''} | {layer.output.shape_text()} |")
        sparse = report["total"]["sparse"]
        ratio = report["total"].get("throughput_ratio")
        ratios = [f"- this design: interval {sparse['ii_cycles']:,} cycles ({sparse['throughput']:,.0f} samples/s "
                  f"at {opts.clock_mhz:g} MHz), lanes per layer {sparse['lanes']}"]
        if ratio is not None:
            ratios.append(f"- the dense twin with the same lanes policy: {ratio:.1f}x slower")
        ports = ", ".join(f"`{p.ident}` ({p.buffer.shape_text()})" for p in (*design.inputs, *design.outputs))
        overrides = ", ".join(f"`{name}`: `{p}`" for name, p in opts.layer_precision)
        layer_types = f" (layers: {overrides})" if overrides else ""
        return "\n".join([
            f"# {design.model}: Vitis HLS project",
            "",
            f"Generated by sparsecc {self.version} from the optimised IR (pipeline `{self.pipeline}`). The top "
            f"function `{top}` in `firmware/{top}.cpp` processes one sample and makes one call into the sparsecc "
            "kernel library per layer; each call is preceded by a comment saying what the layer computes.",
            "",
            f"- precision: `{opts.precision}`" + layer_types,
            f"- interface: `{opts.interface}` "
            + ("(AXI4-Stream: one value per beat, NCHW order)" if opts.interface == "axis"
               else "(arrays: ap_memory ports)") + f"; ports {ports}",
            f"- part `{opts.part}`, clock {opts.clock_mhz:g} MHz (build.tcl)",
            "",
            "## Files",
            "",
            "```",
            layout(top),
            "```",
            "",
            "## Layers",
            "",
            "| # | layer | call | weight storage | output |",
            "|---:|---|---|---|---|",
            *rows,
            "",
            "Weight headers hold only the non-zeros and their indices, in the format the `compress-weights` pass "
            "chose (ELL: fixed fan-in rows; CSC: per input column, for the kernels that scatter active inputs). "
            "Fixed-point constants are `sparsecc::word<T, intN_t>`: the raw bits of T, quantised offline to the "
            "nearest value (so that C++ compilers treat the ROMs as static data).",
            "",
            "## Build",
            "",
            "Vitis HLS (csim, csynth, cosim, export):",
            "",
            "```",
            "vitis_hls -f build.tcl -tclargs csim=1 synth=1 cosim=1 export=1",
            "```",
            "",
            "C simulation with g++ only (the ap_types headers ship with the hls4ml Python package, "
            "`hls4ml/templates/vivado/ap_types`):",
            "",
            "```",
            f"g++ -std=c++14 -O2 -ffp-contract=off -Wno-unknown-pragmas -Ifirmware -isystem AP_TYPES_DIR "
            f"{top}_test.cpp firmware/{top}.cpp -o {top}_csim && ./{top}_csim tb_data",
            "```",
            "",
            "The kernels keep whole feature maps in local arrays: large models need a large stack "
            "(`ulimit -s unlimited`). `sparsecc check MODEL --target hls` and `sparsecc.load(PROJECT)` compile "
            "`csim/bridge.cpp` into a shared library and run it on a thread with a large stack.",
            "",
            "The sources are C++14 (the language level Vitis HLS documents). This project was generated and "
            "C-simulated with g++; Vitis itself was not run. The testbench compares bit-exactly with "
            "`tb_output_predictions.dat`, a C-simulation of this design; `tb_output_reference.dat` holds the "
            "reference interpreter's float outputs.",
            "",
            "## Numerics",
            "",
            self._numerics(),
            "",
            "## Estimates",
            "",
            "`report/estimate.md` / `.json`: per layer the lanes written into its config, cycles per stage, interval, "
            "latency and DSP/BRAM18/URAM/LUT of this design (one instance) and of its dense twin:",
            "",
            *ratios,
            "",
        ])


def write_files(root: Path, files: dict[str, bytes]) -> None:
    """Write project files under ``root``."""
    for relative, content in files.items():
        target = root / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)
