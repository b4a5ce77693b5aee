"""PyTorch layers with nupic.torch's interface and inference semantics.

These are clean-room re-implementations of the four nupic.torch building blocks that the zoo needs. They
follow nupic.torch's attribute names, buffer names/shapes and eval semantics, so that the sparsecc torch
export helper (:mod:`sparsecc.frontends.torch`) treats them exactly like nupic.torch's own modules and
nupic.torch state dicts load into them.

k-WTA (DESIGN.md §2), at inference::

    boosted   = x * exp(-boost_strength * duty_cycle)     # skipped when boost_strength == 0
    threshold = k-th largest boosted value over the selection group   (torch.kthvalue(n - k + 1))
    out       = where(boosted < threshold, 0, x)          # ties at the threshold survive

``break_ties=True`` keeps exactly k winners (TopK indices scattered into an "off" mask); ``relu=True``
additionally switches off every unit whose boosted value is <= 0. Winners keep their original ``x`` values.
Like nupic.torch, the forward passes use ``torch.kthvalue``, which the ONNX exporter cannot export; the export
helper swaps in an equivalent TopK formulation for the duration of an export.
"""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = [
    "KWinners",
    "KWinners2d",
    "KWinnersBase",
    "SparseWeights",
    "SparseWeights2d",
    "SparseWeightsBase",
    "kwinners",
    "kwinners2d",
    "rezero_weights",
    "update_boost_strength",
]


def _boost(x: torch.Tensor, duty_cycle: torch.Tensor, boost_strength: float) -> torch.Tensor:
    """Return the boosted activity used to choose winners (never propagated)."""
    if boost_strength > 0.0:
        return x.detach() * torch.exp(-boost_strength * duty_cycle)
    return x.detach()


def _off_mask(boosted: torch.Tensor, k: int, break_ties: bool, relu: bool) -> torch.Tensor:
    """Boolean mask of the losers when selecting the top ``k`` of ``boosted`` along dim 1."""
    if break_ties:
        indices = boosted.topk(k, dim=1, sorted=False).indices
        off = torch.ones_like(boosted, dtype=torch.bool)
        off.scatter_(1, indices, False)
    else:
        threshold = boosted.kthvalue(boosted.shape[1] - k + 1, dim=1, keepdim=True).values
        off = boosted < threshold
    if relu:
        off = off | (boosted <= 0)
    return off


def kwinners(
    x: torch.Tensor,
    duty_cycle: torch.Tensor,
    k: int,
    boost_strength: float,
    break_ties: bool = False,
    relu: bool = False,
    inplace: bool = False,
) -> torch.Tensor:
    """k-winners-take-all over dim 1 of ``x`` (B, n, ...); see the module docstring for the semantics."""
    if k == 0:
        return torch.zeros_like(x)
    boosted = _boost(x, duty_cycle, boost_strength)
    off = _off_mask(boosted, k, break_ties, relu)
    return x.masked_fill_(off, 0) if inplace else x.masked_fill(off, 0)


def kwinners2d(
    x: torch.Tensor,
    duty_cycle: torch.Tensor,
    k: int,
    boost_strength: float,
    local: bool = True,
    break_ties: bool = False,
    relu: bool = False,
    inplace: bool = False,
) -> torch.Tensor:
    """k-WTA for (B, C, H, W): over channels at each (h, w) (``local``) or over all of C·H·W per sample."""
    if k == 0:
        return torch.zeros_like(x)
    boosted = _boost(x, duty_cycle, boost_strength)
    if local:
        off = _off_mask(boosted, k, break_ties, relu)
    else:
        off = _off_mask(boosted.reshape(x.shape[0], -1), k, break_ties, relu).view(x.shape)
    return x.masked_fill_(off, 0) if inplace else x.masked_fill(off, 0)


def update_boost_strength(module: nn.Module) -> None:
    """Decay the boost strength of a k-WTA module; use as ``model.apply(update_boost_strength)``."""
    if isinstance(module, KWinnersBase):
        module.update_boost_strength()


