"""SynthFace renderer: photographs the 3-D face model of :mod:`.params` in batches on the CPU.

Pipeline
--------
1. **Geometry** (NumPy, per batch): the face model (parts as ellipsoids, 68 landmarks with
   normals, marks) is posed (yaw, then pitch, then roll, about a pivot at the top of the neck),
   projected orthographically and framed. Aligned framing fits the similarity transform that
   maps the five landmarks onto the ArcFace 112x112 template (scaled to the resolution), as
   real faces are aligned; only for strongly turned faces, which that fit would zoom into
   and push out of the frame, the zoom stops at :data:`MAX_ALIGN_ZOOM` times the frontal
   scale and the centre moves into the head (from :data:`RECENTRE_FROM` degrees of yaw or
   pitch); unaligned framing
   centres the head with scale and shift jitter and keeps the roll. Each photo's hair is the
   identity's own or, where the photo restyles it, another haircut and colour
   (:func:`.params.restyled_hair`). An
   inner landmark is visible when no head part (cranium, jaw, nose, alae) lies in front of it
   along the view ray; a jaw-contour point while its normal has turned less than 30 degrees
   past the silhouette. Occluders (glasses, scarf, hand, hair) do not change visibility.
2. **Raster** (PyTorch, batched over images, looping over primitives): every primitive is an
   analytic shape evaluated at pixel centres with a one-pixel anti-aliased edge. The head
   (cranium, jaw, nose and alae ellipsoids) is one smooth depth field (a smooth maximum of
   the parts' depths) shaded with normals from its finite differences, plus low reliefs
   (brow ridge, cheekbones, chin: smooth domes over their ellipsoids' outlines) that change
   the shading but not the surface used for occlusion; the other volumes
   (torso, neck, hair, ears, scarf) are projected ellipsoids shaded as domes over their
   outlines; features are bands between two parabolas in their own frame (eyelids, brows,
   lips), discs lying on a surface (irises, pupils, moles, freckles, nostrils, lenses) and
   capsules (glasses, fingers, wrinkles), lit with the head's shade under them. Layers are
   composited back to front: background, torso, hair curtain, neck, hair behind, head, ears,
   wrinkles, marks, brows, eyes, mouth, facial hair, nostrils, hair in front, glasses,
   scarf, hand; then blur, noise and an 8x8 block quantisation. Small primitives are
   evaluated only inside per-image windows around their bounding boxes. Chunks of samples
   are rendered by worker processes (or threads where ``fork`` is unavailable; see
   :func:`render`).

Determinism
-----------
A sample's pixels must not depend on its batch, its position in the batch or the thread count.
PyTorch computes the tail of a vectorised loop (and each thread's chunk) with scalar code, so
transcendental kernels (exp, sin, pow, sigmoid), fused multiply-adds (lerp, addcmul, alpha=)
and reductions can differ by an ulp with the element's position. The raster therefore uses
only exactly rounded element-wise operations (+, -, *, /, sqrt, 1/sqrt, min, max, abs, floor,
round, clamp, comparisons), gathers and scatters; every transcendental value is a per-image
scalar computed with Python's ``math``; blur is a sum of shifted copies with per-image weights
that are exactly zero beyond the image's own radius; block means are fixed trees of additions.
Window sizes follow the batch, but every primitive is multiplied by a mask of the image's own
bounding box, so pixels outside it receive exactly zero coverage. Pixel noise comes from a
fixed table at a per-sample offset. The test-suite checks all of this bit for bit.
"""

from __future__ import annotations

import functools
import math
import multiprocessing
import sys
from collections.abc import Iterator
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass

import numpy as np
import torch

from ...errors import ConfigError
from . import params as P

# Bump when a change alters pixels or landmarks: it is part of every cache key.
RENDERER_VERSION = 3
MIN_RESOLUTION, MAX_RESOLUTION = 16, 128

# insightface's ArcFace alignment template for 112x112 crops (eye centres, nose tip, mouth
# corners; pixel centres at integer coordinates).
ARCFACE_TEMPLATE_112 = np.array([
    [38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655],
    [70.7299, 92.2041],
])
# Unaligned framing: pixels per face unit as a fraction of the resolution, and the face point
# put at the image centre.
UNALIGNED_SCALE = 0.30
UNALIGNED_CENTRE = np.array([0.0, 0.15, 0.3])
HEAD_PIVOT = np.array([0.0, 0.55, -0.35])
# Eyes as photographs show them: the socket shadowed under the brow, the white of the eye
# greyed by the lids' shadow (it photographs far darker than paper white). Down-sampled real
# faces show the brow-and-socket band as the darkest mark of the face; with the socket at
# 0.75 (was 0.4) and brows 1.8x thicker, real-LFW transfer rose by 1.6 points (3 seeds).
EYE_SOCKET_SHADOW = 0.75
SCLERA_RGB = (0.70, 0.66, 0.62)
HAIRLINE_FADE = 0.08
# Aligned framing beyond what the five-point fit does well (see build_scene): the zoom into a
# turned face stops at MAX_ALIGN_ZOOM times the frontal scale, and from RECENTRE_FROM degrees
# of yaw or pitch the centre moves into the head, reaching ALIGN_CENTRE_DEPTH (face units) at
# RECENTRE_TO.
MAX_ALIGN_ZOOM = 1.25
ALIGN_CENTRE_DEPTH = 0.25
RECENTRE_FROM, RECENTRE_TO = 30.0, 60.0
VISIBILITY_TOLERANCE = 0.03  # face units a landmark may sit below the surface and stay visible
JAW_VISIBLE_SIN = 0.5  # sin(30 deg): how far past the silhouette a contour point stays visible
NOISE_TABLE_SEED = 20240611
NOISE_TABLE_SIZE = 384
COMPRESSION_BLOCK = 8
# A layer's images are split into smaller windows when that evaluates under SPLIT_SAVING of the
# pixels of a single window, and each part keeps at least MIN_GROUP images.
SPLIT_SAVING = 0.9
MIN_GROUP = 8
SPLIT_DEPTH = 2
POST_BATCH = 64

Tensor = torch.Tensor


def check_resolution(resolution: int) -> int:
    """Return ``resolution`` as an int, or raise a :class:`ConfigError` explaining the range."""
    if isinstance(resolution, bool) or not isinstance(resolution, (int, np.integer)):
        raise ConfigError(
            f"SynthFace resolution must be an integer number of pixels, got {resolution!r}"
        )
    if not MIN_RESOLUTION <= int(resolution) <= MAX_RESOLUTION:
        raise ConfigError(
            f"SynthFace resolution must be between {MIN_RESOLUTION} and {MAX_RESOLUTION} "
            f"pixels, got {resolution}; render at a supported size and resize afterwards"
        )
    return int(resolution)


@dataclass
class RenderOutput:
    """Rendered samples: ``images`` uint8 (B, 3, H, W); landmarks in pixel coordinates with
    pixel centres at integers: ``landmarks68`` (B, 68, 2), ``visible68`` (B, 68) bool,
    ``landmarks5`` (B, 5, 2) in insightface order (eye, eye, nose tip, mouth corner, corner).
    """

    images: Tensor
    landmarks68: Tensor
    visible68: Tensor
    landmarks5: Tensor


# ----------------------------------------------------------------------------------------------
# Geometry: pose, framing, projection (NumPy, exact arithmetic)
# ----------------------------------------------------------------------------------------------

@dataclass
class _Pose:
    """An affine map from face coordinates to pixel space: ``P = linear @ p + offset``."""

    linear: np.ndarray  # (B, 3, 3), a rotation times the scale
    offset: np.ndarray  # (B, 3)

    def points(self, p: np.ndarray) -> np.ndarray:
        """Map points (B, N, 3)."""
        return _apply(self.linear, p) + self.offset[:, None, :]

    def ellipsoids(self, e: P.Ellipsoids, scale: np.ndarray) -> P.Ellipsoids:
        """Map ellipsoids: with L = s R, the pixel quadric is L q L^T / s^4."""
        centre = _apply(self.linear, e.centre[:, None, :])[:, 0] + self.offset
        q = P.matmul3(P.matmul3(self.linear, e.q), P.transpose3(self.linear))
        s4 = (scale * scale) * (scale * scale)
        return P.Ellipsoids(centre, q / s4[:, None, None])


