"""One description of a fused layer, decoded once from ``sparse.conv2d`` / ``sparse.linear`` / ``sparse.kwta``.

Every target and the interpreter read a layer through these types instead of decoding the op's attributes:

* :class:`ConvGeometry` / :class:`LinearGeometry`: the static shapes and window parameters of the layer;
* :class:`Epilogue`: the fused stages after the layer (ReLU, k-WTA, max-pool) in their order, with the k-WTA
  as one :class:`Kwta` (k, selection axes, tie mode, constant boost factors).

Tie mode is one type everywhere: the IR's string (``"keep"`` / ``"break"``); :attr:`Kwta.break_ties` is the
boolean view of it. A generator that does not cover a layer (e.g. a pooling window that is not kernel = stride)
says so from these descriptions; decoding never refuses a layer the verifier accepted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import cast

import numpy as np

from .core import Operation, Value
from .ops.const import Constant
from .ops.nn import ConvLike, WeightedLayer
from .ops.sparse import FusedLayer, KWinners, KWTAStage, MaxPoolStage, ReluStage
from .shapes import window_output_dim

Stage = ReluStage | KWTAStage | MaxPoolStage


@dataclass(frozen=True)
class ConvGeometry:
    """A 2-D convolution: input (C, H, W) without the batch, weight (O, C/groups, KH, KW), window parameters."""

    in_shape: tuple[int, ...]
    weight_shape: tuple[int, int, int, int]
    strides: tuple[int, int] = (1, 1)
    pads: tuple[int, int, int, int] = (0, 0, 0, 0)
    dilations: tuple[int, int] = (1, 1)
    groups: int = 1

    @classmethod
    def of_op(cls, op: ConvLike) -> ConvGeometry:
        """The geometry of an ``nn.conv2d`` / ``sparse.conv2d`` (input dims may be None when dynamic)."""
        return cls(tuple(op.input.type.shape[1:]), tuple(op.weight.type.shape),  # type: ignore[arg-type]
                   op.strides, op.pads, op.dilations, op.groups)

    @property
    def static(self) -> bool:
        """Whether every input dimension is known."""
        return all(d is not None for d in self.in_shape)

    @property
    def out_channels(self) -> int:
        return int(self.weight_shape[0])

    @property
    def out_hw(self) -> tuple[int, int]:
        """The output's (H, W) before the epilogue."""
        _, h, w = self.in_shape
        _, _, kh, kw = self.weight_shape
        oh = window_output_dim(h, kh, self.strides[0], self.pads[0], self.pads[2], self.dilations[0])
        ow = window_output_dim(w, kw, self.strides[1], self.pads[1], self.pads[3], self.dilations[1])
        assert oh is not None and ow is not None
        return oh, ow


@dataclass(frozen=True)
class LinearGeometry:
    """A linear layer: ``in_features`` (None when dynamic) -> ``out_features``."""

    in_features: int | None
    out_features: int

    @classmethod
    def of_op(cls, op: WeightedLayer) -> LinearGeometry:
        """The geometry of an ``nn.linear`` / ``sparse.linear`` (weight (out, in))."""
        return cls(op.input.type.shape[1], int(op.weight.type.shape[0]))  # type: ignore[arg-type]

    @property
    def static(self) -> bool:
        return self.in_features is not None


Geometry = ConvGeometry | LinearGeometry


def constant_array(value: Value | None) -> np.ndarray | None:
    """The value of an (optional) operand when it is a constant (float32), else None."""
    if value is None or not isinstance(value.owner, Constant):
        return None
    return np.asarray(value.owner.value, dtype=np.float32)


def is_dynamic(value: Value | None) -> bool:
    """Whether an (optional) operand is present and computed (not a constant)."""
    return value is not None and not isinstance(value.owner, Constant)


@dataclass(frozen=True)
class Kwta:
    """k-WTA over the axes ``over`` of a rank-``rank`` (batched) tensor (DESIGN.md §2).

    ``boost``: the constant boost factors as the IR stores them (rank ``rank``, 1 on the batch axis), or None
    (no boost, or a computed one: see :attr:`Epilogue.boost_dynamic`).
    """

    k: int
    over: tuple[int, ...]
    rank: int
    ties: str = "keep"
    boost: np.ndarray | None = field(default=None, compare=False, repr=False)

    @classmethod
    def select(cls, k: int, rank: int, *, local: bool = False, ties: str = "keep",
               boost: np.ndarray | None = None) -> Kwta:
        """A global k-WTA (over every non-batch axis) or a local one (over the channels at each pixel)."""
        return cls(k, (1,) if local else tuple(range(1, rank)), rank, ties, boost)

    @classmethod
    def of_op(cls, op: KWinners) -> Kwta:
        """The k-WTA of a ``sparse.kwta`` op (``boost`` when it is a constant)."""
        return cls(op.k, op.over, op.input.type.rank, op.ties, constant_array(op.boost))

    @property
    def is_global(self) -> bool:
        """Selection over every non-batch axis (nupic's KWinners, KWinners2d local=False)."""
        return self.over == tuple(range(1, self.rank))

    @property
    def local(self) -> bool:
        """Selection over the channels at each pixel of an NCHW tensor (KWinners2d local=True)."""
        return self.over == (1,) and self.rank == 4

    @property
    def break_ties(self) -> bool:
        """Exactly k winners (lower flat index first) instead of keeping every unit tied at the threshold."""
        return self.ties == "break"


