"""The exported library of the cuda target: one shared object with the host code, the Relax VM program and its
constants, and the device code as a fat binary.

TVM packs a library's imported modules into one binary blob, the exported symbol ``__tvm_ffi__library_bin``:
``[u64 size][import tree: u64-array row pointers, u64-array child indices]`` then, per module, ``[str kind]``
and (except for the host library ``_lib``) ``[bytes payload]`` (``str``/``bytes``: u64 length + data). The CUDA
module's payload is ``[str fmt][function table][bytes code]``; ``ffi.Module.load_from_bytes.cuda`` reads it
at load time and hands ``code`` to ``cuModuleLoadData`` (PTX, cubin or fat binary), unless ``fmt`` is
``"cuda"``: then ``code`` is CUDA source that the loading process must compile (TVM 0.27 leaves it so when the
build machine has no CUDA driver). :func:`pack_imports_with_device_code` rewrites that payload to
``fmt="fatbin"`` and the fat binary sparsecc compiled, and links the blob in with an assembler ``.incbin``;
the result loads on any machine with an NVIDIA driver, with no CUDA compiler there.

The format belongs to TVM 0.27 (``apache-tvm==0.27.0.post1``, pinned); every step checks what it reads and
fails with a CompileError naming the mismatch rather than writing a broken library.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

from ...compiler.errors import ArtifactError, CompileError

BLOB_SYMBOL = "__tvm_ffi__library_bin"
DEVICE_FORMAT = "fatbin"


class _Reader:
    def __init__(self, data: bytes, offset: int = 0) -> None:
        self.data = data
        self.offset = offset

    def u64(self) -> int:
        if self.offset + 8 > len(self.data):
            raise ValueError("truncated")
        value = struct.unpack_from("<Q", self.data, self.offset)[0]
        self.offset += 8
        return int(value)

    def raw(self) -> bytes:
        size = self.u64()
        if self.offset + size > len(self.data):
            raise ValueError("truncated")
        out = self.data[self.offset:self.offset + size]
        self.offset += size
        return out


def _w(data: bytes) -> bytes:
    return struct.pack("<Q", len(data)) + data


def blob_modules(blob: bytes) -> list[tuple[str, int, int]]:
    """(kind, payload start, payload end) of every module in a packed-imports blob (``_lib`` has no payload)."""
    reader = _Reader(blob)
    size = reader.u64()
    if size + 8 != len(blob):
        raise ValueError(f"blob size field {size} does not match its length {len(blob) - 8}")
    for _ in range(2):  # import tree: row pointers, child indices
        count = reader.u64()
        reader.offset += 8 * count
    modules = []
    while reader.offset < len(blob):
        kind = reader.raw().decode()
        if kind == "_lib":
            modules.append((kind, reader.offset, reader.offset))
            continue
        length = reader.u64()
        modules.append((kind, reader.offset, reader.offset + length))
        reader.offset += length
    if reader.offset != len(blob):
        raise ValueError("trailing bytes after the last module")
    return modules


def cuda_payload(fmt: str, function_table: bytes, code: bytes) -> bytes:
    return _w(fmt.encode()) + function_table + _w(code)


def split_cuda_payload(payload: bytes, code: bytes) -> tuple[str, bytes]:
    """(fmt, function table) of a CUDA module payload whose code is known to be ``code``."""
    reader = _Reader(payload)
    fmt = reader.raw().decode()
    tail = _w(code)
    if not payload.endswith(tail) or len(payload) - len(tail) < reader.offset:
        raise ValueError("the CUDA module's code is not the expected device code")
    return fmt, payload[reader.offset:len(payload) - len(tail)]


def replace_device_code(blob: bytes, old_code: bytes, new_code: bytes, fmt: str = DEVICE_FORMAT) -> bytes:
    """The blob with its (single) CUDA module's code ``old_code`` replaced by ``new_code`` in format ``fmt``."""
    try:
        cuda = [m for m in blob_modules(blob) if m[0] == "cuda"]
        if len(cuda) != 1:
            raise ValueError(f"expected one CUDA module, found {len(cuda)}")
        _, start, end = cuda[0]
        _, table = split_cuda_payload(blob[start:end], old_code)
    except ValueError as exc:
        raise CompileError(f"cannot embed the CUDA fat binary: unexpected TVM library layout ({exc})") from None
    payload = cuda_payload(fmt, table, new_code)
    body = blob[8:start - 8] + _w(payload) + blob[end:]
    return struct.pack("<Q", len(body)) + body


