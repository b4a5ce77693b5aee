"""Small C++ writing helpers of the HLS project generator: identifiers, constant arrays, config structs."""

from __future__ import annotations

import dataclasses
import re

import numpy as np

from sparsecc.compiler.errors import CompileError

#: C++ keywords and names the generated code uses itself, which an IR name must not become.
RESERVED = frozenset({
    "alignas", "alignof", "and", "and_eq", "asm", "auto", "bitand", "bitor", "bool", "break", "case", "catch",
    "char", "char16_t", "char32_t", "class", "compl", "const", "constexpr", "const_cast", "continue", "decltype",
    "default", "delete", "do", "double", "dynamic_cast", "else", "enum", "explicit", "export", "extern", "false",
    "float", "for", "friend", "goto", "if", "inline", "int", "long", "mutable", "namespace", "new", "noexcept",
    "not", "not_eq", "nullptr", "operator", "or", "or_eq", "private", "protected", "public", "register",
    "reinterpret_cast", "return", "short", "signed", "sizeof", "static", "static_assert", "static_cast", "struct",
    "switch", "template", "this", "thread_local", "throw", "true", "try", "typedef", "typeid", "typename", "union",
    "unsigned", "using", "virtual", "void", "volatile", "wchar_t", "while", "xor", "xor_eq", "main", "sparsecc",
    "hls", "std", "data_t", "accum_t", "weight_t", "input_t", "result_t", "sparsecc_csim",
    # Verilog / VHDL keywords: names that become RTL ports or signals
    "input", "output", "inout", "wire", "reg", "module", "endmodule", "begin", "end", "always", "assign",
    "initial", "integer", "parameter", "localparam", "logic", "signal", "process", "entity", "port", "in", "out",
    "buffer", "generate", "function", "task", "event", "time", "real",
})

#: Values per line of a flat constant array, and the widest 2-D row printed on one line.
VALUES_PER_LINE = 16
MAX_ROW_ON_ONE_LINE = 32


def identifier(name: str, taken: set[str]) -> str:
    """A valid, unused C++ identifier made from an IR name (``cnn1.MaxPool`` -> ``cnn1_MaxPool``); adds it
    to ``taken``."""
    base = re.sub(r"[^0-9A-Za-z_]", "_", name).strip("_") or "value"
    base = re.sub(r"_+", "_", base)
    if base[0].isdigit():
        base = f"v{base}"
    if base in RESERVED or base.startswith("__"):
        base = f"{base}_"
    candidate, n = base, 2
    while candidate in taken:
        candidate = f"{base}_{n}"
        n += 1
    taken.add(candidate)
    return candidate


def index_ctype(limit: int) -> str:
    """The smallest unsigned C integer type holding values in [0, limit]."""
    for bits in (8, 16, 32):
        if limit < 2**bits:
            return f"uint{bits}_t"
    raise CompileError(f"an index array would need values up to {limit}, which exceeds 32 bits")


def format_values(data: np.ndarray) -> list[str]:
    """The C++ literals of an array's values: floats with 9 significant digits (exact for float32),
    integers as decimals."""
    flat = np.ascontiguousarray(data).reshape(-1)
    if flat.dtype.kind == "f":
        if not np.all(np.isfinite(flat)):
            raise CompileError("a constant holds inf or NaN, which a weight ROM cannot hold")
        return [_float_literal(v) for v in np.char.mod("%.9g", flat.astype(np.float32)).tolist()]
    return np.char.mod("%d", flat.astype(np.int64)).tolist()


def _float_literal(text: str) -> str:
    """A float literal (``1.5f``, ``2.0f``, ``1e-05f``) from a %g-formatted value: no double promotion."""
    if "." not in text and "e" not in text:
        text += ".0"
    return text + "f"


@dataclasses.dataclass
class ConstArray:
    """A constant array of a layer: its C name, element type, data (C dims = ``data.shape``) and a comment."""

    name: str
    ctype: str
    data: np.ndarray
    comment: str

    @property
    def dims(self) -> str:
        return "".join(f"[{d}]" for d in self.data.shape)

    @property
    def count(self) -> int:
        return int(self.data.size)

    def declaration(self) -> str:
        """``static const T name[A][B] = {...};`` with its comment, values laid out for reading."""
        values = format_values(self.data)
        lines = [f"// {line}" for line in self.comment.splitlines()]
        lines.append(f"static const {self.ctype} {self.name}{self.dims} = {{")
        if self.data.ndim == 2 and self.data.shape[1] <= MAX_ROW_ON_ONE_LINE:
            width = self.data.shape[1]
            for row in range(self.data.shape[0]):
                lines.append(f"    {{{', '.join(values[row * width:(row + 1) * width])}}},")
        else:
            for start in range(0, len(values), VALUES_PER_LINE):
                lines.append(f"    {', '.join(values[start:start + VALUES_PER_LINE])},")
        lines.append("};")
        return "\n".join(lines)


@dataclasses.dataclass
class ConfigStruct:
    """A layer config: ``struct NAME : BASE { members; nested structs };`` (no base when BASE is empty)
    with a leading comment."""

    name: str
    base: str
    members: list[str] = dataclasses.field(default_factory=list)
    nested: list[ConfigStruct] = dataclasses.field(default_factory=list)
    comment: str = ""

    def constant(self, names: str | list[str], values: int | bool | list[int | bool], ctype: str = "unsigned",
                 note: str = "") -> None:
        """Add ``static constexpr ctype a = 1, b = 2;`` (one line)."""
        names = [names] if isinstance(names, str) else names
        vals = values if isinstance(values, list) else [values]
        parts = ", ".join(f"{n} = {_literal(v)}" for n, v in zip(names, vals, strict=True))
        self.members.append(f"static constexpr {ctype} {parts};" + (f"   // {note}" if note else ""))

    def typedef(self, ctype: str, name: str, note: str = "") -> None:
        self.members.append(f"typedef {ctype} {name};" + (f"   // {note}" if note else ""))

    def text(self, indent: str = "") -> str:
        lines = [f"{indent}// {line}" for line in self.comment.splitlines()]
        lines.append(f"{indent}struct {self.name}{f' : {self.base}' if self.base else ''} {{")
        lines += [f"{indent}    {m}" for m in self.members]
        for nested in self.nested:
            lines.append(nested.text(indent + "    "))
        lines.append(f"{indent}}};")
        return "\n".join(lines)


def _literal(value: int | bool) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(int(value))