def rezero_weights(module: nn.Module) -> None:
    """Re-apply a sparse-weights module's mask; use as ``model.apply(rezero_weights)``."""
    if isinstance(module, SparseWeightsBase):
        module.rezero_weights()


class KWinnersBase(nn.Module):
    """State and bookkeeping shared by :class:`KWinners` and :class:`KWinners2d` (nupic.torch interface).

    ``boost_strength`` is a float32 buffer (so it is saved in the state dict); a Python copy is kept for the
    forward pass, as nupic.torch does.
    """

    duty_cycle: torch.Tensor
    boost_strength: torch.Tensor

    def __init__(
        self,
        percent_on: float,
        k_inference_factor: float,
        boost_strength: float,
        boost_strength_factor: float,
        duty_cycle_period: int,
        break_ties: bool,
        relu: bool,
        inplace: bool,
    ) -> None:
        super().__init__()
        if not 0.0 < percent_on < 1.0:
            raise ValueError(f"percent_on must be in (0, 1), got {percent_on}")
        if not 0.0 < percent_on * k_inference_factor < 1.0:
            raise ValueError(
                f"percent_on * k_inference_factor must be in (0, 1), got {percent_on * k_inference_factor}"
            )
        if boost_strength < 0.0:
            raise ValueError(f"boost_strength must be >= 0, got {boost_strength}")
        if not 0.0 <= boost_strength_factor <= 1.0:
            raise ValueError(f"boost_strength_factor must be in [0, 1], got {boost_strength_factor}")
        self.percent_on = percent_on
        self.percent_on_inference = percent_on * k_inference_factor
        self.k_inference_factor = k_inference_factor
        self.boost_strength_factor = boost_strength_factor
        self.duty_cycle_period = duty_cycle_period
        self.break_ties = break_ties
        self.relu = relu
        self.inplace = inplace
        self.learning_iterations = 0
        self.n = 0
        self.k = 0
        self.k_inference = 0
        self.register_buffer("boost_strength", torch.tensor(boost_strength, dtype=torch.float))
        self._cached_boost_strength = float(boost_strength)

    def _load_from_state_dict(
        self,
        state_dict: dict[str, torch.Tensor],
        prefix: str,
        local_metadata: dict[str, object],
        strict: bool,
        missing_keys: list[str],
        unexpected_keys: list[str],
        error_msgs: list[str],
    ) -> None:
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )
        self._cached_boost_strength = float(self.boost_strength.item())

    def update_boost_strength(self) -> None:
        """Multiply the boost strength by ``boost_strength_factor`` (nupic does this once per epoch)."""
        self._cached_boost_strength *= self.boost_strength_factor
        self.boost_strength.fill_(self._cached_boost_strength)

    def _update_duty_cycle(self, active: torch.Tensor, batch_size: int) -> None:
        """Running average ``duty = (duty * (period - batch) + active) / period`` (nupic's formula)."""
        self.learning_iterations += batch_size
        period = min(self.duty_cycle_period, self.learning_iterations)
        self.duty_cycle.mul_(period - batch_size)
        self.duty_cycle.add_(active.reshape(self.duty_cycle.shape))
        self.duty_cycle.div_(period)

    def extra_repr(self) -> str:
        """Summary shown by ``print(module)``."""
        return (
            f"n={self.n}, k={self.k}, k_inference={self.k_inference}, percent_on={self.percent_on}, "
            f"boost_strength={self._cached_boost_strength}, "
            f"boost_strength_factor={self.boost_strength_factor}, "
            f"k_inference_factor={self.k_inference_factor}, duty_cycle_period={self.duty_cycle_period}, "
            f"break_ties={self.break_ties}, relu={self.relu}"
        )


