"""Classification heads for face recognition: Softmax and the angular-margin family.

Every margin head follows ArcFace (Deng et al., CVPR 2019, Sec. 2 and Eq. 4): embeddings x and
class weights W_j are L2-normalised, ``cos θ_j = <x/‖x‖, W_j/‖W_j‖>`` is clamped to [-1, 1], the
non-target logits are ``s · cos θ_j`` and the target logit is ``s · f(cos θ_y)`` where ``f`` is
the one hook a subclass overrides (:meth:`MarginHead.target_logit`). The combined margin of the
ArcFace paper, ``f = cos(m1·θ + m2) − m3``, contains the others:

=============  ==============  =========================================
head           (m1, m2, m3)    target logit / s
=============  ==============  =========================================
NormSoftmax    (1, 0, 0)       cos θ
SphereFace     (m, 0, 0)       ψ(m·θ), monotonic beyond θ = π/m
CosFace        (1, 0, m)       cos θ − m
ArcFace        (1, m, 0)       cos(θ + m), threshold rule beyond π − m
Combined       (m1, m2, m3)    ψ(m1·θ + m2) − m3
=============  ==============  =========================================

``ψ`` is SphereFace's piecewise extension (A-Softmax, Liu et al., CVPR 2017),
``ψ(φ) = (−1)^k cos φ − 2k`` for ``φ ∈ [kπ, (k+1)π]``. Written with ``k = ⌊φ/π⌋`` it is
defined for every real ``φ`` and every (also non-integer) multiplier, continuous (both pieces
meet at ``±1 − 2k``) and strictly decreasing, so it is our extension for SphereFace with a
non-integer ``m`` and for the combined margin when ``m1·θ + m2 > π``. The original
SphereFace's annealed blend with the plain softmax (its λ) and feature-norm scaling are not
used: like the insightface combined-margin table we run SphereFace on normalised features
with the same scale ``s`` as the others.

The weight matrix has the ``nn.Linear`` layout ``(num_classes, embedding_size)`` and is
initialised from N(0, 0.01), as in insightface.
"""

from __future__ import annotations

import abc
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ConfigError
from ..registry import Registry


@dataclass(frozen=True)
class HeadStats:
    """Target-angle statistics of the last batch a head saw with labels and ``record_stats`` on.

    Attributes:
        theta_deg: angle θ_y between each embedding and its class weight, in degrees
            (detached, on the CPU, shape ``(batch,)``).
        mean_deg: mean of ``theta_deg``.
        std_deg: population standard deviation (ddof = 0) of ``theta_deg``.
    """

    theta_deg: Tensor
    mean_deg: float
    std_deg: float


def safe_angle(cos_theta: Tensor) -> Tensor:
    """θ = arccos(cos θ) in radians, with a finite gradient at cos θ = ±1.

    Computed as ``atan2(√max(1 − cos², ε), cos)`` with ε the dtype's smallest normal number:
    equal to ``acos`` to float precision, whereas the gradient of ``acos`` (−1/√(1 − x²)) is
    infinite at x = ±1. The floor only acts where |cos θ| = 1 exactly, and there the clamp
    passes no gradient through the square root.
    """
    floor = torch.finfo(cos_theta.dtype).tiny
    sin_theta = torch.sqrt(torch.clamp(1.0 - cos_theta * cos_theta, min=floor))
    return torch.atan2(sin_theta, cos_theta)


def sphereface_psi(phi: Tensor) -> Tensor:
    """SphereFace's monotonic extension ψ(φ) = (−1)^k cos φ − 2k with k = ⌊φ/π⌋.

    Equal to ``cos φ`` on [0, π]; beyond it the pieces continue downwards so the target logit
    keeps decreasing with the angle (SphereFace, Liu et al. CVPR 2017, generalised to
    any real ``φ``).
    """
    k = torch.floor(phi.detach() / math.pi)
    sign = 1.0 - 2.0 * torch.remainder(k, 2.0)
    return sign * torch.cos(phi) - 2.0 * k


def _check_finite(name: str, value: float) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
        raise ConfigError(f"{name} must be a finite number, got {value!r}")
    return float(value)