def _apply(m: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Batched ``m @ p`` for points (B, N, 3) written as exact products and sums."""
    return np.stack([m[:, None, k, 0] * p[..., 0] + m[:, None, k, 1] * p[..., 1]
                     + m[:, None, k, 2] * p[..., 2] for k in range(3)], -1)


def _posed(rotation: np.ndarray, frame: np.ndarray, translation: np.ndarray) -> _Pose:
    """Rotate about the head pivot, then apply the framing (scaled image-plane rotation)."""
    linear = P.matmul3(frame, rotation)
    pivot = np.broadcast_to(HEAD_PIVOT, (len(rotation), 3))
    rotated_pivot = _apply(rotation, pivot[:, None, :])[:, 0]
    offset = _apply(frame, (pivot - rotated_pivot)[:, None, :])[:, 0] + translation
    return _Pose(linear, offset)


def _similarity_to_template(src: np.ndarray, dst: np.ndarray
                            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Least-squares similarity ``[a -b; b a] src + t`` onto ``dst`` (both (B, 5, 2)).

    Returns (a, b, t). Sums over the five points are written out to fix their order.
    """
    def total(v: np.ndarray) -> np.ndarray:
        return (((v[:, 0] + v[:, 1]) + v[:, 2]) + v[:, 3]) + v[:, 4]

    src_mean = np.stack([total(src[..., 0]), total(src[..., 1])], -1) / 5.0
    dst_mean = np.stack([total(dst[..., 0]), total(dst[..., 1])], -1) / 5.0
    s = src - src_mean[:, None]
    d = dst - dst_mean[:, None]
    var = total(s[..., 0] * s[..., 0] + s[..., 1] * s[..., 1])
    a = total(s[..., 0] * d[..., 0] + s[..., 1] * d[..., 1]) / var
    b = total(s[..., 0] * d[..., 1] - s[..., 1] * d[..., 0]) / var
    t = dst_mean - np.stack([a * src_mean[:, 0] - b * src_mean[:, 1],
                             b * src_mean[:, 0] + a * src_mean[:, 1]], -1)
    return a, b, t


def _five_points(landmarks: np.ndarray) -> np.ndarray:
    """Eye centres (mean of six points), nose tip and mouth corners, (B, 5, D)."""
    def eye(rows: np.ndarray) -> np.ndarray:
        v = landmarks[:, rows]
        return (((((v[:, 0] + v[:, 1]) + v[:, 2]) + v[:, 3]) + v[:, 4]) + v[:, 5]) / 6.0

    return np.stack([eye(P.RIGHT_EYE), eye(P.LEFT_EYE), landmarks[:, P.NOSE_TIP],
                     landmarks[:, P.MOUTH_LEFT], landmarks[:, P.MOUTH_RIGHT]], 1)


def template_points(resolution: int) -> np.ndarray:
    """The ArcFace five-point template scaled to ``resolution`` (pixel centres at integers)."""
    return (ARCFACE_TEMPLATE_112 + 0.5) * (resolution / 112.0) - 0.5


@dataclass
class _Scene:
    """Everything the raster needs, in pixel space, one row per sample."""

    resolution: int
    scale: np.ndarray                 # (B,) pixels per face unit
    head: _Pose
    parts: dict[str, P.Ellipsoids]    # pixel space
    landmarks: np.ndarray             # (B, 68, 3) pixel x, y and depth
    normals: np.ndarray               # (B, 68, 3) unit normals in pixel space
    visible: np.ndarray               # (B, 68) bool
    marks: np.ndarray                 # (B, M, 3) pixel positions
    mark_axes: np.ndarray             # (B, M, 2, 2) pixel-space tangent axes (columns)
    mark_facing: np.ndarray           # (B, M)
    light: np.ndarray                 # (B, 3) unit vector to the light, pixel frame
    ident: dict[str, np.ndarray]
    nuis: dict[str, np.ndarray]
    age: np.ndarray
    hair_rgb: np.ndarray              # (B, 3) after greying
    hair_centre_z: np.ndarray         # (B,) depth of the hair shell's centre, face coordinates


def _hair_and_body_parts(ident: dict[str, np.ndarray], head: dict[str, P.Ellipsoids]
                         ) -> tuple[dict[str, P.Ellipsoids], dict[str, P.Ellipsoids]]:
    """Hair volumes (posed with the head) and neck, torso (posed with the body)."""
    n = len(ident["face_width"])
    zeros = np.zeros(n)
    fw = ident["face_width"]
    volume = ident["hair_volume"] * np.where(ident["hair_style"] == 0, 0.25, 1.0)
    cranium = head["cranium"]
    grow = 1.0 + volume
    shell_axes = np.stack([np.sqrt(1.0 / cranium.q[:, 0, 0]) * grow,
                           np.sqrt(1.0 / cranium.q[:, 1, 1]) * (1.0 + 0.6 * volume),
                           np.sqrt(1.0 / cranium.q[:, 2, 2]) * grow], -1)
    shell_centre = cranium.centre - np.stack([zeros, 0.45 * volume, 0.25 * volume], -1)
    long_hair = ident["hair_style"] == 3
    # Hair hanging below the shell: to the jaw (medium) or over the shoulders (long). Above
    # its top the shell hides it anyway.
    bottom = np.where(long_hair, 2.1, 1.0)
    top = np.where(long_hair, 0.0, -0.2)
    curtain_centre = np.stack([zeros, 0.5 * (bottom + top), -0.4 + zeros], -1)
    curtain_axes = np.stack([(P.HEAD_HALF_WIDTH + 0.1 + 0.5 * volume) * fw, 0.5 * (bottom - top),
                             0.6 + zeros], -1)
    hair = {
        "hair": P.Ellipsoids.from_axes(shell_centre, shell_axes),
        "curtain": P.Ellipsoids.from_axes(curtain_centre, curtain_axes),
    }
    nw = ident["neck_width"]
    body = {
        # A tall neck whose widest part hides behind the torso reads as a column.
        "neck": P.Ellipsoids.from_axes(np.stack([zeros, 1.8 + zeros, -0.32 + zeros], -1),
                                       np.stack([0.44 * nw, 1.1 + zeros, 0.42 * nw], -1)),
        "torso": P.Ellipsoids.from_axes(np.stack([zeros, 2.3 + zeros, -0.45 + zeros], -1),
                                        np.stack([2.0 * nw, 0.8 + zeros, 0.8 + zeros], -1)),
    }
    return hair, body


def _pose_rotations(yaw: np.ndarray, pitch: np.ndarray, roll: np.ndarray) -> np.ndarray:
    cy, sy = P.cos_sin_degrees(yaw)
    cp, sp = P.cos_sin_degrees(pitch)
    cr, sr = P.cos_sin_degrees(roll)
    # Yaw first, then pitch about the camera's x axis, then roll in the image plane.
    return P.matmul3(P.rotation_z(cr, sr), P.matmul3(P.rotation_x(cp, sp),
                                                       P.rotation_y(cy, sy)))


def _surface_axes(normals: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two unit tangents (B, N, 3) of surfaces with the given unit normals."""
    ex = np.zeros_like(normals)
    ex[..., 0] = 1.0
    t1 = ex - normals * normals[..., 0:1]
    t1 = t1 / np.sqrt((t1 * t1).sum(-1, keepdims=True) + 1e-12)
    t2 = np.stack([normals[..., 1] * t1[..., 2] - normals[..., 2] * t1[..., 1],
                   normals[..., 2] * t1[..., 0] - normals[..., 0] * t1[..., 2],
                   normals[..., 0] * t1[..., 1] - normals[..., 1] * t1[..., 0]], -1)
    return t1, t2


def build_scene(identities: list[P.IdentityParams], nuisances: list[P.NuisanceParams],
                resolution: int, aligned: bool) -> _Scene:
    """Pose, frame and project a batch of samples (one identity and one nuisance per row)."""
    nuis = P.stack_nuisances(nuisances)
    ident = P.restyled_hair(P.stack_identities(identities), nuis)
    n = len(identities)
    age = P.image_age(ident["base_age"], nuis["age_drift"])
    face = P.face_model(ident, nuis["smile"], nuis["mouth_open"], nuis["eyes_closed"], age)
    rotation = _pose_rotations(nuis["yaw"], nuis["pitch"], nuis["roll"])
    identity3 = np.broadcast_to(np.eye(3), (n, 3, 3))
    world = _posed(rotation, identity3, np.zeros((n, 3)))

    if aligned:
        src = _five_points(world.points(face.landmarks))[..., :2]
        dst = np.broadcast_to(template_points(resolution), (n, 5, 2))
        a, b, t2 = _similarity_to_template(src, dst)
        # Real faces are aligned by this fit (insightface, LFW's funneling), which zooms into
        # a turned face as its five points draw together; beyond MAX_ALIGN_ZOOM times the
        # scale of the same face seen from the front the zoom would crop the face, so it
        # stops there, about the same centre.
        a0, b0, _ = _similarity_to_template(_five_points(face.landmarks)[..., :2], dst)
        fitted = np.sqrt(a * a + b * b)
        scale = np.minimum(fitted, MAX_ALIGN_ZOOM * np.sqrt(a0 * a0 + b0 * b0))
        a, b = a * (scale / fitted), b * (scale / fitted)
        # Centred like the fit on the five points up to RECENTRE_FROM degrees of yaw or
        # pitch; beyond, the centre moves back into the head (to ALIGN_CENTRE_DEPTH at
        # RECENTRE_TO), since the points swing out of the frame with the turn while the head
        # stays.
        frontal = _five_points(face.landmarks)
        turn = np.maximum(np.abs(P.cos_sin_degrees(nuis["yaw"])[1]),
                          np.abs(P.cos_sin_degrees(nuis["pitch"])[1]))
        low, high = math.sin(math.radians(RECENTRE_FROM)), math.sin(math.radians(RECENTRE_TO))
        weight = np.clip((turn - low) / (high - low), 0.0, 1.0)
        depth = frontal[..., 2].mean(1)
        centre = np.concatenate([frontal[..., :2].mean(1),
                                 (depth + weight * (ALIGN_CENTRE_DEPTH - depth))[:, None]], -1)
        src_mean, dst_mean = world.points(centre[:, None, :])[:, 0, :2], dst.mean(1)
        t2 = dst_mean - np.stack([a * src_mean[:, 0] - b * src_mean[:, 1],
                                  b * src_mean[:, 0] + a * src_mean[:, 1]], -1)
        zeros = np.zeros(n)
        frame = np.stack([np.stack([a, -b, zeros], -1), np.stack([b, a, zeros], -1),
                          np.stack([zeros, zeros, scale], -1)], -2)
        translation = np.stack([t2[:, 0], t2[:, 1], zeros], -1)
    else:
        scale = UNALIGNED_SCALE * resolution * nuis["scale"]
        frame = identity3 * scale[:, None, None]
        centre = world.points(np.broadcast_to(UNALIGNED_CENTRE, (n, 1, 3)))[:, 0]
        target = (0.5 + np.stack([nuis["shift_x"], nuis["shift_y"]], -1)) * resolution - 0.5
        translation = np.concatenate([target - scale[:, None] * centre[:, :2],
                                      np.zeros((n, 1))], -1)
    rot2 = frame / scale[:, None, None]
    head = _posed(rotation, frame, translation)

    hair, body = _hair_and_body_parts(ident, face.parts)
    half = _pose_rotations(nuis["yaw"] * 0.4, nuis["pitch"] * 0.3, nuis["roll"] * 0.5)
    neck_pose = _posed(half, frame, translation)
    body_pose = _posed(identity3, frame, translation)
    parts = {name: head.ellipsoids(e, scale) for name, e in {**face.parts, **hair}.items()}
    parts["neck"] = neck_pose.ellipsoids(body["neck"], scale)
    parts["torso"] = body_pose.ellipsoids(body["torso"], scale)

    landmarks = head.points(face.landmarks)
    normals = _apply(rot2, _apply(rotation, face.normals))
    visible = np.ones(landmarks.shape[:2], dtype=bool)
    tolerance = (VISIBILITY_TOLERANCE * scale)[:, None]
    for name in face.surface:
        depth, _ = parts[name].front_depth(landmarks[..., 0], landmarks[..., 1])
        visible &= ~(depth > landmarks[..., 2] + tolerance)
    # Contour points sit on the frontal silhouette, so any turn hides half of them from the
    # ray test; like annotators, keep them until they face more than 30 degrees away.
    visible[:, P.JAW] = normals[:, P.JAW, 2] > -JAW_VISIBLE_SIN

    marks = head.points(face.marks[..., :3])
    t1, t2 = _surface_axes(face.mark_normals)
    radius = face.marks[..., 3:4]
    ax1 = _apply(head.linear, t1 * radius)[..., :2]
    ax2 = _apply(head.linear, t2 * radius)[..., :2]
    mark_normals = _apply(rot2, _apply(rotation, face.mark_normals))
    mark_facing = np.clip(mark_normals[..., 2] * 4.0, 0.0, 1.0) * (face.marks[..., 3] > 0)
    mark_axes = np.stack([ax1, ax2], -1)

    light = _apply(rot2, nuis["light"][:, None, :])[:, 0]
    # Dyed hair does not grey.
    grey = np.clip((age - 42.0) / 35.0, 0.0, 1.0) * ident["greying"] * (1.0 - nuis["restyle"])
    hair_rgb = (ident["hair_rgb"] * (1.0 - grey[:, None])
                + np.array([0.70, 0.69, 0.67]) * grey[:, None])
    return _Scene(resolution=resolution, scale=scale, head=head, parts=parts,
                  landmarks=landmarks, normals=normals, visible=visible, marks=marks,
                  mark_axes=mark_axes, mark_facing=mark_facing, light=light, ident=ident,
                  nuis=nuis, age=age, hair_rgb=hair_rgb,
                  hair_centre_z=hair["hair"].centre[:, 2])


# ----------------------------------------------------------------------------------------------
# Raster: windows, compositing and primitives (PyTorch, exact element-wise arithmetic)
# ----------------------------------------------------------------------------------------------

def _col(values: np.ndarray) -> Tensor:
    """Per-image scalars (b,) -> float32 tensor (b, 1, 1, 1)."""
    return torch.from_numpy(np.ascontiguousarray(values, dtype=np.float32)).view(-1, 1, 1, 1)


def _rgb(values: np.ndarray) -> Tensor:
    """Per-image colours (b, 3) -> float32 tensor (b, 3, 1, 1)."""
    return torch.from_numpy(np.ascontiguousarray(values, dtype=np.float32)).view(-1, 3, 1, 1)


class _Window:
    """Pixels of a subset of the batch where a layer may be non-zero.

    All images share the window's size (the largest bounding box of the subset, clipped to
    the image), each at its own origin. Coverage is masked to each image's own bounding box,
    so the rest of the batch never changes an image's pixels.
    """

    def __init__(self, images: np.ndarray, boxes: np.ndarray, size: int, batch: int):
        self.images = images
        self.size = size
        # Only the part of a box inside the image matters; an empty one masks everything.
        x0, y0 = np.maximum(boxes[:, 0], -0.5), np.maximum(boxes[:, 1], -0.5)
        x1, y1 = np.minimum(boxes[:, 2], size - 0.5), np.minimum(boxes[:, 3], size - 0.5)
        empty = (x1 < x0) | (y1 < y0)
        extent = np.where(empty[:, None], 0.0, np.stack([x1 - x0, y1 - y0], -1)).max(0,
                                                                                    initial=0.0)
        width, height = (int(v) for v in np.clip(np.ceil(extent) + 3, 1, size))
        ox = np.clip(np.floor(np.where(empty, 0.0, x0)) - 1, 0, size - width).astype(np.int64)
        oy = np.clip(np.floor(np.where(empty, 0.0, y0)) - 1, 0, size - height).astype(np.int64)
        self.shape = (height, width)
        self.origin = (ox, oy)
        self.full = len(images) == batch and width == size and height == size
        self.gx = (torch.from_numpy(ox.astype(np.float32)).view(-1, 1, 1, 1)
                   + torch.arange(width, dtype=torch.float32).view(1, 1, 1, width))
        self.gy = (torch.from_numpy(oy.astype(np.float32)).view(-1, 1, 1, 1)
                   + torch.arange(height, dtype=torch.float32).view(1, 1, height, 1))
        covers = not empty.any() and bool(
            np.all(x0 <= ox) and np.all(x1 >= ox + width - 1) and np.all(y0 <= oy)
            and np.all(y1 >= oy + height - 1))
        self._box = None if covers else np.where(empty[:, None], [np.inf, np.inf, -np.inf,
                                                                  -np.inf],
                                                 np.stack([x0, y0, x1, y1], -1))
        self._mask: Tensor | None = None
        self._masks: tuple[Tensor, Tensor] | None = None
        self._index: dict[int, Tensor] = {}

    def _box_masks(self) -> tuple[Tensor, Tensor]:
        """1 inside each image's box and 0 outside, along x (b, 1, 1, w) and y (b, 1, h, 1)."""
        if self._masks is None:
            b = self._box
            inside_x = (self.gx >= _col(b[:, 0])).logical_and_(self.gx <= _col(b[:, 2]))
            inside_y = (self.gy >= _col(b[:, 1])).logical_and_(self.gy <= _col(b[:, 3]))
            self._masks = (inside_x.to(torch.float32), inside_y.to(torch.float32))
        return self._masks

    @property
    def mask(self) -> Tensor | None:
        """1 inside each image's box and 0 outside, (b, 1, h, w); None when all ones."""
        if self._box is None:
            return None
        if self._mask is None:
            mask_x, mask_y = self._box_masks()
            self._mask = mask_x * mask_y
        return self._mask

    def _row_starts(self, channels: int) -> Tensor:
        """Flat offset of the first pixel of every window row, (b * channels * h,)."""
        if channels not in self._index:
            ox, oy = self.origin
            height = self.shape[0]
            size = self.size
            start = (self.images * channels * size + oy) * size + ox
            local = np.arange(channels)[:, None] * (size * size) + np.arange(height) * size
            self._index[channels] = torch.from_numpy(
                (start[:, None, None] + local[None]).reshape(-1))
        return self._index[channels]

    def _rows(self, plane: Tensor) -> Tensor:
        """The flat map as overlapping rows of the window's width, one starting at every
        pixel: gathering and scattering whole rows moves contiguous runs of pixels, several
        times faster than pixel-wise indexing. Window rows never overlap one another, so
        writing them back is well defined."""
        flat = plane.view(-1)
        width = self.shape[1]
        return flat.as_strided((flat.numel() - width + 1, width), (1, 1))

    def gather(self, plane: Tensor) -> Tensor:
        """Values of a (B, C, H, W) map inside the window, (b, C, h, w); the map itself when
        the window is the whole batch and image."""
        if self.full:
            return plane
        rows = self._rows(plane).index_select(0, self._row_starts(plane.shape[1]))
        return rows.view(len(self.images), plane.shape[1], *self.shape)

    def scatter(self, plane: Tensor, values: Tensor) -> None:
        """Write window values back into a (B, C, H, W) map."""
        if self.full:
            if values is not plane:
                plane.copy_(values)
            return
        self._rows(plane).index_copy_(0, self._row_starts(plane.shape[1]),
                                      values.reshape(-1, self.shape[1]))

    def bounded(self, alpha: Tensor) -> Tensor:
        """Coverage restricted to each image's own bounding box."""
        if self._box is None:
            return alpha
        mask_x, mask_y = self._box_masks()
        return (alpha * mask_x).mul_(mask_y)


def _blend(patch: Tensor, alpha: Tensor, colour: Tensor) -> None:
    """In place: patch <- (patch - colour) (1 - alpha) + colour, i.e. alpha over patch.

    Written as three in-place passes: fresh large tensors cost more than the arithmetic.
    """
    patch.sub_(colour).mul_(1.0 - alpha).add_(colour)


def _replicate_pad(x: Tensor, dim: int, before: int, after: int) -> Tensor:
    """Pad ``dim`` of ``x`` by repeating its first value ``before`` times and its last value
    ``after`` times.

    Copies into slices of a new tensor (PyTorch's replicate padding and ``cat`` are several
    times slower on CPU for these shapes).
    """
    size = x.shape[dim]
    shape = list(x.shape)
    shape[dim] = before + size + after
    out = torch.empty(shape, dtype=x.dtype)
    out.narrow(dim, before, size).copy_(x)
    for k in range(before):
        out.narrow(dim, k, 1).copy_(x.narrow(dim, 0, 1))
    for k in range(after):
        out.narrow(dim, before + size + k, 1).copy_(x.narrow(dim, size - 1, 1))
    return out


def _central_difference(z: Tensor, dim: int) -> Tensor:
    """-dz/2 along ``dim`` with replicated borders: -(z[i+1] - z[i-1]) / 2."""
    size = z.shape[dim]
    out = torch.empty_like(z)
    torch.sub(z.narrow(dim, 0, size - 2), z.narrow(dim, 2, size - 2),
              out=out.narrow(dim, 1, size - 2))
    torch.sub(z.narrow(dim, 0, 1), z.narrow(dim, 1, 1), out=out.narrow(dim, 0, 1))
    torch.sub(z.narrow(dim, size - 2, 1), z.narrow(dim, size - 1, 1),
              out=out.narrow(dim, size - 1, 1))
    return out.mul_(0.5)


class _Canvas:
    """The images being painted plus the head maps later layers read.

    ``head_alpha`` is the head's coverage, ``surface`` its smooth depth field, ``depth`` the
    same depth where the head covers and very far elsewhere (for occlusion tests),
    ``head_shade`` its shading.
    """

    def __init__(self, batch: int, size: int):
        self.batch = batch
        self.size = size
        self.rgb = torch.empty(batch, 3, size, size)
        self.head_alpha = torch.zeros(batch, 1, size, size)
        self.depth = torch.full((batch, 1, size, size), -1e6)
        self.surface = torch.full((batch, 1, size, size), -1e6)
        self.head_shade = torch.ones(batch, 1, size, size)

    def window(self, images: np.ndarray, boxes: np.ndarray) -> _Window:
        return _Window(np.asarray(images, dtype=np.int64), boxes, self.size, self.batch)

    def groups(self, rows: np.ndarray, boxes: np.ndarray
               ) -> list[tuple[np.ndarray, np.ndarray, _Window]]:
        """Windows for ``rows`` (one box each), split by box size when that saves enough
        pixels (one large box would otherwise size the window of every image): up to
        ``2 ** SPLIT_DEPTH`` groups of at least ``MIN_GROUP`` images.

        Returns (positions into ``rows``, the scene rows, window) per group.
        """
        size = self.size
        w = np.clip(np.minimum(boxes[:, 2], size) - np.maximum(boxes[:, 0], -1) + 3, 0, size)
        h = np.clip(np.minimum(boxes[:, 3], size) - np.maximum(boxes[:, 1], -1) + 3, 0, size)

        def split(order: np.ndarray, depth: int) -> list[np.ndarray]:
            n = len(order)
            if depth == 0 or n < 2 * MIN_GROUP:
                return [order]
            ws, hs = w[order], h[order]
            head = np.maximum.accumulate(ws) * np.maximum.accumulate(hs)
            tail = (np.maximum.accumulate(ws[::-1]) * np.maximum.accumulate(hs[::-1]))[::-1]
            k = np.arange(MIN_GROUP, n - MIN_GROUP + 1)
            cost = k * head[k - 1] + (n - k) * tail[k]
            if cost.min() >= SPLIT_SAVING * n * head[-1]:
                return [order]
            best = int(k[np.argmin(cost)])
            return split(order[:best], depth - 1) + split(order[best:], depth - 1)

        positions = split(np.argsort(w * h, kind="stable"), SPLIT_DEPTH)
        return [(pos, rows[pos], self.window(rows[pos], boxes[pos])) for pos in positions]

    def everywhere(self) -> _Window:
        boxes = np.tile([-1.0, -1.0, self.size + 1.0, self.size + 1.0], (self.batch, 1))
        return self.window(np.arange(self.batch), boxes)

    def paint(self, win: _Window, alpha: Tensor, colour: Tensor) -> None:
        """Composite one layer (coverage is bounded here)."""
        patch = win.gather(self.rgb)
        _blend(patch, win.bounded(alpha), colour)
        win.scatter(self.rgb, patch)


def _projected_ellipse(q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The 2-D quadratic form (b, 2, 2) of ellipsoid outlines and their mean radius."""
    p2 = q[:, :2, :2] - q[:, :2, 2, None] * q[:, None, 2, :2] / q[:, 2, 2, None, None]
    det = p2[:, 0, 0] * p2[:, 1, 1] - p2[:, 0, 1] * p2[:, 0, 1]
    return p2, 1.0 / np.sqrt(np.sqrt(det))


def _ellipse_box(e: P.Ellipsoids, rows: np.ndarray | None = None, margin: float = 1.5
                 ) -> np.ndarray:
    """Pixel bounding boxes (b, 4) of where projected ellipsoids have non-zero coverage."""
    q = e.q if rows is None else e.q[rows]
    c = e.centre if rows is None else e.centre[rows]
    p2, r_eff = _projected_ellipse(q)
    det = p2[:, 0, 0] * p2[:, 1, 1] - p2[:, 0, 1] * p2[:, 0, 1]
    # The coverage ramp reaches zero on the outline scaled by sqrt(1 + 1 / r_eff).
    grow = 1.0 + 1.0 / r_eff
    hx = np.sqrt(grow * p2[:, 1, 1] / det) + margin
    hy = np.sqrt(grow * p2[:, 0, 0] / det) + margin
    return np.stack([c[:, 0] - hx, c[:, 1] - hy, c[:, 0] + hx, c[:, 1] + hy], -1)


@dataclass
class _Surface:
    """An ellipsoid on a window: coverage and, if asked, the signed distance to its outline
    (pixels, negative inside), front depth (extrapolated outside the outline) and shade."""

    alpha: Tensor
    distance: Tensor | None
    depth: Tensor | None
    shade: Tensor | None


def _discriminant(win: _Window, q: np.ndarray, c: np.ndarray
                  ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(X, Y, b_z, D) of the ellipsoids (quadrics ``q``, centres ``c``) at the window's pixel
    centres: X, Y relative to the centre, b_z = q_xz X + q_yz Y and the discriminant
    D = b_z^2 - q_zz (q_2(X, Y) - 1) of the front surface's quadratic in Z."""
    qzz = q[:, 2, 2]
    X = win.gx - _col(c[:, 0])
    Y = win.gy - _col(c[:, 1])
    bz = _col(q[:, 0, 2]) * X + _col(q[:, 1, 2]) * Y
    disc = bz * bz
    disc.sub_((_col(qzz * q[:, 0, 0]) * X * X - _col(qzz)) + _col(qzz * q[:, 1, 1]) * Y * Y)
    disc.sub_((_col(2.0 * qzz * q[:, 0, 1]) * X) * Y)
    return X, Y, bz, disc


def _ellipsoid(win: _Window, e: P.Ellipsoids, rows: np.ndarray, scene: _Scene | None = None,
               want_depth: bool = False, want_distance: bool = False,
               ambient_scale: float = 1.0) -> _Surface:
    """Coverage, front depth and (with ``scene``) shading of ellipsoids ``e[rows]`` on ``win``.

    With X, Y relative to the centre the front surface solves
    q_zz Z^2 + 2 (q_xz X + q_yz Y) Z + q_2(X, Y) - 1 = 0. Its discriminant D is positive
    inside the outline, and -D r / (2 q_zz) approximates the signed distance to the outline
    (r the outline's mean radius), which gives a one-pixel anti-aliased edge. Shading treats
    the surface as a dome over its outline, normal (X / r, Y / r, sqrt(D / q_zz)): exact for
    a sphere, smooth for any ellipsoid and much cheaper than exact normals. Light is wrapped
    Lambert plus an ambient term that darkens towards the silhouette.
    """
    q = e.q[rows]
    c = e.centre[rows]
    _, r_eff = _projected_ellipse(q)
    qzz = q[:, 2, 2]
    X, Y, bz, disc = _discriminant(win, q, c)
    if want_distance:
        distance = disc * _col(-r_eff / (2.0 * qzz))
        alpha = (0.5 - distance).clamp_(0.0, 1.0)
    else:
        distance = None
        alpha = (disc * _col(r_eff / (2.0 * qzz))).add_(0.5).clamp_(0.0, 1.0)
    root = disc.clamp_(min=0.0).sqrt_()
    depth = (root - bz).mul_(_col(1.0 / qzz)).add_(_col(c[:, 2])) if want_depth else None
    shade = None
    if scene is not None:
        light = scene.light[rows]
        diffuse = scene.nuis["diffuse"][rows]
        ambient = scene.nuis["ambient"][rows] * ambient_scale
        k = 0.8 * diffuse / r_eff
        shade = _col(k * light[:, 0]) * X + _col(k * light[:, 1]) * Y
        facing = (root * _col(1.0 / np.sqrt(qzz))).clamp_(max=1.0)
        shade.add_(facing * _col(0.8 * diffuse * light[:, 2])).add_(_col(0.2 * diffuse))
        shade.clamp_(min=0.0).add_(facing.mul_(_col(0.45 * ambient)).add_(_col(0.55 * ambient)))
    return _Surface(alpha=alpha, distance=distance, depth=depth, shade=shade)


def _dome(win: _Window, e: P.Ellipsoids, rows: np.ndarray) -> Tensor:
    """A smooth bump over the outline of ellipsoids ``e[rows]``: (1 - rho^2)^2, with rho the
    outline's normalised radius, so 1 at the centre and zero in value and slope at the
    outline (the discriminant of :func:`_ellipsoid` divided by its central value q_zz)."""
    q = e.q[rows]
    _, _, _, disc = _discriminant(win, q, e.centre[rows])
    inside = disc.mul_(_col(1.0 / q[:, 2, 2])).clamp_(0.0, 1.0)
    return win.bounded(inside.mul_(inside))


def _smooth_max(a: Tensor, b: Tensor, k: Tensor) -> Tensor:
    """Polynomial smooth maximum of two depth fields, blending over a depth range ``k``."""
    diff = a - b
    h = (diff / k).mul_(0.5).add_(0.5).clamp_(0.0, 1.0)
    out = diff.mul_(h).add_(b)
    return out.add_(h.mul_(1.0 - h).mul_(k))


def _solid_depth(surface: _Surface, falloff: float = 3.0) -> Tensor:
    """Front depth that falls away (``falloff`` per pixel) outside the outline, so that a
    smooth union of parts follows each part's surface inside and blends at the seams."""
    return surface.depth.sub_(surface.distance.clamp(min=0.0).mul_(falloff))


def _lit(scene: _Scene, rows: np.ndarray, albedo: np.ndarray) -> Tensor:
    """Albedo times light colour, (b, 3, 1, 1)."""
    return _rgb(albedo * scene.nuis["light_rgb"][rows])


def _disc(win: _Window, centre: np.ndarray, axes: np.ndarray) -> tuple[Tensor, Tensor]:
    """Coverage of filled ellipses ``centre + axes @ (cos t, sin t)`` and the radius ratio.

    ``axes`` (b, 2, 2) holds the two semi-axis vectors (pixels) as columns; a disc seen
    edge-on (singular axes) has no coverage.
    """
    a, b = axes[:, 0, 0], axes[:, 0, 1]
    c, d = axes[:, 1, 0], axes[:, 1, 1]
    det = a * d - b * c
    seen = np.abs(det) > 1e-9
    safe = np.where(seen, det, 1.0)
    X = win.gx - _col(centre[:, 0])
    Y = win.gy - _col(centre[:, 1])
    u = _col(d / safe) * X + _col(-b / safe) * Y
    v = _col(-c / safe) * X + _col(a / safe) * Y
    radius = u.mul_(u).add_(v.mul_(v)).sqrt_()
    minor = np.minimum(np.hypot(a, c), np.hypot(b, d)) * seen
    alpha = (_col(minor + 0.5) - radius * _col(minor)).clamp_(0.0, 1.0)
    return alpha, radius


def _disc_box(centre: np.ndarray, axes: np.ndarray, margin: float | np.ndarray = 1.5
              ) -> np.ndarray:
    hx = np.hypot(axes[:, 0, 0], axes[:, 0, 1]) + margin
    hy = np.hypot(axes[:, 1, 0], axes[:, 1, 1]) + margin
    return np.stack([centre[:, 0] - hx, centre[:, 1] - hy, centre[:, 0] + hx,
                     centre[:, 1] + hy], -1)


def _capsule(win: _Window, a: np.ndarray, b: np.ndarray, radius: np.ndarray
             ) -> tuple[Tensor, Tensor]:
    """Coverage of thick segments a-b (pixels) and the position h in [0, 1] along them."""
    d = b - a
    length2 = np.maximum((d * d).sum(-1), 1e-9)
    X = win.gx - _col(a[:, 0])
    Y = win.gy - _col(a[:, 1])
    h = (X * _col(d[:, 0] / length2) + Y * _col(d[:, 1] / length2)).clamp_(0.0, 1.0)
    ex = X - h * _col(d[:, 0])
    ey = Y - h * _col(d[:, 1])
    distance = ex.mul_(ex).add_(ey.mul_(ey)).sqrt_()
    return (_col(radius + 0.5) - distance).clamp_(0.0, 1.0), h


def _capsule_box(a: np.ndarray, b: np.ndarray, radius: np.ndarray) -> np.ndarray:
    r = radius + 1.5
    return np.stack([np.minimum(a[:, 0], b[:, 0]) - r, np.minimum(a[:, 1], b[:, 1]) - r,
                     np.maximum(a[:, 0], b[:, 0]) + r, np.maximum(a[:, 1], b[:, 1]) + r], -1)


@dataclass
class _Frame:
    """A feature's own 2-D frame: origin, unit axis u (left to right), half-width (pixels)."""

    origin: np.ndarray
    u: np.ndarray
    half: np.ndarray

    @staticmethod
    def between(a: np.ndarray, b: np.ndarray) -> _Frame:
        d = b - a
        length = np.sqrt((d * d).sum(-1))
        return _Frame(origin=(a + b) * 0.5, u=d / np.maximum(length, 1e-9)[:, None],
                      half=np.maximum(length * 0.5, 1e-3))

    def take(self, rows: np.ndarray) -> _Frame:
        """The frames of some rows."""
        return _Frame(self.origin[rows], self.u[rows], self.half[rows])

    def offset(self, p: np.ndarray) -> np.ndarray:
        """Signed distance of points (b, 2) from the axis, positive downwards (pixels)."""
        d = p - self.origin
        return -d[:, 0] * self.u[:, 1] + d[:, 1] * self.u[:, 0]

    def coords(self, win: _Window) -> tuple[Tensor, Tensor, Tensor]:
        """(s, v, w): position along the axis (-1 and 1 at the ends), offset across it, and
        w = 1 - s^2, the profile every feature curve is a multiple of."""
        X = win.gx - _col(self.origin[:, 0])
        Y = win.gy - _col(self.origin[:, 1])
        ux, uy = self.u[:, 0], self.u[:, 1]
        s = X * _col(ux / self.half) + Y * _col(uy / self.half)
        v = Y * _col(ux) - X * _col(uy)
        return s, v, 1.0 - s * s

    def box(self, up: np.ndarray, down: np.ndarray, extra: np.ndarray) -> np.ndarray:
        """Pixel box around the frame: ``up`` / ``down`` across, ``extra`` beyond the ends."""
        corners = []
        for along in (-1.0, 1.0):
            for across in (-up, down):
                reach = along * (self.half + extra)
                corners.append(np.stack([
                    self.origin[:, 0] + reach * self.u[:, 0] - across * self.u[:, 1],
                    self.origin[:, 1] + reach * self.u[:, 1] + across * self.u[:, 0]], -1))
        c = np.stack(corners, 1)
        return np.concatenate([c.min(1) - 1.5, c.max(1) + 1.5], -1)


def _band(v: Tensor, top: Tensor, bottom: Tensor) -> Tensor:
    """Coverage of top < v < bottom, never more than the band's own thickness in pixels."""
    inside = torch.minimum(v - top, bottom - v).add_(0.5)
    return torch.minimum(inside, bottom - top).clamp_(0.0, 1.0)


def _line(v: Tensor, centre: Tensor, half_width: Tensor | float) -> Tensor:
    """Coverage of a thin curve: |v - centre| < half_width, anti-aliased."""
    return (half_width + 0.5 - (v - centre).abs_()).clamp_(0.0, 1.0)


def _triangle_wave(x: Tensor) -> Tensor:
    """|2 frac(x) - 1|: a periodic ramp made of exact operations."""
    return (x - x.floor()).mul_(2.0).sub_(1.0).abs_()


def _facing(scene: _Scene, index: np.ndarray) -> np.ndarray:
    """How much a group of landmarks faces the camera, in [0, 1] (fades features away)."""
    nz = scene.normals[:, index, 2]
    mean = nz.sum(1) / len(index)
    return np.clip((mean + 0.05) * 4.0, 0.0, 1.0)


def _all(scene: _Scene) -> np.ndarray:
    return np.arange(len(scene.scale))


def _face_coordinates(scene: _Scene, rows: np.ndarray, win: _Window, depth: Tensor,
                      axes: tuple[int, ...] = (0, 1, 2)) -> list[Tensor]:
    """Face coordinates of pixel-space points (window x, y and ``depth``) under the head pose."""
    linear = scene.head.linear[rows]
    scale = scene.scale[rows]
    inverse = P.transpose3(linear) / (scale * scale)[:, None, None]
    offset = scene.head.offset[rows]
    X = win.gx - _col(offset[:, 0])
    Y = win.gy - _col(offset[:, 1])
    Z = depth - _col(offset[:, 2])
    return [(_col(inverse[:, k, 0]) * X + _col(inverse[:, k, 1]) * Y).add_(
        Z * _col(inverse[:, k, 2])) for k in axes]


# ----------------------------------------------------------------------------------------------
# Layers, back to front
# ----------------------------------------------------------------------------------------------

def _paint_background(canvas: _Canvas, scene: _Scene) -> None:
    """A vertical two-colour gradient with an optional soft blob (clutter)."""
    win = canvas.everywhere()
    size = scene.resolution
    top, bottom = _rgb(scene.nuis["bg_top"]), _rgb(scene.nuis["bg_bottom"])
    canvas.rgb.copy_((top + (bottom - top) * (win.gy * (1.0 / size))).expand(
        -1, -1, size, size))
    blob = scene.nuis["blob"]
    rows = np.flatnonzero(blob[:, 3] > 0)
    if len(rows) == 0:
        return
    centre = blob[rows, :2] * size
    radius = blob[rows, 2] * size
    box = np.concatenate([centre - radius[:, None], centre + radius[:, None]], -1)
    win = canvas.window(rows, box)
    X = (win.gx - _col(centre[:, 0])) * _col(1.0 / radius)
    Y = (win.gy - _col(centre[:, 1])) * _col(1.0 / radius)
    falloff = (1.0 - (X * X + Y * Y)).clamp_(min=0.0)
    canvas.paint(win, falloff.mul_(falloff).mul_(_col(blob[rows, 3])),
                 _rgb(scene.nuis["blob_rgb"][rows]))


def _paint_part(canvas: _Canvas, scene: _Scene, name: str, rows: np.ndarray,
                albedo: np.ndarray, ambient_scale: float = 1.0) -> None:
    """A shaded ellipsoid painted over whatever is there (torso, neck); ``albedo`` (B, 3)."""
    if len(rows) == 0:
        return
    part = scene.parts[name]
    for _, sub, win in canvas.groups(rows, _ellipse_box(part, rows)):
        surface = _ellipsoid(win, part, sub, scene, ambient_scale=ambient_scale)
        canvas.paint(win, surface.alpha, _lit(scene, sub, albedo[sub]) * surface.shade)


def _hair_colour(scene: _Scene, rows: np.ndarray, shade: Tensor, x: Tensor,
                 y: Tensor | None = None) -> Tensor:
    """Hair albedo, lit, with a strand texture: stripes across x (face units), slanted by y
    when given. ``shade`` is modified in place."""
    phase = x * 9.0 if y is None else x * 9.0 + y * 1.5
    strands = _triangle_wave(phase).mul_(0.2).add_(0.9)
    return _lit(scene, rows, scene.hair_rgb[rows]) * shade.mul_(strands)


class _HairShell:
    """The hair volume, evaluated once and composited twice: behind and in front of the face.

    Whether a point of the shell carries hair is decided in face coordinates, so the hairline
    turns with the head: behind the head hair reaches a style-dependent level; in front the
    hairline crosses the forehead (lower with a fringe, with a zig-zag edge) and runs down
    the sides of the head, in front of the ears for short hair, over them for long hair.
    """

    def __init__(self, canvas: _Canvas, scene: _Scene):
        rows = _all(scene)
        part = scene.parts["hair"]
        self.rows = rows
        self.win = canvas.window(rows, _ellipse_box(part))
        surface = _ellipsoid(self.win, part, rows, scene, want_depth=True, ambient_scale=0.9)
        self.x, self.y, self.z = _face_coordinates(scene, rows, self.win, surface.depth)
        density = np.where(scene.ident["hair_style"] == 0, 0.55, 1.0)
        self.alpha = surface.alpha.mul_(_col(density))
        self.colour = _hair_colour(scene, rows, surface.shade, self.x, self.y)
        self.centre_z = scene.hair_centre_z

    def paint(self, canvas: _Canvas, scene: _Scene, front: bool) -> None:
        ident = scene.ident
        style = ident["hair_style"]
        x, y, z = self.x, self.y, self.z
        # Hairlines are wispy, not cut: the edge fades over HAIRLINE_FADE face units.
        soft = 1.0 / HAIRLINE_FADE
        if not front:
            bottom = np.select([style == 3, style == 2, style == 4], [0.75, 0.55, 0.32], 0.25)
            region = (_col(bottom) - y).mul_(soft).add_(0.5).clamp_(0.0, 1.0)
            canvas.paint(self.win, self.alpha * region, self.colour)
            return
        fringe = ident["fringe"]
        hairline = np.where(style == 4, -1.05, ident["hairline"] + 0.32 * fringe)
        recession = np.where(style == 4, 0.66, 0.22)
        teeth = _triangle_wave(x * 7.0).mul_(_col(0.07 * fringe + 0.015))
        forehead = (x * x).mul_(_col(recession)).add_(teeth).add_(_col(hairline)).sub_(y)
        # Sides: where the shell turns away from the face (|x| large against z).
        temple = np.select([style == 3, style == 2], [0.25, 0.40], 0.55)
        side_bottom = np.select([style == 3, style == 2], [0.30, 0.22], 0.10)
        side = (x.abs() - z).add_(_col(self.centre_z - temple)).mul_(2.5)
        side = torch.minimum(side, _col(side_bottom) - y)
        region = torch.maximum(forehead, side).mul_(soft).add_(0.5).clamp_(0.0, 1.0)
        canvas.paint(self.win, self.alpha * region, self.colour)


def _paint_curtain(canvas: _Canvas, scene: _Scene) -> None:
    """Medium and long hair hanging behind the neck and shoulders."""
    rows = np.flatnonzero(np.isin(scene.ident["hair_style"], (2, 3)))
    if len(rows) == 0:
        return
    part = scene.parts["curtain"]
    for _, sub, win in canvas.groups(rows, _ellipse_box(part, rows)):
        surface = _ellipsoid(win, part, sub, scene, ambient_scale=0.75)
        x = (win.gx - _col(part.centre[sub, 0])) * _col(1.0 / scene.scale[sub])
        colour = _hair_colour(scene, sub, surface.shade.mul_(0.85), x)
        canvas.paint(win, surface.alpha, colour)


def _paint_head(canvas: _Canvas, scene: _Scene) -> None:
    """The head surface: cranium, jaw, alae and nose merged into one smooth depth field.

    Depths are combined with a smooth maximum, so the parts blend without creases, and the
    surface is shaded with normals from central differences of that depth (pixel units):
    n = (-dz/dx, -dz/dy, 1). The canvas keeps the head's coverage, an occlusion depth
    (very far where there is no head) and the shade for later layers.
    """
    rows = _all(scene)
    scale = scene.scale
    cranium, jaw = scene.parts["cranium"], scene.parts["jaw"]
    boxes = np.stack([_ellipse_box(cranium), _ellipse_box(jaw)], 0)
    box = np.concatenate([boxes[..., :2].min(0), boxes[..., 2:].max(0)], -1)
    win = canvas.window(rows, box)
    a = _ellipsoid(win, cranium, rows, want_depth=True, want_distance=True)
    b = _ellipsoid(win, jaw, rows, want_depth=True, want_distance=True)
    alpha = win.bounded(torch.maximum(a.alpha, b.alpha))
    surface = _smooth_max(_solid_depth(a), _solid_depth(b), _col(0.15 * scale))
    if win.mask is not None:
        # Exactly the initial value outside each image's own box, whatever the window.
        surface.mul_(win.mask).add_((win.mask - 1.0).mul_(1e6))
    win.scatter(canvas.head_alpha, alpha)
    win.scatter(canvas.surface, surface)
    for name in ("ala_right", "ala_left", "nose"):
        part = scene.parts[name]
        pwin = canvas.window(rows, _ellipse_box(part))
        p = _ellipsoid(pwin, part, rows, want_depth=True, want_distance=True)
        before = pwin.gather(canvas.surface)
        merged = _smooth_max(before, _solid_depth(p, 1.5), _col(0.2 * scale))
        if pwin.mask is not None:
            merged = merged.sub_(before).mul_(pwin.mask).add_(before)
        pwin.scatter(canvas.surface, merged)
        pwin.scatter(canvas.head_alpha, torch.maximum(pwin.gather(canvas.head_alpha),
                                                      pwin.bounded(p.alpha)))

    depth = canvas.surface
    relief = depth.clone()
    for name, rise in zip(P.HEAD_RELIEFS, (scene.ident["brow_ridge"],
                                           scene.ident["cheek_prominence"],
                                           scene.ident["cheek_prominence"],
                                           scene.ident["chin_prominence"])):
        part = scene.parts[name]
        for _, sub, pwin in canvas.groups(rows, _ellipse_box(part)):
            height = _dome(pwin, part, sub).mul_(_col(rise[sub] * scale[sub]))
            pwin.scatter(relief, pwin.gather(relief).add_(height))
    dx = _central_difference(relief, 3)
    dy = _central_difference(relief, 2)
    inv = (dx * dx).add_(dy * dy).add_(1.0).rsqrt_()
    light = scene.light
    diffuse = scene.nuis["diffuse"]
    ambient = scene.nuis["ambient"]
    shade = dx.mul_(_col(light[:, 0])).add_(dy.mul_(_col(light[:, 1]))).add_(_col(light[:, 2]))
    shade.mul_(inv).mul_(_col(0.8 * diffuse)).add_(_col(0.2 * diffuse)).clamp_(min=0.0)
    shade.add_(inv.mul_(_col(0.45 * ambient)).add_(_col(0.55 * ambient)))
    canvas.head_shade = shade
    canvas.paint(canvas.everywhere(), canvas.head_alpha,
                 _lit(scene, rows, scene.ident["skin_rgb"]) * shade)
    covered = (canvas.head_alpha * 1e6).clamp_(max=1.0).sub_(1.0).mul_(1e6)
    canvas.depth = covered.add_(depth)


def _paint_ear(canvas: _Canvas, scene: _Scene, name: str) -> None:
    """An ear, painted where it is in front of the head (soft depth test)."""
    rows = _all(scene)
    part = scene.parts[name]
    albedo = scene.ident["skin_rgb"] * [0.98, 0.92, 0.9]
    for _, sub, win in canvas.groups(rows, _ellipse_box(part)):
        surface = _ellipsoid(win, part, sub, scene, want_depth=True)
        behind = win.gather(canvas.depth)
        test = (surface.depth - behind).mul_(_col(1.0 / (0.04 * scene.scale[sub]))).add_(0.5)
        alpha = surface.alpha.mul_(test.clamp_(0.0, 1.0))
        canvas.paint(win, alpha, _lit(scene, sub, albedo[sub]) * surface.shade)


def _unoccluded(canvas: _Canvas, win: _Window, scene: _Scene, rows: np.ndarray,
                depth: np.ndarray, tolerance: float) -> Tensor:
    """Visibility of a surface feature at per-image depth ``depth`` (pixels): hidden where
    the head surface (the nose, say) lies more than ``tolerance`` face units in front."""
    scale = scene.scale[rows]
    gap = _col(depth + tolerance * scale) - win.gather(canvas.depth)
    return gap.mul_(_col(1.0 / (0.03 * scale))).add_(0.5).clamp_(0.0, 1.0)


def _paint_eye(canvas: _Canvas, scene: _Scene, eye: np.ndarray) -> None:
    """Socket shadow, lid crease, sclera, iris, pupil, catch-light and lash lines.

    The opening lies between the lid curves v = -up (1 - s^2) and v = down (1 - s^2) that the
    landmarks were placed on; the iris and pupil are discs on the eyeball, foreshortened by
    the pose and clipped by the lids.
    """
    lm = scene.landmarks[:, eye, :2]
    frame = _Frame.between(lm[:, 0], lm[:, 3])
    up = -(frame.offset(lm[:, 1]) + frame.offset(lm[:, 2])) * (0.5 * 9.0 / 8.0)
    down = (frame.offset(lm[:, 5]) + frame.offset(lm[:, 4])) * (0.5 * 9.0 / 8.0)
    neutral_up = P._EYE_UPPER * scene.scale
    box = frame.box(np.maximum(up, 0) + 1.3 * neutral_up + 1.0,
                    np.maximum(down, 0) + 0.08 * scene.scale, 0.15 * frame.half + 0.5)
    centre3 = scene.landmarks[:, eye].sum(1) / 6.0
    gaze = np.stack([scene.nuis["gaze_x"] * 0.035, scene.nuis["gaze_y"] * 0.012 + 0.008,
                     np.zeros(len(up))], -1)
    centre = centre3[:, :2] + _apply(scene.head.linear, gaze[:, None])[:, 0, :2]
    radius = 0.066 * P.eye_scale_for_age(scene.age)
    iris_axes = np.stack([scene.head.linear[:, :2, 0], scene.head.linear[:, :2, 1]],
                         -1) * radius[:, None, None]
    facing = _facing(scene, eye)
    for _, rows, win in canvas.groups(_all(scene), box):
        scale, n_up = scene.scale[rows], neutral_up[rows]
        s, v, w = frame.take(rows).coords(win)
        skin = win.bounded(win.gather(canvas.head_alpha) * _col(facing[rows])
                           * _unoccluded(canvas, win, scene, rows, centre3[rows, 2], 0.08))
        shade = win.gather(canvas.head_shade)
        patch = win.gather(canvas.rgb)
        skin_rgb = scene.ident["skin_rgb"][rows]

        lift = (v + _col(0.35 * n_up)).mul_(_col(1.0 / (2.0 * n_up)))
        socket = (s * s).mul_(0.8).add_(lift.mul_(lift)).neg_().add_(1.0).clamp_(min=0.0)
        _blend(patch, socket.mul_(EYE_SOCKET_SHADOW).mul_(skin),
               _lit(scene, rows, skin_rgb * 0.55) * shade)
        crease = w * _col(-(np.maximum(up[rows], 0.4 * n_up) + 0.35 * n_up))
        crease_line = _line(v, crease, _col(0.012 * scale)).mul_(w.clamp(0.0, 1.0))
        _blend(patch, crease_line.mul_(0.3).mul_(skin),
               _lit(scene, rows, skin_rgb * 0.6) * shade)

        top = w * _col(-up[rows])
        bottom = w * _col(down[rows])
        opening = _band(v, top, bottom).mul_(skin)
        _blend(patch, opening,
               _lit(scene, rows, np.tile(SCLERA_RGB, (len(rows), 1))) * shade)
        iris, rho = _disc(win, centre[rows], iris_axes[rows])
        limbus = rho.mul_(3.0).sub_(2.1).clamp_(0.0, 1.0).mul_(-0.5).add_(1.0)
        _blend(patch, iris.mul_(opening),
               _lit(scene, rows, scene.ident["eye_rgb"][rows]) * (shade * limbus))
        pupil, _ = _disc(win, centre[rows], iris_axes[rows] * 0.42)
        _blend(patch, pupil.mul_(opening), _rgb(np.full((len(rows), 3), 0.03)))
        light = scene.light[rows, :2]
        axes = iris_axes[rows]
        glint_centre = centre[rows] + (axes[..., 0] * (0.3 + 0.25 * light[:, 0:1])
                                       + axes[..., 1] * (-0.3 + 0.25 * light[:, 1:2]))
        glint, _ = _disc(win, glint_centre, axes * 0.22)
        _blend(patch, glint.mul_(opening).mul_(0.8), _rgb(np.full((len(rows), 3), 0.97)))

        taper = (w * 3.0).clamp_(0.0, 1.0)
        lashes = _line(v, top, _col(0.02 * scale - 0.2)).mul_(0.9)
        lashes = torch.maximum(lashes, _line(v, bottom, _col(0.01 * scale - 0.25)).mul_(0.3))
        _blend(patch, lashes.mul_(taper).mul_(skin),
               _rgb(np.tile([0.07, 0.05, 0.04], (len(rows), 1))))
        win.scatter(canvas.rgb, patch)


def _paint_brow(canvas: _Canvas, scene: _Scene, brow: np.ndarray, inner_at_end: bool) -> None:
    """A tapered band along the arch v = arch (1 - s^2) through the five brow landmarks."""
    lm = scene.landmarks[:, brow, :2]
    frame = _Frame.between(lm[:, 0], lm[:, 4])
    arch = frame.offset(lm[:, 2])
    thickness = scene.ident["brow_thickness"] * scene.scale
    box = frame.box(np.maximum(-arch, 0) + thickness, np.maximum(arch, 0) + thickness,
                    0.1 * frame.half + thickness)
    facing = _facing(scene, brow) * 0.9
    depth = scene.landmarks[:, brow, 2].sum(1) / 5.0
    for _, rows, win in canvas.groups(_all(scene), box):
        s, v, w = frame.take(rows).coords(win)
        inner = s if inner_at_end else -s
        taper = (1.06 - s.abs()).mul_(5.0).clamp_(0.0, 1.0)
        half = (inner * 0.35 + 1.0).mul_(taper).mul_(_col(thickness[rows] * 0.5))
        alpha = _line(v, w * _col(arch[rows]), half).mul_(half.clamp(max=1.0))
        skin = (win.gather(canvas.head_alpha) * _col(facing[rows])
                * _unoccluded(canvas, win, scene, rows, depth[rows], 0.1))
        canvas.paint(win, alpha.mul_(skin), _lit(scene, rows, scene.ident["brow_rgb"][rows])
                     * win.gather(canvas.head_shade))


def _paint_mouth(canvas: _Canvas, scene: _Scene) -> None:
    """Lips between the curves through points 51, 62, 66 and 57; teeth and a dark gap when
    open; the line between the lips when closed."""
    lm = scene.landmarks[:, :, :2]
    frame = _Frame.between(lm[:, P.MOUTH_LEFT], lm[:, P.MOUTH_RIGHT])
    heights = np.stack([frame.offset(lm[:, k]) for k in (51, 62, 66, 57)], -1)
    box = frame.box(np.maximum(-heights[:, 0], 0) + 1.0, np.maximum(heights[:, 3], 0) + 1.0,
                    0.05 * frame.half + 0.5)
    mouth = np.arange(48, 68)
    facing = _facing(scene, mouth)
    depth = scene.landmarks[:, mouth, 2].sum(1) / 20.0
    for _, rows, win in canvas.groups(_all(scene), box):
        s, v, w = frame.take(rows).coords(win)
        skin = win.bounded(win.gather(canvas.head_alpha) * _col(facing[rows])
                           * _unoccluded(canvas, win, scene, rows, depth[rows], 0.12))
        shade = win.gather(canvas.head_shade)
        patch = win.gather(canvas.rgb)
        lip = scene.ident["lip_rgb"][rows]
        t, it, ib, b = (w * _col(heights[rows, k]) for k in range(4))
        _blend(patch, _band(v, t, it).mul_(skin).mul_(0.9),
               _lit(scene, rows, lip * 0.82) * shade)
        _blend(patch, _band(v, ib, b).mul_(skin).mul_(0.9), _lit(scene, rows, lip) * shade)
        _blend(patch, _band(v, it, ib).mul_(skin),
               _rgb(np.tile([0.16, 0.05, 0.05], (len(rows), 1))) * shade)
        teeth = _band(v, it, it + (ib - it).mul_(0.4)).mul_(skin).mul_((w * 2.0).clamp_(0, 1))
        _blend(patch, teeth,
               _lit(scene, rows, np.tile([0.86, 0.83, 0.76], (len(rows), 1))) * shade)
        line = _line(v, (it + ib).mul_(0.5), 0.1).mul_((w * 4.0).clamp_(0, 1)).mul_(skin)
        _blend(patch, line.mul_(0.55), _lit(scene, rows, lip * 0.35) * shade)
        win.scatter(canvas.rgb, patch)


def _paint_nostrils(canvas: _Canvas, scene: _Scene) -> None:
    """Dark discs under the nose tip, on a plane tilted forwards (more visible looking up)."""
    rows = _all(scene)
    lm = scene.landmarks
    linear = scene.head.linear
    along = linear[:, :2, 0] * 0.042
    tilt = (linear[:, :2, 1] * -0.6 + linear[:, :2, 2] * 0.8) * 0.022
    axes = np.stack([along, tilt], -1)
    facing = np.clip((scene.normals[:, 33, 2] + 0.1) * 3.0, 0.0, 1.0)
    for side in (32, 34):
        centre = lm[:, side, :2] * 0.75 + lm[:, 33, :2] * 0.25 - linear[:, :2, 1] * 0.012
        win = canvas.window(rows, _disc_box(centre, axes))
        alpha, _ = _disc(win, centre, axes)
        alpha.mul_(_unoccluded(canvas, win, scene, rows, lm[:, 33, 2], 0.15))
        canvas.paint(win, alpha.mul_(_col(0.75 * facing)),
                     _lit(scene, rows, scene.ident["skin_rgb"] * 0.25)
                     * win.gather(canvas.head_shade))


def _paint_marks(canvas: _Canvas, scene: _Scene) -> None:
    """Moles and freckles: discs lying on the skin at the identity's fixed positions.

    Each mole is its own layer; the freckles of an image share one window and layer (their
    coverages combine by maximum), which keeps the number of layers small.
    """
    groups = [(np.array([k]), np.array([0.24, 0.14, 0.10]), 0.9) for k in range(P.MAX_MOLES)]
    groups.append((np.arange(P.MAX_MOLES, scene.marks.shape[1]), None, 0.6))
    for marks, albedo, strength in groups:
        visible = scene.mark_facing[:, marks] > 0.0
        rows = np.flatnonzero(visible.any(1))
        if len(rows) == 0:
            continue
        centres = scene.marks[rows][:, marks]
        axes = scene.mark_axes[rows][:, marks]
        boxes = np.stack([_disc_box(centres[:, j, :2], axes[:, j]) for j in range(len(marks))], 1)
        boxes = np.where(visible[rows][..., None], boxes, [np.inf, np.inf, -np.inf, -np.inf])
        win = canvas.window(rows, np.concatenate([boxes[..., :2].min(1), boxes[..., 2:].max(1)],
                                                 -1))
        alpha = None
        for j in range(len(marks)):
            disc, _ = _disc(win, centres[:, j, :2], axes[:, j])
            disc.mul_(_col(scene.mark_facing[rows, marks[j]]))
            disc.mul_(_unoccluded(canvas, win, scene, rows, centres[:, j, 2], 0.06))
            alpha = disc if alpha is None else torch.maximum(alpha, disc)
        colour = (np.tile(albedo, (len(rows), 1)) if albedo is not None
                  else scene.ident["skin_rgb"][rows] * [0.72, 0.6, 0.5])
        canvas.paint(win, alpha.mul_(strength).mul_(win.gather(canvas.head_alpha)),
                     _lit(scene, rows, colour) * win.gather(canvas.head_shade))


def _paint_wrinkles(canvas: _Canvas, scene: _Scene) -> None:
    """Nasolabial folds (with age and when smiling) and forehead lines (with age)."""
    fold = np.maximum(np.clip((scene.age - 35.0) / 40.0, 0, 1), 0.6 * scene.nuis["smile"])
    lines = np.clip((scene.age - 52.0) / 30.0, 0, 1)
    lm = scene.landmarks
    head = scene.head
    width = 0.014 * scene.scale
    segments = []
    rows = np.flatnonzero(fold > 0.05)
    for ala, corner, sign in ((31, 48, -1.0), (35, 54, 1.0)):
        a = lm[rows, ala, :2] + head.linear[rows, :2, 0] * (0.06 * sign)
        b = (lm[rows, corner, :2] + head.linear[rows, :2, 0] * (0.07 * sign)
             + head.linear[rows, :2, 1] * 0.05)
        facing = _facing(scene, np.array([ala, corner]))[rows]
        segments.append((rows, a, b, fold[rows] * 0.35 * facing))
    rows = np.flatnonzero(lines > 0.05)
    ends = head.points(np.broadcast_to(np.array([[-0.3, -0.43, 0.78], [0.3, -0.43, 0.78],
                                                 [-0.3, -0.52, 0.76], [0.3, -0.52, 0.76]]),
                                       (len(scene.scale), 4, 3)))
    facing = _facing(scene, np.array([19, 24]))[rows]
    for k in (0, 2):
        segments.append((rows, ends[rows, k, :2], ends[rows, k + 1, :2],
                         lines[rows] * 0.3 * facing))
    for rows, a, b, strength in segments:
        if len(rows) == 0:
            continue
        win = canvas.window(rows, _capsule_box(a, b, width[rows]))
        alpha, h = _capsule(win, a, b, width[rows])
        alpha.mul_(h * (1.0 - h)).mul_(_col(4.0 * strength)).mul_(win.gather(canvas.head_alpha))
        canvas.paint(win, alpha, _lit(scene, rows, scene.ident["skin_rgb"][rows] * 0.55)
                     * win.gather(canvas.head_shade))


def _paint_facial_hair(canvas: _Canvas, scene: _Scene) -> None:
    """Stubble, moustache, goatee or full beard: regions of the jaw in face coordinates."""
    kind = scene.ident["facial_hair"]
    rows = np.flatnonzero((kind > 0) & (scene.age >= 16.0))
    if len(rows) == 0:
        return
    win = canvas.window(rows, _ellipse_box(scene.parts["jaw"], rows))
    x, y = _face_coordinates(scene, rows, win, win.gather(canvas.depth), axes=(0, 1))
    soft = 1.0 / 0.04
    k = kind[rows]
    x2 = x * x
    beard = (y - _col(np.where(k == 4, 0.70, 0.76))).add_(x2 * 0.85).mul_(soft)
    goatee = torch.minimum((0.24 - x.abs()).mul_(soft), (y - 0.86).mul_(soft))
    moustache = torch.minimum((y - 0.57 - x2 * 0.5).mul_(soft),
                              (0.765 + x2 * 0.3 - y).mul_(soft))
    moustache = torch.minimum(moustache, (0.33 - x.abs()).mul_(soft))
    lx, ly = x * (1 / 0.30), (y - 0.815).mul_(1 / 0.085)
    lips = lx.mul_(lx).add_(ly.mul_(ly)).sub_(1.0).mul_(4.0)
    # Full beard and goatee leave the lips free; stubble covers the beard area thinly.
    region = torch.where(_col(k) == 2, moustache, torch.where(
        _col(k) == 3, torch.maximum(torch.minimum(goatee, lips), moustache),
        torch.where(_col(k) == 4, torch.maximum(torch.minimum(beard, lips), moustache),
                    beard)))
    region = region.add_(0.5).clamp_(0.0, 1.0)
    density = scene.ident["facial_hair_density"][rows] * np.where(k == 1, 0.35, 0.85)
    alpha = region.mul_(_col(density)).mul_(win.gather(canvas.head_alpha))
    colour = _hair_colour(scene, rows, win.gather(canvas.head_shade).clone(), x * 3.0, y)
    canvas.paint(win, alpha, colour)


def _paint_glasses(canvas: _Canvas, scene: _Scene) -> None:
    """Two lenses (tinted for sunglasses) with rims, a bridge and temples to the ears.

    Every piece is depth-tested against the face so that the far side hides behind it.
    """
    kind = scene.nuis["glasses"]
    rows = np.flatnonzero(kind > 0)
    if len(rows) == 0:
        return
    head = scene.head
    linear = head.linear[rows]
    scale = scene.scale[rows]
    axes = np.stack([linear[:, :2, 0] * 0.20, linear[:, :2, 1] * 0.15], -1)
    rim = 0.016 * scale + 0.4
    frame_colour = _lit(scene, rows, scene.nuis["glasses_rgb"][rows])
    sun = kind[rows] == 2
    tint = _col(np.where(sun, 0.85, 0.12))
    tint_colour = _rgb(np.where(sun[:, None], [[0.06, 0.06, 0.07]], [[0.75, 0.8, 0.85]]))
    normal = linear[:, :, 2]
    nz = np.where(np.abs(normal[:, 2]) > 1e-6, normal[:, 2], 1e-6)
    seen = _col(normal[:, 2] > 0.05)
    softness = _col(1.0 / (0.02 * scale))

    def in_front(win: _Window, depth: Tensor) -> Tensor:
        return (depth - win.gather(canvas.depth)).mul_(softness).add_(0.5).clamp_(0.0, 1.0)

    def offset(vector: list[float]) -> np.ndarray:
        return _apply(linear, np.broadcast_to(np.array(vector), (len(rows), 1, 3)))[:, 0]

    lens_centres = {}
    for eye, side in ((P.RIGHT_EYE, -1.0), (P.LEFT_EYE, 1.0)):
        centre = scene.landmarks[rows][:, eye].sum(1) / 6.0 + offset([0.02 * side, 0.02, 0.12])
        lens_centres[side] = centre
        win = canvas.window(rows, _disc_box(centre[:, :2], axes, margin=rim + 2.0))
        fill, rho = _disc(win, centre[:, :2], axes)
        radius_px = np.minimum(np.hypot(axes[:, 0, 0], axes[:, 1, 0]),
                               np.hypot(axes[:, 0, 1], axes[:, 1, 1]))
        ring = (_col(rim) - (rho - 1.0).abs_().mul_(_col(radius_px))).clamp_(0.0, 1.0)
        # The lens plane turns with the head: its depth is linear in X and Y.
        X = win.gx - _col(centre[:, 0])
        Y = win.gy - _col(centre[:, 1])
        depth = _col(centre[:, 2]) - (X * _col(normal[:, 0] / nz) + Y * _col(normal[:, 1] / nz))
        front = in_front(win, depth).mul_(seen)
        canvas.paint(win, fill.mul_(tint).mul_(front), tint_colour)
        canvas.paint(win, ring.mul_(front), frame_colour)
    pieces = [(lens_centres[-1.0] + offset([0.17, -0.03, 0.0]),
               lens_centres[1.0] + offset([-0.17, -0.03, 0.0]))]
    for side in (-1.0, 1.0):
        ear = head.points(np.broadcast_to(np.array([[0.86 * side, 0.05, -0.25]]),
                                          (len(scene.scale), 1, 3)))[rows, 0]
        pieces.append((lens_centres[side] + offset([0.2 * side, -0.02, 0.0]), ear))
    for a, b in pieces:
        width = rim * 0.8
        win = canvas.window(rows, _capsule_box(a[:, :2], b[:, :2], width))
        alpha, h = _capsule(win, a[:, :2], b[:, :2], width)
        depth = h.mul_(_col(b[:, 2] - a[:, 2])).add_(_col(a[:, 2]))
        canvas.paint(win, alpha.mul_(in_front(win, depth)), frame_colour)


def _paint_scarf(canvas: _Canvas, scene: _Scene) -> None:
    """A striped scarf around the neck and over the chin, up to a per-image height."""
    rows = np.flatnonzero(scene.nuis["scarf"] > 0)
    if len(rows) == 0:
        return
    colour_rgb = scene.nuis["scarf_rgb"][rows]
    for name, grow in (("neck", 1.25), ("jaw", 1.07)):
        part = scene.parts[name]
        shell = P.Ellipsoids(part.centre, part.q / (grow * grow))
        win = canvas.window(rows, _ellipse_box(shell, rows))
        surface = _ellipsoid(win, shell, rows, scene, want_depth=True)
        x, y = _face_coordinates(scene, rows, win, surface.depth, axes=(0, 1))
        top = scene.nuis["scarf_top"][rows] if name == "jaw" else np.full(len(rows), 0.9)
        region = (y - _col(top)).mul_(25.0).add_(0.5).clamp_(0.0, 1.0)
        stripes = (_triangle_wave(y * 4.0 + x * 1.5) > 0.5).to(torch.float32).mul_(0.3).add_(
            0.85)
        canvas.paint(win, surface.alpha.mul_(region),
                     _lit(scene, rows, colour_rgb) * surface.shade.mul_(stripes))


def _paint_hand(canvas: _Canvas, scene: _Scene) -> None:
    """A raised hand in front of the face: palm disc, four fingers and a thumb."""
    rows = np.flatnonzero(scene.nuis["hand"] > 0)
    if len(rows) == 0:
        return
    pose = scene.nuis["hand_pose"][rows]
    points = np.zeros((len(scene.scale), 1, 3))
    points[rows, 0] = np.stack([pose[:, 0], pose[:, 1], np.full(len(rows), 1.2)], -1)
    centre = scene.head.points(points)[rows, 0, :2]
    size = pose[:, 3] * scene.scale[rows]
    angle = pose[:, 2] * 2.0 * math.pi
    along = np.stack([[math.cos(a) for a in angle], [math.sin(a) for a in angle]], -1)
    across = np.stack([-along[:, 1], along[:, 0]], -1)
    skin = _lit(scene, rows, scene.ident["skin_rgb"][rows] * 0.97)
    light = scene.light[rows]
    flat = _col(scene.nuis["ambient"][rows] + scene.nuis["diffuse"][rows] * np.clip(
        light[:, 2] * 0.8 + 0.2, 0, None))
    palm_axes = np.stack([along * (0.30 * size)[:, None], across * (0.24 * size)[:, None]], -1)
    win = canvas.window(rows, _disc_box(centre, palm_axes))
    alpha, rho = _disc(win, centre, palm_axes)
    canvas.paint(win, alpha, skin * flat * (1.05 - 0.2 * rho * rho))
    radius = 0.065 * size
    fingers = []
    for finger in range(4):
        base = centre + along * (0.22 * size)[:, None] + across * ((finger - 1.5) * 0.13
                                                                     * size)[:, None]
        length = (0.42 - 0.06 * abs(finger - 1.3)) * size
        fingers.append((base, base + along * length[:, None]))
    thumb = centre + across * (0.2 * size)[:, None]
    fingers.append((thumb, thumb + (across * 0.8 + along * 0.6) * (0.3 * size)[:, None]))
    for a, b in fingers:
        win = canvas.window(rows, _capsule_box(a, b, radius))
        alpha, _ = _capsule(win, a, b, radius)
        canvas.paint(win, alpha, skin * flat * 0.95)
        # A thin darker outline keeps neighbouring fingers apart.
        canvas.paint(win, alpha * (1.0 - alpha) * 1.5, skin * flat * 0.55)


# ----------------------------------------------------------------------------------------------
# Post-processing: blur, noise, block compression
# ----------------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=1)
def _noise_table() -> Tensor:
    """A fixed table of Gaussian noise; each image reads it at its own offset."""
    rng = np.random.default_rng(NOISE_TABLE_SEED)
    table = rng.standard_normal((3, NOISE_TABLE_SIZE, NOISE_TABLE_SIZE), dtype=np.float32)
    return torch.from_numpy(table)


def _blur(rgb: Tensor, sigma: np.ndarray) -> Tensor:
    """Separable Gaussian blur with per-image sigma (pixels), replicate borders.

    Each image's taps beyond ceil(2 sigma) have weight exactly 0, and taps are accumulated
    from the centre outwards, so the batch's largest radius never changes an image's result.
    """
    radius = np.ceil(2.0 * sigma).astype(np.int64)
    reach = int(radius.max(initial=0))
    weights = np.zeros((len(sigma), reach + 1))
    for i, (s, r) in enumerate(zip(sigma, radius)):
        taps = [1.0] + [math.exp(-(k * k) / (2.0 * s * s)) if k <= r else 0.0
                        for k in range(1, reach + 1)]
        total = taps[0]
        for tap in taps[1:]:
            total += 2.0 * tap
        weights[i] = np.array(taps) / total
    taps = [_col(weights[:, k]) for k in range(reach + 1)]
    for dim in (3, 2):
        size = rgb.shape[dim]
        padded = _replicate_pad(rgb, dim, reach, reach)
        acc = padded.narrow(dim, reach, size) * taps[0]
        for k in range(1, reach + 1):
            pair = padded.narrow(dim, reach - k, size) + padded.narrow(dim, reach + k, size)
            acc.add_(pair.mul_(taps[k]))
        rgb = acc
    return rgb


def _compress(rgb: Tensor, step: np.ndarray) -> Tensor:
    """Cheap JPEG-like loss: each 8x8 block keeps its mean and a quantised residual."""
    b, c, h, w = rgb.shape
    block = COMPRESSION_BLOCK
    ph, pw = -h % block, -w % block
    padded = _replicate_pad(_replicate_pad(rgb, 3, 0, pw), 2, 0, ph)
    hb, wb = (h + ph) // block, (w + pw) // block
    blocks = padded.reshape(b, c, hb, block, wb, block)
    rows = blocks[..., 0].clone()
    for k in range(1, block):
        rows.add_(blocks[..., k])
    total = rows[:, :, :, 0].clone()
    for k in range(1, block):
        total.add_(rows[:, :, :, k])
    mean = total.mul_(1.0 / (block * block))[:, :, :, None, :, None]
    q = _col(step)[..., None, None]
    quantised = torch.round((blocks - mean).div_(q)).mul_(q).add_(mean)
    return quantised.reshape(b, c, h + ph, w + pw)[:, :, :h, :w]


def _subset_apply(rgb: Tensor, rows: np.ndarray, step) -> Tensor:
    """Apply ``step(images, rows)`` to some images, in place on the batch when it is all of it.

    Working on every image skips a gather and a scatter; it is only used for steps that
    leave an image exactly unchanged when its own parameter is zero.
    """
    if len(rows) == len(rgb):
        return step(rgb, rows)
    index = torch.from_numpy(rows)
    rgb[index] = step(rgb.index_select(0, index), rows)
    return rgb


LUMA = np.array([0.299, 0.587, 0.114])


def camera_matrix(camera: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The camera's colour processing as ``rgb' = M rgb + o`` per image: white balance (red and
    blue gains), then saturation about the luma (Rec. 601 weights), then contrast about mid
    grey. ``camera`` is (B, 4): saturation, contrast, red gain, blue gain."""
    saturation, contrast, red, blue = (camera[:, k] for k in range(4))
    balance = np.zeros((len(camera), 3, 3))
    balance[:, 0, 0], balance[:, 1, 1], balance[:, 2, 2] = red, 1.0, blue
    grey = np.broadcast_to(np.tile(LUMA, (3, 1)), (len(camera), 3, 3))
    saturate = saturation[:, None, None] * np.eye(3) + (1.0 - saturation)[:, None, None] * grey
    matrix = contrast[:, None, None] * P.matmul3(saturate, balance)
    return matrix, np.repeat((0.5 * (1.0 - contrast))[:, None], 3, 1)


def _camera_colour(rgb: Tensor, camera: np.ndarray) -> Tensor:
    """Apply :func:`camera_matrix` with exactly rounded products and sums."""
    matrix, offset = camera_matrix(camera)
    out = torch.empty_like(rgb)
    for k in range(3):
        out[:, k] = (((rgb[:, 0] * _col(matrix[:, k, 0])[:, 0] + rgb[:, 1]
                       * _col(matrix[:, k, 1])[:, 0]) + rgb[:, 2] * _col(matrix[:, k, 2])[:, 0])
                     + _col(offset[:, k])[:, 0])
    return out


def _post_process(canvas: _Canvas, scene: _Scene) -> Tensor:
    """Blur, sensor noise, the camera's colour processing and block compression, then
    quantisation to uint8.

    Runs on slices of ``POST_BATCH`` images: these steps make several full-size temporaries,
    which stay in cache (and in the allocator's free lists) when they are small.
    """
    return torch.cat([_post_process_rows(canvas.rgb[k:k + POST_BATCH],
                                         {key: value[k:k + POST_BATCH]
                                          for key, value in scene.nuis.items()},
                                         scene.resolution)
                      for k in range(0, len(scene.scale), POST_BATCH)])


def _post_process_rows(rgb: Tensor, nuis: dict[str, np.ndarray], size: int) -> Tensor:
    # Blur below a third of a pixel is skipped; a zero sigma leaves an image unchanged.
    sigma = nuis["blur"] * (size / 64.0)
    sigma = np.where(sigma > 0.3, sigma, 0.0)
    blurred = np.flatnonzero(sigma > 0)
    if len(blurred):
        rows = np.arange(len(sigma)) if 2 * len(blurred) > len(sigma) else blurred
        rgb = _subset_apply(rgb, rows, lambda x, r: _blur(x, sigma[r]))
    noisy = np.flatnonzero(nuis["noise"] > 0)
    if len(noisy):
        table = _noise_table()
        span = NOISE_TABLE_SIZE - size
        offsets = nuis["noise_offset"] % span

        def add_noise(x: Tensor, r: np.ndarray) -> Tensor:
            noise = torch.stack([table[:, oy:oy + size, ox:ox + size] for ox, oy in offsets[r]])
            return x.add_(noise.mul_(_col(nuis["noise"][r])))

        rgb = _subset_apply(rgb, noisy, add_noise)
    rgb = _camera_colour(rgb, nuis["camera"])
    compressed = np.flatnonzero(nuis["compression_step"] > 0)
    if len(compressed):
        rgb = _subset_apply(rgb, compressed,
                            lambda x, r: _compress(x, nuis["compression_step"][r]))
    return rgb.clamp_(0.0, 1.0).mul_(255.0).round_().to(torch.uint8)


# ----------------------------------------------------------------------------------------------
# Entry point
# ----------------------------------------------------------------------------------------------

def _rasterise(scene: _Scene) -> Tensor:
    canvas = _Canvas(len(scene.scale), scene.resolution)
    everyone = _all(scene)
    skin = scene.ident["skin_rgb"]
    _paint_background(canvas, scene)
    _paint_part(canvas, scene, "torso", everyone, scene.nuis["clothing_rgb"])
    _paint_curtain(canvas, scene)
    _paint_part(canvas, scene, "neck", everyone, skin * 0.92, ambient_scale=0.8)
    hair = _HairShell(canvas, scene)
    hair.paint(canvas, scene, front=False)
    _paint_head(canvas, scene)
    for ear in ("ear_right", "ear_left"):
        _paint_ear(canvas, scene, ear)
    _paint_wrinkles(canvas, scene)
    _paint_marks(canvas, scene)
    _paint_brow(canvas, scene, P.RIGHT_BROW, inner_at_end=True)
    _paint_brow(canvas, scene, P.LEFT_BROW, inner_at_end=False)
    _paint_eye(canvas, scene, P.RIGHT_EYE)
    _paint_eye(canvas, scene, P.LEFT_EYE)
    _paint_mouth(canvas, scene)
    _paint_facial_hair(canvas, scene)
    _paint_nostrils(canvas, scene)
    hair.paint(canvas, scene, front=True)
    _paint_glasses(canvas, scene)
    _paint_scarf(canvas, scene)
    _paint_hand(canvas, scene)
    return _post_process(canvas, scene)


def _render_chunk(identities: list[P.IdentityParams], nuisances: list[P.NuisanceParams],
                  resolution: int, aligned: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    scene = build_scene(identities, nuisances, resolution, aligned)
    return _rasterise(scene).numpy(), scene.landmarks[..., :2], scene.visible


def _render_job(job: tuple) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return _render_chunk(*job)


def _single_threaded_worker() -> None:
    torch.set_num_threads(1)


def _new_pool(workers: int) -> Executor:
    """Worker processes forked from this one where possible, else threads.

    Most raster kernels are small, so the time PyTorch spends dispatching them (holding the
    GIL) caps two threads at about 1.1x one thread, while two processes reach about 1.9x.
    Forked workers start in milliseconds and inherit the imported modules; each runs
    single-threaded PyTorch kernels, like a DataLoader worker. Threads remain where ``fork``
    does not exist or is unsafe (Windows, macOS) and inside daemonic processes (DataLoader
    workers), which may not have children.
    """
    if sys.platform.startswith("linux") and not multiprocessing.current_process().daemon:
        return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"),
                                   initializer=_single_threaded_worker)
    return ThreadPoolExecutor(workers)


_kept_pool: tuple[int, Executor] | None = None


@contextmanager
def kept_workers(workers: int | None = None) -> Iterator[None]:
    """Keep one pool of render workers alive for every :func:`render` call in the block.

    A fresh forked worker pays a copy-on-write page fault for each page of the parent it
    writes to; reusing the workers across calls (as a dataset build does) pays it once.
    Nested blocks share the outer pool. ``workers`` defaults to ``torch.get_num_threads()``.
    """
    global _kept_pool
    if _kept_pool is not None:
        yield
        return
    count = int(workers or torch.get_num_threads())
    if count < 2:
        yield
        return
    with _new_pool(count) as pool:
        _kept_pool = (count, pool)
        try:
            yield
        finally:
            _kept_pool = None


def _pool_for(workers: int):
    """The kept pool when it has as many workers, else a pool for this call only."""
    if _kept_pool is not None and _kept_pool[0] == workers:
        return nullcontext(_kept_pool[1])
    return _new_pool(workers)


def default_chunk_size(resolution: int) -> int:
    """Samples rasterised together: about a million pixels (16 to 256 images)."""
    return int(np.clip((1 << 20) // (resolution * resolution), 16, 256))


def render(identities: list[P.IdentityParams], nuisances: list[P.NuisanceParams],
           resolution: int, aligned: bool = True, chunk_size: int | None = None
           ) -> RenderOutput:
    """Render one image per (identity, nuisance) pair.

    Chunks of samples are rasterised by ``torch.get_num_threads()`` workers (see
    :func:`_new_pool`; reused inside :func:`kept_workers`), each running single-threaded
    PyTorch kernels; the thread setting is restored on return. Neither the chunking nor the
    workers change any pixel.

    Args:
        identities: identity parameters, one per sample (repeats allowed).
        nuisances: nuisance parameters, one per sample.
        resolution: square image size in pixels, 16 to 128.
        aligned: map the five landmarks onto the ArcFace template (True) or frame the head
            with the nuisance's scale and shift jitter (False).
        chunk_size: samples rasterised together (default: :func:`default_chunk_size`).

    Returns:
        A :class:`RenderOutput`.
    """
    resolution = check_resolution(resolution)
    if len(identities) != len(nuisances):
        raise ConfigError(
            f"render needs one identity per nuisance, got {len(identities)} identities and "
            f"{len(nuisances)} nuisances"
        )
    count = len(nuisances)
    if count == 0:
        empty = torch.zeros(0, 3, resolution, resolution, dtype=torch.uint8)
        return RenderOutput(empty, torch.zeros(0, 68, 2), torch.zeros(0, 68, dtype=torch.bool),
                            torch.zeros(0, 5, 2))
    threads = torch.get_num_threads()
    chunk = max(int(chunk_size or default_chunk_size(resolution)), 1)
    # Give every worker a share when there is enough work to split.
    chunk = min(chunk, max(-(-count // threads), 16))
    starts = range(0, count, chunk)
    jobs = [(identities[k:k + chunk], nuisances[k:k + chunk], resolution, aligned)
            for k in starts]
    workers = min(threads, len(jobs))
    if workers == 1:
        results = [_render_job(job) for job in jobs]
    else:
        torch.set_num_threads(1)
        try:
            with _pool_for(workers) as pool:
                results = list(pool.map(_render_job, jobs))
        finally:
            torch.set_num_threads(threads)
    landmarks = np.concatenate([r[1] for r in results])
    return RenderOutput(
        images=torch.from_numpy(np.concatenate([r[0] for r in results])),
        landmarks68=torch.from_numpy(landmarks.astype(np.float32)),
        visible68=torch.from_numpy(np.concatenate([r[2] for r in results])),
        landmarks5=torch.from_numpy(_five_points(landmarks).astype(np.float32)),
    )