class KWinners(KWinnersBase):
    """k-winners-take-all over dim 1 of a (B, n) input, with boosting (nupic.torch ``KWinners``).

    ``k = round(n * percent_on)`` in training and ``k_inference = int(k * k_inference_factor)`` in eval.
    Training updates the per-unit duty cycles (buffer ``duty_cycle`` of shape (n,)).
    """

    def __init__(
        self,
        n: int,
        percent_on: float,
        k_inference_factor: float = 1.5,
        boost_strength: float = 1.0,
        boost_strength_factor: float = 0.9,
        duty_cycle_period: int = 1000,
        break_ties: bool = False,
        relu: bool = False,
        inplace: bool = False,
    ) -> None:
        super().__init__(
            percent_on, k_inference_factor, boost_strength, boost_strength_factor, duty_cycle_period,
            break_ties, relu, inplace,
        )
        self.n = n
        self.k = round(n * percent_on)
        self.k_inference = int(self.k * k_inference_factor)
        self.register_buffer("duty_cycle", torch.zeros(n))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Keep the k (train) or k_inference (eval) largest boosted units of each row, zero the rest."""
        k = self.k if self.training else self.k_inference
        out = kwinners(x, self.duty_cycle, k, self._cached_boost_strength, self.break_ties, self.relu,
                       self.inplace)
        if self.training:
            with torch.no_grad():
                self._update_duty_cycle(out.gt(0).sum(dim=0, dtype=torch.float), out.shape[0])
        return out


class KWinners2d(KWinnersBase):
    """k-winners-take-all for (B, C, H, W) inputs, with per-channel boosting (nupic.torch ``KWinners2d``).

    ``local=False`` selects over all C·H·W units of a sample; ``n``, ``k`` and ``k_inference`` are then set
    from the first input's shape, as in nupic.torch (``k = round(n * percent_on)``,
    ``k_inference = round(n * percent_on * k_inference_factor)``). ``local=True`` selects over the channels at
    each (h, w) with ``k = round(channels * percent_on)`` set at construction. The duty cycle buffer has
    shape (1, C, 1, 1) and holds each channel's average fraction of positive outputs per location.
    """

    def __init__(
        self,
        channels: int,
        percent_on: float = 0.1,
        k_inference_factor: float = 1.5,
        boost_strength: float = 1.0,
        boost_strength_factor: float = 0.9,
        duty_cycle_period: int = 1000,
        local: bool = False,
        break_ties: bool = False,
        relu: bool = False,
        inplace: bool = False,
    ) -> None:
        super().__init__(
            percent_on, k_inference_factor, boost_strength, boost_strength_factor, duty_cycle_period,
            break_ties, relu, inplace,
        )
        self.channels = channels
        self.local = local
        if local:
            self.k = round(channels * percent_on)
            self.k_inference = round(channels * self.percent_on_inference)
        self.register_buffer("duty_cycle", torch.zeros((1, channels, 1, 1)))

    def _set_size(self, shape: torch.Size) -> None:
        """Set ``n`` (and, for global selection, ``k``/``k_inference``) from an input shape (B, C, H, W)."""
        if len(shape) != 4 or shape[1] != self.channels:
            raise ValueError(f"KWinners2d({self.channels}) expects (B, {self.channels}, H, W), "
                             f"got {tuple(shape)}")
        self.n = int(math.prod(shape[1:]))
        if not self.local:
            self.k = round(self.n * self.percent_on)
            self.k_inference = round(self.n * self.percent_on_inference)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Keep the k (train) or k_inference (eval) largest boosted units of each group, zero the rest."""
        if self.n == 0:
            self._set_size(x.shape)
        k = self.k if self.training else self.k_inference
        out = kwinners2d(x, self.duty_cycle, k, self._cached_boost_strength, self.local, self.break_ties,
                         self.relu, self.inplace)
        if self.training:
            with torch.no_grad():
                positions = float(out.shape[2] * out.shape[3])
                active = out.gt(0).sum(dim=(0, 2, 3), dtype=torch.float) / positions
                self._update_duty_cycle(active, out.shape[0])
        return out

    def extra_repr(self) -> str:
        """Summary shown by ``print(module)``."""
        return f"channels={self.channels}, local={self.local}, {super().extra_repr()}"