@dataclass(frozen=True)
class Epilogue:
    """The stages fused after a layer, in order (each at most once), on a rank-``rank`` result.

    ``boost``: constant boost factors of the k-WTA stage (see :class:`Kwta`); ``boost_dynamic``: the op's boost
    operand is computed, not a constant (targets that need constant factors keep the generic lowering).
    """

    rank: int
    stages: tuple[Stage, ...] = ()
    boost: np.ndarray | None = field(default=None, compare=False, repr=False)
    boost_dynamic: bool = False

    @classmethod
    def of_op(cls, op: Operation) -> Epilogue:
        """The epilogue of a ``sparse.conv2d`` (rank 4) / ``sparse.linear`` (rank 2); empty for other ops."""
        rank = 4 if op.name in ("sparse.conv2d", "nn.conv2d") else 2
        if not isinstance(op, FusedLayer):
            return cls(rank)
        stages = cast("tuple[Stage, ...]", op.epilogue)  # the verifier admits only these stage kinds
        return cls(rank, stages, constant_array(op.boost), is_dynamic(op.boost))

    @classmethod
    def fused(cls, rank: int, *, relu: bool = False, kwta: Kwta | None = None, pool: int | None = None,
              pool_first: bool = False) -> Epilogue:
        """The epilogue the fused kernels apply: ReLU, then k-WTA, with a ``pool`` x ``pool`` max-pool (stride =
        kernel) before (``pool_first``) or after the k-WTA."""
        pool_stage = None if pool is None else MaxPoolStage((pool, pool), (pool, pool))
        kwta_stage = None if kwta is None else KWTAStage(kwta.k, kwta.over, kwta.ties)
        order = [ReluStage() if relu else None]
        order += [pool_stage, kwta_stage] if pool_first else [kwta_stage, pool_stage]
        return cls(rank, tuple(s for s in order if s is not None), None if kwta is None else kwta.boost)

    def _stage(self, kind: type) -> Stage | None:
        return next((s for s in self.stages if isinstance(s, kind)), None)

    def _index(self, kind: type) -> int:
        return next(i for i, s in enumerate(self.stages) if isinstance(s, kind))

    @property
    def relu(self) -> bool:
        return self._stage(ReluStage) is not None

    @property
    def kwta(self) -> Kwta | None:
        """The k-WTA stage with its boost factors, or None."""
        stage = self._stage(KWTAStage)
        if stage is None:
            return None
        assert isinstance(stage, KWTAStage)
        return Kwta(stage.k, tuple(stage.over), self.rank, stage.ties, self.boost)

    @property
    def pool(self) -> MaxPoolStage | None:
        stage = self._stage(MaxPoolStage)
        assert stage is None or isinstance(stage, MaxPoolStage)
        return stage

    @property
    def pool_size(self) -> int | None:
        """The window of a square max-pool with kernel = stride, no padding, floor mode; None otherwise."""
        pool = self.pool
        if pool is None:
            return None
        (kh, kw), (sh, sw) = pool.kernel, pool.strides
        if not (kh == kw == sh == sw) or any(pool.pads) or pool.ceil_mode:
            return None
        return kh

    @property
    def pool_first(self) -> bool:
        """Max-pool runs before the k-WTA (both present)."""
        if self.pool is None or self._stage(KWTAStage) is None:
            return False
        return self._index(MaxPoolStage) < self._index(KWTAStage)

    @property
    def relu_after_kwta(self) -> bool:
        """ReLU runs on the k-WTA's winners (both present)."""
        if not self.relu or self._stage(KWTAStage) is None:
            return False
        return self._index(ReluStage) > self._index(KWTAStage)

    @property
    def before_kwta(self) -> Epilogue:
        """The stages before the k-WTA (all stages when there is none)."""
        if self._stage(KWTAStage) is None:
            return self
        return Epilogue(self.rank, self.stages[:self._index(KWTAStage)])

    @property
    def after_kwta(self) -> Epilogue:
        """The stages after the k-WTA (none when there is no k-WTA)."""
        if self._stage(KWTAStage) is None:
            return Epilogue(self.rank)
        return Epilogue(self.rank, self.stages[self._index(KWTAStage) + 1:])

