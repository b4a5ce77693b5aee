"""The faster T.macro parser lookup (targets/tvmscript.py) gives the same TIR as TVM's own and is installed."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("tvm")

from tvm.script.parser.core.parser import ScriptMacro

from sparsecc.compiler.ir.layer import ConvGeometry, Epilogue, Kwta
from sparsecc.targets import tvmscript
from sparsecc.targets.llvm.kernels.conv_weight_sparse import conv2d_weight_sparse


def _generated() -> str:
    rng = np.random.default_rng(3)
    w = (rng.random((8, 4, 3, 3)) < 0.3) * rng.standard_normal((8, 4, 3, 3)).astype(np.float32)
    epilogue = Epilogue.fused(4, relu=True, kwta=Kwta.select(20, 4), pool=2)
    kernel = conv2d_weight_sparse(ConvGeometry((4, 10, 12), w.shape), w, None, epilogue, "k", isa="avx2")
    return kernel.prim_func.script()


def test_the_frame_walk_is_installed_and_generates_the_same_tir_as_tvms_lookup() -> None:
    assert ScriptMacro._find_parser_def is tvmscript._find_parser_def  # installed by importing the generators
    fast = _generated()
    tvmscript.uninstall()
    try:
        assert ScriptMacro._find_parser_def is tvmscript._ORIGINAL
        slow = _generated()
    finally:
        tvmscript.install()
    assert fast == slow and "T.max" in fast  # the macros (epilogue, k-WTA) were expanded