def assembler_source(blob_file: Path, size: int, symbol: str = BLOB_SYMBOL) -> str:
    """GNU assembler source defining the exported, read-only ``symbol`` with the bytes of ``blob_file``."""
    path = str(blob_file).replace("\\", "\\\\").replace('"', '\\"')
    return "\n".join([
        f'\t.section .rodata.{symbol},"a",@progbits',
        f"\t.globl {symbol}",
        f"\t.type {symbol}, @object",
        "\t.p2align 4",
        f"{symbol}:",
        f'\t.incbin "{path}"',
        f"\t.size {symbol}, {size}",
        '\t.section .note.GNU-stack,"",@progbits',
        "",
    ])


def pack_imports_with_device_code(old_code: bytes, device_code: bytes):
    """An ``fpack_imports`` hook for ``Module.export_library`` that embeds ``device_code`` (see module doc)."""

    def pack(mod: Any, is_system_lib: bool, prefix: str, workspace_dir: str) -> str:
        import tvm_ffi

        if is_system_lib or prefix:
            raise CompileError("the cuda target exports a shared library, not a system library")
        tensor = tvm_ffi.get_global_func("runtime.ModulePackImportsToTensor")(mod)
        blob = replace_device_code(bytes(tensor.numpy().tobytes()), old_code, device_code)
        work = Path(workspace_dir)
        (work / "devc.bin").write_bytes(blob)
        asm = work / "devc.s"
        asm.write_text(assembler_source(work / "devc.bin", len(blob)))
        return str(asm)

    return pack


# -- reading an exported library back (tests, load-time checks) -----------------------------------------------
def _elf_symbol(data: bytes, name: str) -> bytes:
    """The bytes of a defined data symbol of a little-endian ELF64 shared object."""
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        raise ValueError("not a little-endian ELF64 file")
    shoff, = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum = struct.unpack_from("<HH", data, 0x3A)
    sections = [struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize) for i in range(shnum)]
    wanted = name.encode()
    for sh in sections:
        if sh[1] not in (2, 11):  # SHT_SYMTAB, SHT_DYNSYM
            continue
        strtab = sections[sh[6]]
        for off in range(sh[4], sh[4] + sh[5], 24):
            st_name, _info, _other, st_shndx, st_value, st_size = struct.unpack_from("<IBBHQQ", data, off)
            end = data.index(b"\0", strtab[4] + st_name)
            if data[strtab[4] + st_name:end] != wanted or st_shndx == 0:
                continue
            section = sections[st_shndx]
            start = section[4] + (st_value - section[3])
            return data[start:start + st_size]
    raise ValueError(f"symbol {name} not found")


def read_device_code(library: str | Path) -> tuple[str, bytes]:
    """(format, code) of the CUDA module inside an exported sparsecc cuda library."""
    try:
        blob = _elf_symbol(Path(library).read_bytes(), BLOB_SYMBOL)
        modules = [m for m in blob_modules(blob) if m[0] == "cuda"]
        if len(modules) != 1:
            raise ValueError(f"expected one CUDA module, found {len(modules)}")
        reader = _Reader(blob, modules[0][1])
        fmt = reader.raw().decode()
        end = modules[0][2]
        # the code is the last field of the payload; find it by walking back from its end over its length
        for start in range(reader.offset, end - 8):
            (length,) = struct.unpack_from("<Q", blob, start)
            if start + 8 + length == end:
                return fmt, blob[start + 8:end]
        raise ValueError("cannot find the device code in the CUDA module")
    except (OSError, ValueError, IndexError, struct.error) as exc:
        raise ArtifactError(f"{library} is not a sparsecc cuda library: {exc}") from None