def _check_sizes(embedding_size: int, num_classes: int) -> None:
    for name, value in (("embedding_size", embedding_size), ("num_classes", num_classes)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ConfigError(f"{name} must be a positive integer, got {value!r}")


def _check_batch(embeddings: Tensor, labels: Tensor | None, embedding_size: int,
                 num_classes: int) -> None:
    if embeddings.dim() != 2 or embeddings.shape[1] != embedding_size:
        raise ValueError(
            f"embeddings must have shape (batch, {embedding_size}), got {tuple(embeddings.shape)}"
        )
    if labels is None:
        return
    if labels.dim() != 1 or labels.shape[0] != embeddings.shape[0]:
        raise ValueError(
            f"labels must have shape ({embeddings.shape[0]},) to match the embeddings, "
            f"got {tuple(labels.shape)}"
        )
    if labels.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8, torch.int8):
        raise ValueError(f"labels must be an integer tensor of class ids, got dtype {labels.dtype}")
    # reading the range back from an accelerator would make the host wait at every step; there
    # an out-of-range label fails in the gather/scatter kernels instead
    if labels.device.type == "cpu" and labels.numel() and (
            int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise ValueError(
            f"labels must lie in [0, {num_classes - 1}] for a head with {num_classes} classes, "
            f"got values in [{int(labels.min())}, {int(labels.max())}]"
        )


def _angle_stats(cos_y: Tensor) -> HeadStats:
    theta = torch.rad2deg(safe_angle(cos_y.detach().cpu().double()))
    if theta.numel() == 0:
        return HeadStats(theta, float("nan"), float("nan"))
    return HeadStats(theta, float(theta.mean()), float(theta.std(correction=0)))


class MarginHead(nn.Module, abc.ABC):
    """Base of the normalised-softmax heads: ``logits = s · cos θ`` with a target-logit hook.

    Args:
        embedding_size: dimension of the embeddings.
        num_classes: number of training identities.
        s: the scale (radius of the hypersphere) applied to every logit; ArcFace uses 64.

    ``forward(embeddings, labels)`` returns ``(batch, num_classes)`` logits for a
    cross-entropy loss. With ``labels=None`` it returns ``s · cos θ`` (no margin), the
    inference-time logits. With ``head.record_stats = True`` each forward with labels stores
    :class:`HeadStats` of the target angles in ``last_stats``; it is off by default because
    copying the angles to the host waits for the device at every training step.
    """

    def __init__(self, embedding_size: int, num_classes: int, s: float = 64.0) -> None:
        super().__init__()
        _check_sizes(embedding_size, num_classes)
        self.s = _check_finite("s", s)
        if self.s <= 0:
            raise ConfigError(f"the scale s must be positive, got {s!r}")
        self.embedding_size = embedding_size
        self.num_classes = num_classes
        self.weight = nn.Parameter(torch.empty(num_classes, embedding_size))
        nn.init.normal_(self.weight, mean=0.0, std=0.01)
        self.record_stats = False
        self.last_stats: HeadStats | None = None

    @abc.abstractmethod
    def target_logit(self, cos_theta_y: Tensor) -> Tensor:
        """The target logit divided by ``s``, as a function of ``cos θ_y`` (elementwise)."""

    def normalized_weight(self) -> Tensor:
        """Class weights scaled to unit norm, shape ``(num_classes, embedding_size)``.

        SRRL (thesis ch. 4) uses this matrix as the teacher's frozen classifier W_T.
        """
        return F.normalize(self.weight, dim=1)

    def cosine(self, embeddings: Tensor) -> Tensor:
        """``cos θ_j`` between each embedding and each class weight, clamped to [-1, 1]."""
        cos = F.linear(F.normalize(embeddings, dim=1), self.normalized_weight())
        return cos.clamp(-1.0, 1.0)

    def forward(self, embeddings: Tensor, labels: Tensor | None = None) -> Tensor:
        """Logits ``(batch, num_classes)``; the margin is applied only to the label's column."""
        _check_batch(embeddings, labels, self.embedding_size, self.num_classes)
        cos = self.cosine(embeddings)
        if labels is None:
            return self.s * cos
        index = labels.long().unsqueeze(1)
        cos_y = cos.gather(1, index).squeeze(1)
        if self.record_stats:
            self.last_stats = _angle_stats(cos_y)
        # under autocast the margin arithmetic may come back in a wider dtype than the cosines
        target = self.target_logit(cos_y).to(cos.dtype)
        return self.s * cos.scatter(1, index, target.unsqueeze(1))

    def extra_repr(self) -> str:
        return f"embedding_size={self.embedding_size}, num_classes={self.num_classes}, s={self.s}"


class NormSoftmax(MarginHead):
    """Normalised softmax (NormFace; ArcFace's (1, 0, 0)): target logit ``s · cos θ_y``."""

    def target_logit(self, cos_theta_y: Tensor) -> Tensor:
        return cos_theta_y


class SphereFace(MarginHead):
    """Multiplicative angular margin (SphereFace / A-Softmax; ArcFace's (m, 0, 0)).

    Target logit ``s · ψ(m·θ_y)`` with the monotonic piecewise ψ of :func:`sphereface_psi`,
    which also serves non-integer ``m`` (insightface's combined-margin table uses 1.5).
    """

    def __init__(self, embedding_size: int, num_classes: int, s: float = 64.0,
                 m: float = 1.5) -> None:
        super().__init__(embedding_size, num_classes, s)
        self.m = _check_finite("m", m)
        if self.m <= 0:
            raise ConfigError(f"SphereFace's multiplicative margin m must be positive, got {m!r}")

    def target_logit(self, cos_theta_y: Tensor) -> Tensor:
        return sphereface_psi(self.m * safe_angle(cos_theta_y))

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, m={self.m}"


class CosFace(MarginHead):
    """Additive cosine margin (CosFace / AM-Softmax; ArcFace's (1, 0, m)): ``s · (cos θ_y − m)``."""

    def __init__(self, embedding_size: int, num_classes: int, s: float = 64.0,
                 m: float = 0.35) -> None:
        super().__init__(embedding_size, num_classes, s)
        self.m = _check_finite("m", m)

    def target_logit(self, cos_theta_y: Tensor) -> Tensor:
        return cos_theta_y - self.m

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, m={self.m}"


class ArcFace(MarginHead):
    """Additive angular margin (ArcFace, Deng et al. CVPR 2019, Eq. 3): ``s · cos(θ_y + m)``.

    Beyond ``θ_y + m > π``, i.e. ``cos θ_y ≤ cos(π − m)``, ``cos(θ + m)`` would rise again;
    the classic insightface rule replaces it there by ``cos θ_y − m·sin m`` so the target
    logit keeps decreasing in θ (it jumps down from −1 to ``−cos m − m·sin m`` at π − m).
    With ``easy_margin=True`` the margin is applied only where ``cos θ_y > 0`` and the target
    logit is ``cos θ_y`` elsewhere; that variant is not monotonic (it jumps up from
    ``−sin m`` to 0 at θ = 90°).
    """

    def __init__(self, embedding_size: int, num_classes: int, s: float = 64.0,
                 m: float = 0.5, easy_margin: bool = False) -> None:
        super().__init__(embedding_size, num_classes, s)
        self.m = _check_finite("m", m)
        if not 0.0 <= self.m < math.pi:
            raise ConfigError(f"ArcFace's angular margin m must lie in [0, π), got {m!r}")
        self.easy_margin = bool(easy_margin)

    def target_logit(self, cos_theta_y: Tensor) -> Tensor:
        margin_logit = torch.cos(safe_angle(cos_theta_y) + self.m)
        if self.easy_margin:
            return torch.where(cos_theta_y > 0, margin_logit, cos_theta_y)
        threshold = math.cos(math.pi - self.m)
        fallback = cos_theta_y - self.m * math.sin(self.m)
        return torch.where(cos_theta_y > threshold, margin_logit, fallback)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, m={self.m}, easy_margin={self.easy_margin}"


class CombinedMargin(MarginHead):
    """The combined margin of ArcFace (Eq. 4): ``s · (cos(m1·θ_y + m2) − m3)``.

    Defaults are the paper's CM (1, 0.3, 0.2). Where ``m1·θ_y + m2 > π`` the cosine is
    replaced by SphereFace's ψ (:func:`sphereface_psi`), our choice: it is continuous and
    strictly decreasing for every ``m1 > 0``, and reduces exactly to our SphereFace for
    (m, 0, 0) and to CosFace for (1, 0, m). For (1, m, 0) it differs from :class:`ArcFace`
    only beyond ``θ > π − m``, where ArcFace uses its classic linear fallback.
    """

    def __init__(self, embedding_size: int, num_classes: int, s: float = 64.0,
                 m1: float = 1.0, m2: float = 0.3, m3: float = 0.2) -> None:
        super().__init__(embedding_size, num_classes, s)
        self.m1 = _check_finite("m1", m1)
        self.m2 = _check_finite("m2", m2)
        self.m3 = _check_finite("m3", m3)
        if self.m1 <= 0:
            raise ConfigError(f"the multiplicative margin m1 must be positive, got {m1!r}")

    def target_logit(self, cos_theta_y: Tensor) -> Tensor:
        return sphereface_psi(self.m1 * safe_angle(cos_theta_y) + self.m2) - self.m3

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, m1={self.m1}, m2={self.m2}, m3={self.m3}"


class SoftmaxHead(nn.Module):
    """Plain softmax classifier: a linear layer with bias, no normalisation and no scale.

    Same call signature as the margin heads; ``labels`` do not change the logits but, when
    given and ``record_stats`` is on, the target angles between embeddings and class weights
    are still recorded in ``last_stats`` so training curves of θ_y can be compared across
    losses (at the price of a second, normalised, full-class product per batch).
    """

    s = None

    def __init__(self, embedding_size: int, num_classes: int) -> None:
        super().__init__()
        _check_sizes(embedding_size, num_classes)
        self.embedding_size = embedding_size
        self.num_classes = num_classes
        self.linear = nn.Linear(embedding_size, num_classes, bias=True)
        self.record_stats = False
        self.last_stats: HeadStats | None = None

    @property
    def weight(self) -> Tensor:
        """The class weight matrix ``(num_classes, embedding_size)``."""
        return self.linear.weight

    def target_logit(self, cos_theta_y: Tensor) -> Tensor:
        """``cos θ_y``: the softmax target logit per unit norms and zero bias (for the
        analytic curve of :func:`target_logit_curve`; :meth:`forward` uses the raw logits)."""
        return cos_theta_y

    def normalized_weight(self) -> Tensor:
        """Class weights scaled to unit norm, shape ``(num_classes, embedding_size)``."""
        return F.normalize(self.linear.weight, dim=1)

    def forward(self, embeddings: Tensor, labels: Tensor | None = None) -> Tensor:
        """Logits ``W x + b`` of shape ``(batch, num_classes)``."""
        _check_batch(embeddings, labels, self.embedding_size, self.num_classes)
        if labels is not None and self.record_stats:
            with torch.no_grad():
                cos = F.linear(F.normalize(embeddings, dim=1), self.normalized_weight())
                cos_y = cos.clamp(-1.0, 1.0).gather(1, labels.long().unsqueeze(1)).squeeze(1)
            self.last_stats = _angle_stats(cos_y)
        return self.linear(embeddings)


HEADS: Registry = Registry("head", skip=2)
for _name, _head in (("softmax", SoftmaxHead), ("norm_softmax", NormSoftmax),
                     ("sphereface", SphereFace), ("cosface", CosFace), ("arcface", ArcFace),
                     ("combined", CombinedMargin)):
    HEADS.add(_name, _head)


def create_head(name: str, embedding_size: int, num_classes: int, **kwargs) -> nn.Module:
    """Build a head by name: one of ``softmax``, ``norm_softmax``, ``sphereface``,
    ``cosface``, ``arcface``, ``combined``; ``kwargs`` are its hyper-parameters (``s``, ``m``,
    ``easy_margin``, ``m1``/``m2``/``m3``).

    Raises:
        ConfigError: for an unknown name or a hyper-parameter the head does not take.
    """
    return HEADS.create(str(name).strip().lower(), embedding_size, num_classes, **kwargs)


def target_logit_curve(head_or_name: nn.Module | str, theta: Tensor, **head_kwargs) -> Tensor:
    """Target logit divided by ``s`` as a function of the target angle θ (radians).

    This is the analytic curve of the ArcFace paper's Fig. 4(b). ``head_or_name`` is a head
    instance or a name for :func:`create_head` (then ``head_kwargs`` set its margins). For
    the plain softmax the curve is ``cos θ`` (unit norms, zero bias). Pass float64 angles for
    exact values near θ = 0 and θ = π.
    """
    if isinstance(head_or_name, str):
        head = create_head(head_or_name, 1, 1, **head_kwargs)
    elif head_kwargs:
        raise ConfigError("hyper-parameters can only be given with a head name, not an instance")
    else:
        head = head_or_name
    if not hasattr(head, "target_logit"):
        raise ConfigError(f"{type(head).__name__} has no target_logit; expected an fkdlib head")
    theta = torch.as_tensor(theta)
    if not theta.is_floating_point():
        theta = theta.double()
    with torch.no_grad():
        return head.target_logit(torch.cos(theta))