class SparseWeightsBase(nn.Module):
    """Wraps a Linear/Conv2d and keeps a fixed-fan-in random subset of its weights, zeroing the rest.

    Every output unit (Linear row, Conv2d filter) keeps exactly ``round((1 - sparsity) * fan_in)`` non-zero
    weights, chosen uniformly at random by a seeded generator (``seed``; when ``None`` a seed is drawn from
    torch's global RNG, so ``torch.manual_seed`` makes construction deterministic). The mask is the buffer
    ``zero_mask`` (float16, 1 where the weight is forced to zero, as in nupic.torch). The weight is multiplied
    by the mask at construction, and again before every training-mode forward (so the weights an optimizer
    step touched are re-zeroed before use); :meth:`rezero_weights` does it on demand. Forward is the wrapped
    module's.
    """

    zero_mask: torch.Tensor

    def __init__(self, module: nn.Linear | nn.Conv2d, sparsity: float, seed: int | None = None) -> None:
        super().__init__()
        if not 0.0 < sparsity < 1.0:
            raise ValueError(f"sparsity must be in (0, 1), got {sparsity}")
        self.module = module
        self.sparsity = sparsity
        weight = module.weight
        out_units = weight.shape[0]
        fan_in = int(math.prod(weight.shape[1:]))
        self.nonzeros_per_unit = round((1.0 - sparsity) * fan_in)
        if seed is None:
            seed = int(torch.randint(0, 2**62, (1,)).item())
        generator = torch.Generator().manual_seed(seed)
        keys = torch.rand(out_units, fan_in, generator=generator)
        keep = keys.topk(self.nonzeros_per_unit, dim=1).indices  # a uniformly random subset per unit
        zero_mask = torch.ones(out_units, fan_in, dtype=torch.bool)
        zero_mask.scatter_(1, keep, False)
        self.register_buffer("zero_mask", zero_mask.view(weight.shape).half())
        self.rezero_weights()

    @property
    def weight(self) -> torch.Tensor:
        """The wrapped module's weight (with its zeros)."""
        return self.module.weight

    @property
    def bias(self) -> torch.Tensor | None:
        """The wrapped module's bias."""
        return self.module.bias

    def rezero_weights(self) -> None:
        """Set the masked-out weights back to zero."""
        with torch.no_grad():
            self.module.weight.masked_fill_(self.zero_mask.bool(), 0.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The wrapped module's forward (re-zeroing first in training mode)."""
        if self.training:
            self.rezero_weights()
        return self.module(x)

    def extra_repr(self) -> str:
        """Summary shown by ``print(module)``."""
        return f"sparsity={self.sparsity}, nonzeros_per_unit={self.nonzeros_per_unit}"


class SparseWeights(SparseWeightsBase):
    """Fixed fan-in weight sparsity for ``nn.Linear``: each row keeps ``round((1-sparsity)*in)`` weights."""

    def __init__(self, module: nn.Linear, sparsity: float, seed: int | None = None) -> None:
        if module.weight.dim() != 2:
            raise ValueError("SparseWeights wraps a Linear-like module with a 2-D weight")
        super().__init__(module, sparsity, seed)


class SparseWeights2d(SparseWeightsBase):
    """Fixed fan-in weight sparsity for ``nn.Conv2d``: each filter keeps ``round((1-sparsity)*in*kh*kw)``."""

    def __init__(self, module: nn.Conv2d, sparsity: float, seed: int | None = None) -> None:
        if module.weight.dim() != 4:
            raise ValueError("SparseWeights2d wraps a Conv2d-like module with a 4-D weight")
        super().__init__(module, sparsity, seed)
