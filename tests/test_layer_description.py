"""The layer description (compiler/ir/layer.py): what every target and the interpreter read from a fused op."""

from __future__ import annotations

import numpy as np

from sparsecc.compiler.ir import parse_module
from sparsecc.compiler.ir.core import Operation
from sparsecc.compiler.ir.layer import ConvGeometry, Epilogue, Kwta, LinearGeometry
from sparsecc.compiler.ir.ops.sparse import KWTAStage, MaxPoolStage, ReluStage

WEIGHT = ", ".join(["1.0"] * 54)  # 3x2x3x3 ones
CONV = """module @m {
  func @main(%x: tensor<?x2x6x6xf32>) -> ("y": tensor<?x3x2x2xf32, #kwta<k=2, over=[1]>>) {
    %w = const dense<[WEIGHT]> : tensor<3x2x3x3xf32>
    %boost = const dense<[0.5, 1.0, 2.0]> : tensor<1x3x1x1xf32>
    %y = sparse.conv2d(%x, %w, boost=%boost) {strides=[1, 1], pads=[1, 1, 1, 1], epilogue=[
      #epi.maxpool<kernel=[3, 3], strides=[3, 3]>, #epi.kwta<k=2, over=[1], ties="break">, #epi.relu]}
      : tensor<?x3x2x2xf32, #kwta<k=2, over=[1]>>
    return %y
  }
}
""".replace("WEIGHT", WEIGHT)


def _layer(text: str, name: str) -> Operation:
    return next(op for op in parse_module(text).func.ops if op.name == name)


def test_a_fused_conv_is_decoded_once_with_its_stage_order() -> None:
    op = _layer(CONV, "sparse.conv2d")
    geometry, epilogue = ConvGeometry.of_op(op), Epilogue.of_op(op)
    assert geometry == ConvGeometry((2, 6, 6), (3, 2, 3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 1)
    assert geometry.out_hw == (6, 6) and geometry.static
    assert [type(s) for s in epilogue.stages] == [MaxPoolStage, KWTAStage, ReluStage]
    assert epilogue.relu and epilogue.pool_size == 3 and epilogue.pool_first and epilogue.relu_after_kwta
    kwta = epilogue.kwta
    assert kwta is not None and kwta.k == 2 and kwta.local and not kwta.is_global and kwta.break_ties
    assert kwta.boost is not None and kwta.boost.shape == (1, 3, 1, 1) and not epilogue.boost_dynamic
    assert [type(s) for s in epilogue.before_kwta.stages] == [MaxPoolStage]
    assert [type(s) for s in epilogue.after_kwta.stages] == [ReluStage]


def test_fused_epilogue_puts_relu_first_and_the_pool_on_either_side_of_the_kwta() -> None:
    kwta = Kwta.select(5, 4, boost=np.ones(3, np.float32))
    after = Epilogue.fused(4, relu=True, kwta=kwta, pool=2)
    before = Epilogue.fused(4, kwta=kwta, pool=2, pool_first=True)
    assert [type(s) for s in after.stages] == [ReluStage, KWTAStage, MaxPoolStage] and not after.pool_first
    assert [type(s) for s in before.stages] == [MaxPoolStage, KWTAStage] and before.pool_first
    assert after.kwta == kwta and after.kwta.is_global and after.kwta.ties == "keep"
    assert not after.relu_after_kwta and after.pool_size == 2


def test_only_square_floor_pools_with_kernel_equal_stride_have_a_pool_size() -> None:
    for stage, size in [(MaxPoolStage((2, 2), (2, 2)), 2), (MaxPoolStage((3, 3), (2, 2)), None),
                        (MaxPoolStage((2, 2), (2, 2), (1, 1, 1, 1)), None),
                        (MaxPoolStage((2, 2), (2, 2), ceil_mode=True), None)]:
        assert Epilogue(4, (stage,)).pool_size == size


def test_kwta_scope_follows_the_axes_and_rank() -> None:
    assert Kwta(3, (1,), 2).is_global and not Kwta(3, (1,), 2).local  # a (B, N) row
    assert Kwta(3, (1, 2, 3), 4).is_global and Kwta(3, (1,), 4).local
    other = Kwta(3, (2, 3), 4)
    assert not other.is_global and not other.local  # a target keeps the generic lowering for it
    assert not LinearGeometry(None, 7).static
