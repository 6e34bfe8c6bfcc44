"""Model size and cost: parameters, multiply-accumulates (MACs) and FLOPs.

Two conventions for "FLOPs" exist in the face-recognition papers, so every number here is
labelled: insightface's IResNet "GFLOPs" (2.6 / 6.3 / 12.1 for r18 / r50 / r100) are
multiply-accumulates, while VarGFaceNet's "1G FLOPs" counts a multiply-add as two FLOPs.
:class:`ComplexityReport` carries both: ``macs`` and ``flops = 2 * macs``.

Counting uses :class:`torch.utils.flop_counter.FlopCounterMode`, which counts convolutions and
matrix products (linear layers, attention) at 2 FLOPs per multiply-add and ignores
element-wise work (BatchNorm, activations, additions, biases). That is the convention of the
published tables: the IResNet and MobileFaceNet counts match the reference values computed from
insightface's code (stored as the reference table ``insightface_model_sizes``) to the printed precision. Models
may live on the ``meta`` device: shapes suffice, so even IResNet-100 is profiled in a blink.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from ..errors import ConfigError
from ..models import create_model

FLOPS_PER_MAC = 2


@dataclass(frozen=True)
class ComplexityReport:
    """Size and cost of one forward pass.

    Attributes:
        params: number of parameters (all of them, trainable or not).
        macs: multiply-accumulates for one forward pass of ``batch`` inputs.
        flops: floating-point operations, counting a multiply-add as two (``2 * macs``).
        input_shape: the input shape the cost was measured at, ``(batch, channels, h, w)``.
    """

    params: int
    macs: int
    flops: int
    input_shape: tuple[int, ...]

    @property
    def params_m(self) -> float:
        """Parameters in millions."""
        return self.params / 1e6

    @property
    def gmacs(self) -> float:
        """Multiply-accumulates in billions."""
        return self.macs / 1e9

    @property
    def gflops(self) -> float:
        """FLOPs (2 per multiply-add) in billions."""
        return self.flops / 1e9

    def to_dict(self) -> dict[str, Any]:
        """Plain dict with the raw counts and the scaled values, for tables."""
        return {
            **asdict(self),
            "params_m": self.params_m,
            "gmacs": self.gmacs,
            "gflops": self.gflops,
        }

    def __str__(self) -> str:
        return (
            f"{self.params_m:.2f}M params, {self.gmacs:.3f} GMACs (multiply-adds), "
            f"{self.gflops:.3f} GFLOPs (2 x MACs) at input {'x'.join(map(str, self.input_shape))}"
        )


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters of ``model`` (shared tensors counted once).

    With ``trainable_only`` only those with ``requires_grad`` count, which leaves out e.g. the
    fixed BatchNorm1d weight of IResNet's embedding layer.
    """
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def count_flops(
    model: nn.Module, input_size: int | tuple[int, int], channels: int = 3, batch: int = 1
) -> ComplexityReport:
    """Cost of one forward pass of ``model`` on a ``(batch, channels, H, W)`` input.

    The input is created on the device of the model's first parameter (the ``meta`` device
    works), the model runs in eval mode without gradients, and its previous mode is restored.

    Args:
        model: any module taking one image tensor.
        input_size: ``H`` (square) or ``(H, W)``.
        channels: input channels.
        batch: batch size; costs scale linearly with it.
    """
    size = (input_size, input_size) if isinstance(input_size, int) else tuple(input_size)
    if len(size) != 2:
        raise ConfigError(f"count_flops: input_size must be H or (H, W), got {input_size!r}")
    height, width = size
    for value, name in ((height, "input height"), (width, "input width"),
                        (channels, "channels"), (batch, "batch")):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"count_flops: {name} must be a positive integer, got {value!r}")
    first = next(model.parameters(), None)
    device = first.device if first is not None else torch.device("cpu")
    x = torch.zeros(batch, channels, height, width, device=device)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(x)
    finally:
        model.train(was_training)
    flops = int(counter.get_total_flops())
    return ComplexityReport(
        params=count_parameters(model),
        macs=flops // FLOPS_PER_MAC,
        flops=flops,
        input_shape=tuple(x.shape),
    )


def profile_model(name: str, input_size: int = 112, **options: Any) -> ComplexityReport:
    """Parameters, MACs and FLOPs of the registered model ``name`` at ``input_size``.

    The model is built on the ``meta`` device (no memory, no arithmetic), so profiling
    IResNet-100 takes well under a second. ``options`` go to
    :func:`fkdlib.models.create_model` (``width``, ``embedding_size``, ``in_channels``, ...).

    Example:
        >>> profile_model("iresnet50").gmacs  # doctest: +SKIP
        6.31
    """
    with torch.device("meta"):
        model = create_model(name, input_size=input_size, **options)
    channels = getattr(model, "in_channels", 3)
    return count_flops(model, input_size, channels=channels)
