"""SynthFace parameters: who a face is (identity) and how one photo of it was taken (nuisance).

No pixels here: this module samples parameters and builds the 3-D face model that
:mod:`fkdlib.data.synthface.render` photographs.

Identity versus nuisance
------------------------
* **Identity** parameters are fixed per global identity id: head and jaw shape, brow ridge,
  cheekbones and chin, a 68-point 3-D landmark geometry (a mean iBUG-68 template plus smooth
  identity deformations), skin tone (5 levels), natural hair colour/style/volume/fringe,
  eyebrows, eye colour, facial hair, lip colour, identity marks (moles, freckles at fixed
  surface positions), base age (and its age group) and gender presentation. They are a pure
  function of ``(seed, global_identity)``. The mean head has real faces' proportions against
  the eyes (jaw contour about 2.1 eye distances wide, chin about 1.6 below the eye line).
* **Nuisance** parameters change per image: yaw / pitch / roll, expression (smile, open mouth,
  closed eyes), gaze, light direction, colour and strength, background, clothing, occlusions
  (glasses, sunglasses, scarf, hand), a change of haircut and hair colour (the difficulty's
  ``p_restyle``: hair is a nuisance, so a model cannot recognise people by hair alone), the
  camera (exposure for the face; white balance, saturation and contrast), blur, noise, block
  compression, age drift (years) and the framing jitter used for unaligned crops. They are a
  pure function of
  ``(seed, split, global_identity, index)``; the difficulty preset only maps the same uniform
  draws to wider or narrower ranges, so one sample at ``"easy"`` and ``"hard"`` is the same
  photo with milder or stronger nuisances.

Variants
--------
:data:`VARIANTS` are renderer ablations that switch one cue off - hair fixed per identity,
identity geometry halved, directional shading off - to measure what carries identity from
SynthFace to real faces (``benchmarks/synthface_transfer.py``).

Determinism
-----------
Every sample owns its generators: ``np.random.default_rng([seed, stream, ...])`` hashes the
tuple through a :class:`numpy.random.SeedSequence`, so no state is shared between samples and
the order in which samples are drawn never matters. The identity and nuisance streams carry
distinct tags (pixel noise is read from a fixed table at offsets drawn in the nuisance
stream). Each stream draws a fixed number of values in a fixed order (the ``_*_DRAWS``
layouts below), so the attributes the metadata needs (base age, gender, skin tone; pose and
age drift) are the first values of their streams and are drawn without sampling the rest.

The vectorised face model below uses only exactly rounded arithmetic (``+ - * /`` and
``sqrt``) on batched arrays, and Python's scalar ``math`` for the few trigonometric values, so
a sample's geometry is bit-identical whether it is computed alone or inside any batch.

Conventions
-----------
Face coordinates: x towards the image right (the subject's left) in a frontal view, y down,
z towards the camera; the unit is about half the head width; the eye line is at y = 0.
Angles in degrees: yaw > 0 turns the nose towards the image right, pitch > 0 raises the chin
(the face looks up), roll > 0 turns the face clockwise in the image.
Attribute bins: ``pitch_bin`` / ``yaw_bin`` = 0 for angle < -30, 1 for angle > 30, 2 otherwise.
``age_group`` = 0 for ages below 20, 1 for 20-49, 2 for 50 and above; it is the group of the
image's age (base age plus drift), so it is what the rendered face shows.
``cohort = (((age_group * 2 + gender) * 5 + skin_tone) * 3 + pitch_bin) * 3 + yaw_bin`` in
[0, 270), the 3*2*5*3*3 attribute cohorts of CondFace (thesis ch. 5). ``gender`` 0 presents as
female, 1 as male. ``skin_tone`` 0 is the lightest of five levels, 4 the darkest.
"""

from __future__ import annotations

import colorsys
import math
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from ...errors import ConfigError

# Bump when sampling changes what a (seed, identity, index) key produces.
PARAMS_VERSION = 3

SPLITS: tuple[str, ...] = ("train", "val", "test")
SPLIT_CODES: dict[str, int] = {"train": 0, "val": 1, "test": 2}
SPLIT_IDENTITY_BASE: dict[str, int] = {"train": 0, "val": 1_000_000, "test": 2_000_000}
IDENTITIES_PER_SPLIT = 1_000_000

# Stream tags: each kind of randomness has its own generator family.
IDENTITY_STREAM = 101
NUISANCE_STREAM = 202

NUM_COHORTS = 3 * 2 * 5 * 3 * 3
AGE_GROUP_EDGES = (20.0, 50.0)
POSE_BIN_EDGE = 30.0
BASE_AGE_RANGES = ((8.0, 19.0), (20.0, 49.0), (50.0, 85.0))
MIN_AGE, MAX_AGE = 5.0, 95.0

MAX_MOLES = 3
NUM_FRECKLES = 14

# Albedos (linear-ish RGB in [0, 1]) of the five skin-tone levels, lightest first.
SKIN_TONES = np.array([
    [0.96, 0.81, 0.70],
    [0.89, 0.69, 0.54],
    [0.76, 0.55, 0.39],
    [0.60, 0.41, 0.27],
    [0.43, 0.29, 0.19],
])
HAIR_COLOURS = np.array([
    [0.05, 0.04, 0.04],  # black
    [0.16, 0.10, 0.06],  # dark brown
    [0.34, 0.21, 0.11],  # brown
    [0.55, 0.38, 0.21],  # light brown
    [0.80, 0.64, 0.38],  # blonde
    [0.56, 0.22, 0.09],  # auburn / red
])
# Probability of each hair colour given the skin tone (rows: tones).
HAIR_COLOUR_WEIGHTS = np.array([
    [0.10, 0.20, 0.22, 0.18, 0.20, 0.10],
    [0.20, 0.28, 0.22, 0.13, 0.11, 0.06],
    [0.45, 0.32, 0.15, 0.05, 0.02, 0.01],
    [0.65, 0.28, 0.07, 0.00, 0.00, 0.00],
    [0.80, 0.18, 0.02, 0.00, 0.00, 0.00],
])
EYE_COLOURS = np.array([
    [0.20, 0.11, 0.05],  # dark brown
    [0.38, 0.22, 0.10],  # brown
    [0.42, 0.37, 0.16],  # hazel
    [0.26, 0.44, 0.24],  # green
    [0.27, 0.47, 0.72],  # blue
    [0.48, 0.54, 0.60],  # grey
])
EYE_COLOUR_WEIGHTS = np.array([
    [0.12, 0.18, 0.15, 0.15, 0.28, 0.12],
    [0.25, 0.25, 0.15, 0.10, 0.17, 0.08],
    [0.55, 0.30, 0.10, 0.03, 0.01, 0.01],
    [0.75, 0.23, 0.02, 0.00, 0.00, 0.00],
    [0.85, 0.15, 0.00, 0.00, 0.00, 0.00],
])

HAIR_STYLES = ("shaved", "short", "medium", "long", "receding")
HAIR_STYLE_WEIGHTS = {  # by gender presentation: 0 female, 1 male
    0: np.array([0.02, 0.18, 0.35, 0.45, 0.00]),
    1: np.array([0.12, 0.50, 0.18, 0.07, 0.13]),
}
FACIAL_HAIR = ("none", "stubble", "moustache", "goatee", "beard")

# The 51 inner iBUG-68 points (17 brows .. 67 inner mouth) of the mean face, in face
# coordinates; the 17 jaw points are not listed because they are traced on the head's
# silhouette (see ``jaw_landmarks``). The eye and mouth points lie on the same parametric
# curves that the renderer draws: lids v = -/+ h (1 - s^2) at s = -/+1/3, lips
# v = c (1 - s^2) along the corner-to-corner axis.
_EYE_HALF_WIDTH = 0.16
_EYE_UPPER = 0.085
_EYE_LOWER = 0.058
_MOUTH_HALF_WIDTH = 0.27
_UPPER_LIP = 0.060
_LOWER_LIP = 0.080
_MOUTH_Y = 0.78
LIP_S_OUTER_UPPER = (-0.62, -0.28, 0.0, 0.28, 0.62)
LIP_S_OUTER_LOWER = (0.62, 0.28, 0.0, -0.28, -0.62)
LIP_S_INNER_UPPER = (-0.45, 0.0, 0.45)
LIP_S_INNER_LOWER = (0.45, 0.0, -0.45)
LIP_S_INNER_CORNER = 0.86


def _eye_points(cx: float) -> list[tuple[float, float]]:
    """Six iBUG eye points of a neutral eye centred at x = ``cx``.

    Both eyes list, in image coordinates, the image-left corner, two upper-lid points, the
    image-right corner and two lower-lid points (iBUG 36-41 and 42-47), at s = -1, -1/3, 1/3,
    1, 1/3, -1/3 along the corner-to-corner axis.
    """
    points = []
    for s, side in ((-1.0, 0.0), (-1 / 3, -1.0), (1 / 3, -1.0), (1.0, 0.0), (1 / 3, 1.0),
                    (-1 / 3, 1.0)):
        height = _EYE_UPPER if side < 0 else _EYE_LOWER
        points.append((cx + s * _EYE_HALF_WIDTH, 0.01 + side * height * (1.0 - s * s)))
    return points


def _mouth_points() -> list[tuple[float, float]]:
    """Twenty iBUG mouth points (48-67) of a neutral closed mouth."""
    def at(s: float, v: float) -> tuple[float, float]:
        return (s * _MOUTH_HALF_WIDTH, _MOUTH_Y + v * (1.0 - s * s))

    outer = ([at(-1.0, 0.0)] + [at(s, -_UPPER_LIP) for s in LIP_S_OUTER_UPPER]
             + [at(1.0, 0.0)] + [at(s, _LOWER_LIP) for s in LIP_S_OUTER_LOWER])
    inner = ([at(-LIP_S_INNER_CORNER, 0.0)] + [at(s, 0.0) for s in LIP_S_INNER_UPPER]
             + [at(LIP_S_INNER_CORNER, 0.0)] + [at(s, 0.0) for s in LIP_S_INNER_LOWER])
    return outer + inner


def _mean_inner_template() -> np.ndarray:
    brow_x = (0.62, 0.51, 0.40, 0.28, 0.16)
    brow_y = (-0.215, -0.275, -0.295, -0.28, -0.235)
    right_brow = [(-x, y) for x, y in zip(brow_x, brow_y)]
    left_brow = [(x, y) for x, y in zip(brow_x[::-1], brow_y[::-1])]
    nose = [(0.0, 0.0), (0.0, 0.13), (0.0, 0.26), (0.0, 0.40),
            (-0.14, 0.47), (-0.07, 0.50), (0.0, 0.515), (0.07, 0.50), (0.14, 0.47)]
    table = right_brow + left_brow + nose + _eye_points(-0.36) + _eye_points(0.36) + _mouth_points()
    return np.array(table, dtype=np.float64)


FIRST_INNER = 17  # iBUG index of the first inner point (row 0 of the inner arrays)
MEAN_INNER_XY = _mean_inner_template()  # (51, 2): iBUG points 17..67
assert MEAN_INNER_XY.shape == (51, 2)

# iBUG-68 index groups.
JAW = np.arange(0, 17)
RIGHT_BROW = np.arange(17, 22)
LEFT_BROW = np.arange(22, 27)
NOSE_BRIDGE = np.arange(27, 31)
NOSE_BOTTOM = np.arange(31, 36)
RIGHT_EYE = np.arange(36, 42)
LEFT_EYE = np.arange(42, 48)
MOUTH_OUTER = np.arange(48, 60)
MOUTH_INNER = np.arange(60, 68)
# Five-point landmarks in insightface order: image-left eye, image-right eye, nose tip,
# image-left mouth corner, image-right mouth corner.
NOSE_TIP, MOUTH_LEFT, MOUTH_RIGHT = 30, 48, 54

# The 17 jaw points are traced on the frontal head silhouette along rays from this origin.
_JAW_RAY_ORIGIN_Y = 0.10
_JAW_RAY_SPREAD = 0.14  # radians above the horizontal for points 0 and 16


@dataclass(frozen=True)
class Difficulty:
    """Nuisance ranges of a difficulty preset; the same uniform draws are mapped through them.

    Angles in degrees, blur in pixels of a 64-px image (scaled with the resolution), noise as
    a standard deviation on the [0, 1] intensity scale, age drift in years, framing jitters
    relative to the face scale (scale) and image size (shift).
    """

    name: str
    max_yaw: float
    max_pitch: float
    max_roll: float
    expression: float
    p_glasses: float
    p_sunglasses: float
    p_scarf: float
    p_hand: float
    max_blur: float
    max_noise: float
    p_compression: float
    max_compression_step: float
    light_spread: float
    clutter: float
    max_age_drift: float
    scale_jitter: float
    shift_jitter: float
    p_restyle: float
    camera_spread: float


DIFFICULTIES: dict[str, Difficulty] = {
    "easy": Difficulty("easy", max_yaw=20, max_pitch=10, max_roll=5, expression=0.3,
                       p_glasses=0.1, p_sunglasses=0.0, p_scarf=0.0, p_hand=0.0,
                       max_blur=0.4, max_noise=0.01, p_compression=0.0,
                       max_compression_step=0.0, light_spread=25, clutter=0.0,
                       max_age_drift=2, scale_jitter=0.05, shift_jitter=0.03, p_restyle=0.15,
                       camera_spread=0.4),
    "medium": Difficulty("medium", max_yaw=60, max_pitch=40, max_roll=15, expression=0.6,
                         p_glasses=0.2, p_sunglasses=0.05, p_scarf=0.06, p_hand=0.06,
                         max_blur=1.0, max_noise=0.025, p_compression=0.3,
                         max_compression_step=0.08, light_spread=60, clutter=0.5,
                         max_age_drift=8, scale_jitter=0.12, shift_jitter=0.08,
                         p_restyle=0.3, camera_spread=1.0),
    "hard": Difficulty("hard", max_yaw=90, max_pitch=45, max_roll=30, expression=1.0,
                       p_glasses=0.25, p_sunglasses=0.1, p_scarf=0.12, p_hand=0.12,
                       max_blur=2.0, max_noise=0.05, p_compression=0.6,
                       max_compression_step=0.16, light_spread=90, clutter=1.0,
                       max_age_drift=15, scale_jitter=0.2, shift_jitter=0.12,
                       p_restyle=0.45, camera_spread=1.5),
}


@dataclass(frozen=True)
class Variant:
    """A renderer ablation: what carries identity, measured by switching one cue off.

    ``geometry`` scales every identity's departure from the mean face (shape scalars, shape
    modes, asymmetry field); ``restyle`` lets photos change haircut and colour (the
    difficulty's ``p_restyle``); ``shading`` lights the faces directionally (off: the same
    overall brightness as ambient light only, so shape shows only in outlines).
    """

    name: str
    geometry: float = 1.0
    restyle: bool = True
    shading: bool = True


VARIANTS: dict[str, Variant] = {
    "standard": Variant("standard"),
    "hair_fixed": Variant("hair_fixed", restyle=False),
    "half_geometry": Variant("half_geometry", geometry=0.5),
    "flat_shading": Variant("flat_shading", shading=False),
}


def _preset(name: Any, table: dict[str, Any], preset_type: type, kind: str, plural: str) -> Any:
    """``name`` itself if it is already a ``preset_type``, else ``table[name]``; a typo raises
    :class:`ConfigError` listing the valid names."""
    if isinstance(name, preset_type):
        return name
    try:
        return table[name]
    except (KeyError, TypeError):
        raise ConfigError(
            f"unknown SynthFace {kind} {name!r}; valid {plural} are: {', '.join(table)}"
        ) from None


def get_variant(name: str | Variant) -> Variant:
    """The named variant; a typo raises :class:`ConfigError` listing the valid ones."""
    return _preset(name, VARIANTS, Variant, "variant", "variants")


def get_difficulty(name: str | Difficulty) -> Difficulty:
    """The named difficulty preset; a typo raises :class:`ConfigError` listing the valid ones."""
    return _preset(name, DIFFICULTIES, Difficulty, "difficulty", "difficulties")


def split_code(split: str) -> int:
    """Integer code of a split name (used in generator keys)."""
    try:
        return SPLIT_CODES[split]
    except (KeyError, TypeError):
        raise ConfigError(
            f"unknown SynthFace split {split!r}; valid splits are: {', '.join(SPLITS)}"
        ) from None


# ----------------------------------------------------------------------------------------------
# Identity parameters
# ----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class IdentityParams:
    """Everything fixed for one identity (see the module docstring for the conventions).

    Shape scalars multiply the mean head (1.0 = average). ``inner_xy`` holds the identity's
    neutral iBUG points 17..67 in face coordinates (the template plus the identity's shape
    modes and a smooth random deformation field); :meth:`neutral_landmarks` builds the full
    neutral 68-point 3-D geometry from them (jaw traced on the silhouette, every point lifted
    onto the head surface).
    Colours are RGB albedos in [0, 1].
    """

    global_identity: int
    base_age: float
    gender: int
    skin_tone: int
    skin_rgb: np.ndarray
    face_width: float
    face_length: float
    jaw_width: float
    cranium_height: float
    nose_length: float
    nose_width: float
    nose_protrusion: float
    ear_size: float
    neck_width: float
    brow_ridge: float
    cheek_prominence: float
    cheek_height: float
    chin_prominence: float
    chin_width: float
    inner_xy: np.ndarray
    hair_rgb: np.ndarray
    hair_style: int
    hair_volume: float
    hairline: float
    fringe: float
    greying: float
    brow_rgb: np.ndarray
    brow_thickness: float
    eye_rgb: np.ndarray
    lip_rgb: np.ndarray
    facial_hair: int
    facial_hair_density: float
    moles: np.ndarray          # (MAX_MOLES, 3): x, y, radius; radius 0 = no mole
    freckles: np.ndarray       # (NUM_FRECKLES, 3): x, y, radius; radius 0 = no freckle

    @property
    def base_age_group(self) -> int:
        """Age group of the base age."""
        return age_group_of(self.base_age)

    def neutral_landmarks(self) -> np.ndarray:
        """The identity's 68 iBUG points (68, 3) in face coordinates, neutral expression."""
        face = face_model(stack_identities([self]), smile=np.zeros(1), mouth_open=np.zeros(1),
                          eyes_closed=np.zeros(1), age=np.array([self.base_age]))
        return face.landmarks[0]


_IDENTITY_DRAWS = (
    "age_group", "age", "gender", "skin_tone", "skin_r", "skin_g", "skin_b",
    "hair_colour", "hair_style", "hair_volume", "hairline", "fringe", "fringe_gate", "greying",
    "brow_thickness", "brow_tone", "eye_colour", "lip_tint", "lipstick_gate", "lipstick_hue",
    "facial_hair_gate", "facial_hair_kind", "facial_hair_density", "mole_count",
    "freckle_gate", "freckle_strength",
)
NUM_SHAPE_MODES = 22
NUM_FIELD_COEFFS = 10  # 5 polynomial basis functions for each of dx and dy


NUM_ATTRIBUTE_DRAWS = 4  # age group, age, gender, skin tone: the first identity draws


def _identity_rng(seed: int, global_identity: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), IDENTITY_STREAM, int(global_identity)])


def _attributes_from_draws(u: np.ndarray) -> tuple[float, int, int]:
    group = min(int(u[0] * 3), 2)
    low, high = BASE_AGE_RANGES[group]
    return float(low + (high - low) * u[1]), int(u[2] < 0.5), min(int(u[3] * 5), 4)


def sample_identity_attributes(seed: int, global_identity: int) -> tuple[float, int, int]:
    """(base age, gender, skin tone) of an identity: the first draws of its stream.

    Identical to the fields of :func:`sample_identity`, without building the face.
    """
    return _attributes_from_draws(_identity_rng(seed, global_identity).random(
        NUM_ATTRIBUTE_DRAWS))


def _pick(weights: np.ndarray, u: float) -> int:
    """Inverse-CDF draw of a category from ``weights`` with the uniform ``u``."""
    cdf = np.cumsum(weights / weights.sum())
    return int(min(np.searchsorted(cdf, u, side="right"), len(weights) - 1))


def sample_identity(seed: int, global_identity: int,
                    variant: str | Variant = "standard") -> IdentityParams:
    """Identity parameters, a pure function of ``(seed, global_identity)`` and the variant
    (whose ``geometry`` scales the face's departure from the mean)."""
    geometry = get_variant(variant).geometry
    rng = _identity_rng(seed, global_identity)
    values = rng.random(len(_IDENTITY_DRAWS))
    u = dict(zip(_IDENTITY_DRAWS, values.tolist()))
    modes = np.clip(rng.standard_normal(NUM_SHAPE_MODES), -2.5, 2.5) * geometry
    field = np.clip(rng.standard_normal(NUM_FIELD_COEFFS), -2.5, 2.5) * (0.012 * geometry)
    mole_draws = rng.random((MAX_MOLES, 3))
    freckle_draws = rng.random((NUM_FRECKLES, 3))

    base_age, gender, tone = _attributes_from_draws(values)
    skin = SKIN_TONES[tone] * (1.0 + 0.06 * (np.array([u["skin_r"], u["skin_g"],
                                                        u["skin_b"]]) - 0.5))

    hair_rgb = HAIR_COLOURS[_pick(HAIR_COLOUR_WEIGHTS[tone], u["hair_colour"])]
    style = _pick(HAIR_STYLE_WEIGHTS[gender], u["hair_style"])
    fringe = float(u["fringe_gate"] < (0.35 if gender == 0 else 0.15)) * (0.5 + 0.5 * u["fringe"])
    brow_dark = 0.55 + 0.3 * u["brow_tone"]
    # Fair hair comes with darker brows than the hair itself; dark hair with matching brows.
    brow_rgb = np.minimum(hair_rgb * brow_dark + 0.03, 0.5)
    # Face units (eye width 0.32): a brow is a fifth to two fifths of the eye's width thick,
    # so that it stays a visible band at 32 px as in down-sampled photographs.
    brow_thickness = (0.090 + 0.040 * u["brow_thickness"]) if gender else (
        0.065 + 0.032 * u["brow_thickness"])
    eye_rgb = EYE_COLOURS[_pick(EYE_COLOUR_WEIGHTS[tone], u["eye_colour"])]

    # Lips photograph as a darker, slightly redder skin, far from a saturated red.
    lip = skin * np.array([0.80, 0.60, 0.60]) + np.array([0.06, 0.01, 0.02])
    lip = lip * (0.9 + 0.2 * u["lip_tint"])
    if gender == 0 and u["lipstick_gate"] < 0.35:
        r, g, b = colorsys.hsv_to_rgb(0.94 + 0.08 * u["lipstick_hue"], 0.65, 0.72)
        lip = 0.35 * lip + 0.65 * np.array([r, g, b])
    facial_hair = 0
    if gender == 1 and base_age >= 18 and u["facial_hair_gate"] < 0.45:
        facial_hair = 1 + min(int(u["facial_hair_kind"] * 4), 3)

    moles = np.zeros((MAX_MOLES, 3))
    mole_count = min(int(u["mole_count"] * 5), 4) - 1  # P(no mole) = 2/5
    for k in range(max(mole_count, 0)):
        mx, my, mr = mole_draws[k]
        moles[k] = (-0.65 + 1.3 * mx, 0.15 + 0.85 * my, 0.022 + 0.02 * mr)
    freckles = np.zeros((NUM_FRECKLES, 3))
    if u["freckle_gate"] < (0.3 if tone <= 1 else 0.05):
        freckles[:, 0] = -0.55 + 1.1 * freckle_draws[:, 0]
        freckles[:, 1] = 0.08 + 0.38 * freckle_draws[:, 1]
        freckles[:, 2] = (0.012 + 0.01 * freckle_draws[:, 2]) * (0.7 + 0.6 * u["freckle_strength"])

    sex = geometry if gender else -geometry
    shape = dict(
        face_width=1.0 + 0.05 * modes[0] + 0.025 * sex,
        face_length=1.0 + 0.05 * modes[1],
        jaw_width=1.0 + 0.07 * modes[2] + 0.04 * sex,
        cranium_height=1.0 + 0.04 * modes[3],
        nose_length=1.0 + 0.09 * modes[4] + 0.03 * sex,
        nose_width=1.0 + 0.13 * modes[5] + 0.04 * sex + 0.04 * geometry * (tone - 2),
        nose_protrusion=1.0 + 0.15 * modes[6],
        ear_size=1.0 + 0.08 * modes[7],
        neck_width=1.0 + 0.06 * modes[0] + 0.06 * sex,
        # Bony landmarks that shade the face: how far brow ridge, cheekbones and chin stand
        # out of the head (face units), the cheekbones' height and the chin's width.
        brow_ridge=0.025 + 0.008 * modes[17] + 0.008 * sex,
        cheek_prominence=0.03 + 0.01 * modes[18],
        cheek_height=0.30 + 0.04 * modes[19],
        chin_prominence=0.04 + 0.015 * modes[20],
        chin_width=1.0 + 0.12 * modes[21] + 0.05 * sex,
    )
    inner = _identity_inner_xy(modes[8:], field, shape, gender, geometry)
    identity = dict(
        global_identity=int(global_identity), base_age=float(base_age), gender=gender,
        skin_tone=tone, skin_rgb=np.clip(skin, 0.0, 1.0), inner_xy=inner,
        hair_rgb=hair_rgb.copy(), hair_style=style,
        hair_volume=0.05 + 0.12 * u["hair_volume"] + (0.05 if style == 3 else 0.0),
        hairline=-0.66 + 0.16 * (u["hairline"] - 0.5), fringe=fringe,
        greying=0.5 + 0.5 * u["greying"], brow_rgb=brow_rgb,
        brow_thickness=float(brow_thickness), eye_rgb=eye_rgb.copy(),
        lip_rgb=np.clip(lip, 0.0, 1.0), facial_hair=facial_hair,
        facial_hair_density=0.6 + 0.4 * u["facial_hair_density"],
        moles=moles, freckles=freckles, **{k: float(v) for k, v in shape.items()},
    )
    return IdentityParams(**identity)


def restyled_hair(ident: dict[str, np.ndarray], nuis: dict[str, np.ndarray]
                  ) -> dict[str, np.ndarray]:
    """Stacked identity fields with the hair of each photo: the identity's own, or, where the
    photo's ``restyle`` is set, another haircut and colour drawn from its ``restyle_draws``.

    Hair is a nuisance like glasses: people change haircut and colour between photos, so a
    model must not recognise them by hair alone. A restyle keeps the gender's style
    frequencies, never makes hair recede (nor restores receding hair), and may dye the hair
    any colour of the palette; brows keep the identity's natural colour.
    """
    draws = nuis["restyle_draws"]
    change = nuis["restyle"] > 0.5
    own = ident["hair_style"]
    weights = np.stack([HAIR_STYLE_WEIGHTS[g] for g in ident["gender"]]).astype(np.float64)
    weights[:, HAIR_STYLES.index("receding")] = 0.0
    cdf = np.cumsum(weights / weights.sum(1, keepdims=True), 1)
    style = np.minimum((cdf <= draws[:, 1:2]).sum(1), len(HAIR_STYLES) - 1)
    receding = own == HAIR_STYLES.index("receding")
    style = np.where(change & ~receding, style, own)
    colour = HAIR_COLOURS[np.minimum((draws[:, 0] * len(HAIR_COLOURS)).astype(np.int64),
                                     len(HAIR_COLOURS) - 1)]
    volume = 0.05 + 0.12 * draws[:, 2] + np.where(style == HAIR_STYLES.index("long"), 0.05, 0.0)
    fringe = np.where(draws[:, 3] < 0.3, 0.5 + 0.5 * draws[:, 3] / 0.3, 0.0)
    out = dict(ident)
    out["hair_style"] = style
    out["hair_rgb"] = np.where(change[:, None], colour, ident["hair_rgb"])
    out["hair_volume"] = np.where(change, volume, ident["hair_volume"])
    out["fringe"] = np.where(change, fringe, ident["fringe"])
    return out


def _identity_inner_xy(modes: np.ndarray, field: np.ndarray, shape: dict[str, float],
                       gender: int, geometry: float = 1.0) -> np.ndarray:
    """Deform the mean inner template by the identity's shape modes and a smooth field."""
    xy = MEAN_INNER_XY.copy()
    x, y = xy[:, 0], xy[:, 1]
    idx = {name: group - FIRST_INNER for name, group in (
        ("rbrow", RIGHT_BROW), ("lbrow", LEFT_BROW), ("bridge", NOSE_BRIDGE),
        ("nbottom", NOSE_BOTTOM), ("reye", RIGHT_EYE), ("leye", LEFT_EYE),
        ("mouth", np.concatenate([MOUTH_OUTER, MOUTH_INNER])))}
    brows = np.concatenate([idx["rbrow"], idx["lbrow"]])
    eyes = np.concatenate([idx["reye"], idx["leye"]])
    nose = np.concatenate([idx["bridge"], idx["nbottom"]])
    mouth = idx["mouth"]

    # Eye spacing, size, tilt and height (brows follow the eyes' spacing and height).
    spacing = 0.025 * modes[0]
    for group, sign in ((idx["reye"], -1.0), (idx["leye"], 1.0)):
        cx = x[group].mean()
        size = 1.0 + 0.09 * modes[1] + (0.04 * geometry if gender == 0 else 0.0)
        tilt = 0.06 * modes[2] * sign
        dx, dy = x[group] - cx, y[group] - 0.01
        x[group] = cx + sign * spacing + size * dx
        y[group] = 0.01 + size * dy + tilt * dx
    for group, sign in ((idx["rbrow"], -1.0), (idx["lbrow"], 1.0)):
        x[group] += sign * spacing
    y[np.concatenate([eyes, brows])] += 0.025 * modes[3]
    # Brow height and arch: the middle points rise with the arch.
    y[brows] -= 0.03 * modes[4] + (0.015 * geometry if gender == 0 else 0.0)
    middle = np.array([1, 2, 3, 6, 7, 8])
    y[middle] -= 0.02 * modes[5]
    # Nose length and width.
    y[nose] = y[idx["bridge"][0]] + (y[nose] - y[idx["bridge"][0]]) * shape["nose_length"]
    x[idx["nbottom"]] *= shape["nose_width"]
    # Mouth width, height and lip thickness.
    mouth_y = _MOUTH_Y * shape["face_length"] + 0.02 * modes[6]
    x[mouth] *= 1.0 + 0.08 * modes[7]
    lips = y[mouth] - _MOUTH_Y
    y[mouth] = mouth_y + lips * (1.0 + 0.2 * modes[8] + (0.1 * geometry if gender == 0 else 0.0))
    # Everything spreads with the face width.
    x *= shape["face_width"]
    # A smooth random field (low-order polynomials) adds small asymmetries.
    basis = np.stack([x, y, x * y, x * x - 0.15, y * y - 0.2], axis=1)
    x = x + basis @ field[:5]
    y = y + basis @ field[5:]
    return np.stack([x, y], axis=1)


# ----------------------------------------------------------------------------------------------
# Nuisance parameters
# ----------------------------------------------------------------------------------------------

# Order matters: the metadata draws only the first four values of this stream.
_NUISANCE_DRAWS = (
    "yaw", "pitch", "roll", "age_drift",
    "smile_gate", "smile", "open_gate", "open", "closed_gate", "gaze_x", "gaze_y",
    "light_azimuth", "light_elevation", "light_warmth", "light_strength", "ambient",
    "bg_hue_top", "bg_hue_bottom", "bg_value", "bg_saturation", "blob_gate", "blob_x",
    "blob_y", "blob_r", "blob_hue", "clothing_hue", "clothing_value",
    "glasses_gate", "glasses_kind", "glasses_colour", "scarf_gate", "scarf_hue", "scarf_height",
    "hand_gate", "hand_x", "hand_y", "hand_angle", "hand_size",
    "blur", "noise", "compression_gate", "compression", "scale", "shift_x", "shift_y",
    "noise_offset_x", "noise_offset_y",
    "restyle_gate", "restyle_colour", "restyle_style", "restyle_volume", "restyle_fringe",
    "camera_saturation", "camera_contrast", "camera_red", "camera_blue",
)
NUM_METADATA_DRAWS = 4


@dataclass(frozen=True)
class NuisanceParams:
    """Everything that changes from one photo of an identity to the next.

    Angles in degrees; ``light`` is a unit vector in camera coordinates pointing to the light;
    colours are RGB in [0, 1]; ``glasses`` is 0 none, 1 clear, 2 sunglasses; ``blur`` is a
    Gaussian sigma in pixels of a 64-px image; ``noise`` a standard deviation on [0, 1]
    intensities; ``compression_step`` the 8x8-block residual quantisation step (0 = none);
    ``scale`` / ``shift_x`` / ``shift_y`` are the unaligned framing jitters.
    """

    split: str
    global_identity: int
    index: int
    difficulty: str
    yaw: float
    pitch: float
    roll: float
    age_drift: float
    smile: float
    mouth_open: float
    eyes_closed: float
    gaze_x: float
    gaze_y: float
    light: np.ndarray
    light_rgb: np.ndarray
    ambient: float
    diffuse: float
    bg_top: np.ndarray
    bg_bottom: np.ndarray
    blob: np.ndarray           # x, y (relative to the image), radius (relative), alpha
    blob_rgb: np.ndarray
    clothing_rgb: np.ndarray
    glasses: int
    glasses_rgb: np.ndarray
    scarf: float
    scarf_rgb: np.ndarray
    scarf_top: float
    hand: float
    hand_pose: np.ndarray      # x, y (face units), angle (turns), size
    blur: float
    noise: float
    compression_step: float
    scale: float
    shift_x: float
    shift_y: float
    noise_offset: tuple[int, int]
    restyle: float             # 1: this photo shows another haircut / colour (hair is nuisance)
    restyle_draws: np.ndarray  # uniforms for the new colour, style, volume and fringe
    camera: np.ndarray         # saturation, contrast, red and blue gains of the camera's colour


def _pose_and_drift(u: np.ndarray, diff: Difficulty) -> tuple[float, float, float, float]:
    yaw = diff.max_yaw * (2.0 * u[0] - 1.0)
    pitch = diff.max_pitch * (2.0 * u[1] - 1.0)
    roll = diff.max_roll * (2.0 * u[2] - 1.0)
    drift = diff.max_age_drift * (2.0 * u[3] - 1.0)
    return float(yaw), float(pitch), float(roll), float(drift)


def _nuisance_rng(seed: int, split: str, global_identity: int, index: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), NUISANCE_STREAM, split_code(split),
                                  int(global_identity), int(index)])


def sample_pose_and_drift(seed: int, split: str, global_identity: int, index: int,
                          difficulty: str | Difficulty = "medium"
                          ) -> tuple[float, float, float, float]:
    """(yaw, pitch, roll, age drift) of one image: the first draws of its nuisance stream.

    Identical to the corresponding fields of :func:`sample_nuisance`, at a fraction of the
    cost, for metadata that must not render or sample everything.
    """
    u = _nuisance_rng(seed, split, global_identity, index).random(NUM_METADATA_DRAWS)
    return _pose_and_drift(u, get_difficulty(difficulty))


FRONT_LIT_SHADE = 0.85
MAX_EXPOSURE_GAIN = 1.8


def _face_shade(yaw: float, pitch: float, light: np.ndarray, ambient: float,
                diffuse: float) -> float:
    """The renderer's shade at the middle of the face (its normal after yaw and pitch):
    ambient + diffuse (0.2 + 0.8 max(0, n . l)), as the head is lit there."""
    cy, sy = math.cos(math.radians(yaw)), math.sin(math.radians(yaw))
    cp, sp = math.cos(math.radians(pitch)), math.sin(math.radians(pitch))
    facing = sy * cp * light[0] - sp * light[1] + cy * cp * light[2]
    return ambient + diffuse * (0.2 + 0.8 * max(facing, 0.0))


def _hsv(h: float, s: float, v: float) -> np.ndarray:
    return np.array(colorsys.hsv_to_rgb(h % 1.0, s, v))


def sample_nuisance(seed: int, split: str, global_identity: int, index: int,
                    difficulty: str | Difficulty = "medium",
                    variant: str | Variant = "standard") -> NuisanceParams:
    """Nuisance parameters of one image, a pure function of its key, the difficulty and the
    variant (which may keep the hair fixed or light the face without direction)."""
    diff = get_difficulty(difficulty)
    var = get_variant(variant)
    values = _nuisance_rng(seed, split, global_identity, index).random(len(_NUISANCE_DRAWS))
    u = dict(zip(_NUISANCE_DRAWS, values.tolist()))
    yaw, pitch, roll, drift = _pose_and_drift(values, diff)

    smile = float(u["smile_gate"] < 0.6 * diff.expression) * (0.3 + 0.7 * u["smile"])
    mouth_open = float(u["open_gate"] < 0.35 * diff.expression) * (0.3 + 0.7 * u["open"])
    closed = float(u["closed_gate"] < 0.12 * diff.expression)

    # Light: azimuth around the view axis within the preset's spread, mostly from above.
    azimuth = math.radians(diff.light_spread * (2.0 * u["light_azimuth"] - 1.0))
    elevation = math.radians(10.0 + 40.0 * u["light_elevation"])
    light = np.array([math.sin(azimuth) * math.cos(elevation), -math.sin(elevation),
                      math.cos(azimuth) * math.cos(elevation)])
    warmth = (2.0 * u["light_warmth"] - 1.0) * (0.05 + 0.1 * diff.clutter)
    light_rgb = np.array([1.0 + warmth, 1.0, 1.0 - warmth])
    strength = 0.85 + 0.3 * u["light_strength"]
    ambient = (0.42 + 0.16 * u["ambient"]) * strength
    diffuse = (0.62 - 0.12 * u["ambient"]) * strength
    # Cameras expose for the face: a face turned away from the light is brightened (up to
    # MAX_EXPOSURE_GAIN) towards the shade of a face lit from the front.
    gain = min(max(FRONT_LIT_SHADE / _face_shade(yaw, pitch, light, ambient, diffuse), 1.0),
               MAX_EXPOSURE_GAIN)
    ambient, diffuse = ambient * gain, diffuse * gain
    if not var.shading:
        # The head's mean shade under directional light is about ambient + 0.55 diffuse.
        ambient, diffuse = ambient + 0.55 * diffuse, 0.0

    value = 0.35 + 0.55 * u["bg_value"]
    saturation = 0.1 + 0.35 * u["bg_saturation"]
    bg_top = _hsv(u["bg_hue_top"], saturation, value)
    bg_bottom = _hsv(u["bg_hue_top"] + 0.25 * (u["bg_hue_bottom"] - 0.5), saturation,
                     value * (0.7 + 0.25 * u["bg_hue_bottom"]))
    blob_alpha = float(u["blob_gate"] < 0.2 + 0.6 * diff.clutter) * (0.35 + 0.5 * diff.clutter)
    blob = np.array([u["blob_x"], u["blob_y"], 0.12 + 0.25 * u["blob_r"], blob_alpha])
    blob_rgb = _hsv(u["blob_hue"], 0.2 + 0.5 * u["bg_saturation"], 0.2 + 0.75 * u["blob_r"])
    clothing_rgb = _hsv(u["clothing_hue"], 0.15 + 0.5 * u["clothing_value"],
                        0.15 + 0.7 * u["clothing_value"])

    glasses = 0
    if u["glasses_gate"] < diff.p_glasses + diff.p_sunglasses:
        glasses = 2 if u["glasses_gate"] < diff.p_sunglasses else 1
    glasses_rgb = np.array([0.05, 0.05, 0.06]) + 0.45 * u["glasses_colour"] * np.array(
        [0.9, 0.6, 0.3])
    scarf = float(u["scarf_gate"] < diff.p_scarf)
    scarf_rgb = _hsv(u["scarf_hue"], 0.55, 0.35 + 0.5 * u["scarf_hue"])
    hand = float(u["hand_gate"] < diff.p_hand)
    hand_pose = np.array([-0.55 + 1.1 * u["hand_x"], 0.1 + 0.8 * u["hand_y"],
                          u["hand_angle"], 0.85 + 0.35 * u["hand_size"]])

    compression = float(u["compression_gate"] < diff.p_compression)
    return NuisanceParams(
        split=split, global_identity=int(global_identity), index=int(index),
        difficulty=diff.name, yaw=yaw, pitch=pitch, roll=roll, age_drift=drift, smile=smile,
        mouth_open=mouth_open, eyes_closed=closed,
        gaze_x=float(2.0 * u["gaze_x"] - 1.0), gaze_y=float(2.0 * u["gaze_y"] - 1.0),
        light=light, light_rgb=light_rgb, ambient=float(ambient), diffuse=float(diffuse),
        bg_top=bg_top, bg_bottom=bg_bottom, blob=blob, blob_rgb=blob_rgb,
        clothing_rgb=clothing_rgb, glasses=glasses, glasses_rgb=glasses_rgb, scarf=scarf,
        scarf_rgb=scarf_rgb, scarf_top=float(0.52 + 0.2 * u["scarf_height"]), hand=hand,
        hand_pose=hand_pose, blur=float(diff.max_blur * u["blur"]),
        noise=float(diff.max_noise * u["noise"]),
        compression_step=compression * diff.max_compression_step * (0.4 + 0.6 * u["compression"]),
        scale=float(1.0 + diff.scale_jitter * (2.0 * u["scale"] - 1.0)),
        shift_x=float(diff.shift_jitter * (2.0 * u["shift_x"] - 1.0)),
        shift_y=float(diff.shift_jitter * (2.0 * u["shift_y"] - 1.0)),
        noise_offset=(int(u["noise_offset_x"] * 2**20), int(u["noise_offset_y"] * 2**20)),
        restyle=float(var.restyle and u["restyle_gate"] < diff.p_restyle),
        restyle_draws=np.array([u["restyle_colour"], u["restyle_style"], u["restyle_volume"],
                                u["restyle_fringe"]]),
        camera=np.array([0.95 + 0.3 * diff.camera_spread * (2.0 * u["camera_saturation"] - 1.0),
                         1.0 + 0.15 * diff.camera_spread * (2.0 * u["camera_contrast"] - 1.0),
                         1.0 + 0.08 * diff.camera_spread * (2.0 * u["camera_red"] - 1.0),
                         1.0 + 0.08 * diff.camera_spread * (2.0 * u["camera_blue"] - 1.0)]),
    )


# ----------------------------------------------------------------------------------------------
# Attributes
# ----------------------------------------------------------------------------------------------

def age_group_of(age: float | np.ndarray) -> int | np.ndarray:
    """0 for ages below 20, 1 for 20-49, 2 for 50 and above."""
    group = np.searchsorted(np.asarray(AGE_GROUP_EDGES), np.asarray(age, dtype=np.float64),
                            side="right")
    return int(group) if np.ndim(group) == 0 else group.astype(np.int64)


def pose_bin(angle: float | np.ndarray) -> int | np.ndarray:
    """0 for angle < -30 degrees, 1 for angle > 30 degrees, 2 otherwise."""
    angle = np.asarray(angle, dtype=np.float64)
    binned = np.where(angle < -POSE_BIN_EDGE, 0, np.where(angle > POSE_BIN_EDGE, 1, 2))
    return int(binned) if binned.ndim == 0 else binned.astype(np.int64)


def cohort_of(age_group: int | np.ndarray, gender: int | np.ndarray,
              skin_tone: int | np.ndarray, pitch_bin: int | np.ndarray,
              yaw_bin: int | np.ndarray) -> np.ndarray:
    """Cohort index in [0, 270) of the five discrete attributes (CondFace, thesis ch. 5).

    Mixed radix with the yaw bin fastest: ((((age*2 + gender)*5 + skin)*3 + pitch)*3 + yaw).
    """
    return (((np.asarray(age_group) * 2 + np.asarray(gender)) * 5 + np.asarray(skin_tone)) * 3
            + np.asarray(pitch_bin)) * 3 + np.asarray(yaw_bin)


def image_age(base_age: float | np.ndarray, drift: float | np.ndarray) -> np.ndarray:
    """Apparent age of an image: base age plus drift, kept in [5, 95] years."""
    return np.clip(np.asarray(base_age, dtype=np.float64) + drift, MIN_AGE, MAX_AGE)


# ----------------------------------------------------------------------------------------------
# The 3-D face model (vectorised over a batch, exact arithmetic only)
# ----------------------------------------------------------------------------------------------

_IDENTITY_FIELDS = tuple(f.name for f in fields(IdentityParams))
_NUISANCE_FIELDS = tuple(f.name for f in fields(NuisanceParams))


def stack_identities(identities: list[IdentityParams]) -> dict[str, np.ndarray]:
    """Stack identity parameters field by field into arrays with a leading batch axis.

    Repeated identities (the same object) are stacked once and then indexed.
    """
    position: dict[int, int] = {}
    unique: list[IdentityParams] = []
    for p in identities:
        if id(p) not in position:
            position[id(p)] = len(unique)
            unique.append(p)
    rows = np.array([position[id(p)] for p in identities], dtype=np.int64)
    return {name: np.array([getattr(p, name) for p in unique])[rows]
            for name in _IDENTITY_FIELDS}


def stack_nuisances(nuisances: list[NuisanceParams]) -> dict[str, np.ndarray]:
    """Stack nuisance parameters field by field into arrays with a leading batch axis."""
    return {name: np.array([getattr(p, name) for p in nuisances]) for name in _NUISANCE_FIELDS}


def matmul3(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Batched 3x3 @ 3x3 (or 3x3 @ 3xN) with a fixed summation order.

    Written out instead of ``@`` so that no BLAS blocking depends on the batch size.
    """
    return (a[..., :, 0, None] * b[..., None, 0, :] + a[..., :, 1, None] * b[..., None, 1, :]
            + a[..., :, 2, None] * b[..., None, 2, :])


def transpose3(a: np.ndarray) -> np.ndarray:
    """Swap the last two axes."""
    return np.swapaxes(a, -1, -2)


def rotation_x(cos: np.ndarray, sin: np.ndarray) -> np.ndarray:
    """Rotations about the x axis (pitch), batched; y is down and z towards the camera."""
    one, zero = np.ones_like(cos), np.zeros_like(cos)
    return np.stack([np.stack([one, zero, zero], -1), np.stack([zero, cos, -sin], -1),
                     np.stack([zero, sin, cos], -1)], -2)


def rotation_y(cos: np.ndarray, sin: np.ndarray) -> np.ndarray:
    """Rotations about the y axis (yaw): positive angles move +z towards +x."""
    one, zero = np.ones_like(cos), np.zeros_like(cos)
    return np.stack([np.stack([cos, zero, sin], -1), np.stack([zero, one, zero], -1),
                     np.stack([-sin, zero, cos], -1)], -2)


def rotation_z(cos: np.ndarray, sin: np.ndarray) -> np.ndarray:
    """Rotations about the view axis (roll): positive angles turn clockwise in the image."""
    one, zero = np.ones_like(cos), np.zeros_like(cos)
    return np.stack([np.stack([cos, -sin, zero], -1), np.stack([sin, cos, zero], -1),
                     np.stack([zero, zero, one], -1)], -2)


def cos_sin_degrees(angles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """cos and sin of angles in degrees, element by element with scalar ``math``.

    Scalar libm calls give each element the same bits whatever the array's length or the
    element's position, which SIMD loops do not promise.
    """
    flat = [math.radians(float(a)) for a in np.asarray(angles, dtype=np.float64).ravel()]
    shape = np.shape(angles)
    return (np.array([math.cos(a) for a in flat]).reshape(shape),
            np.array([math.sin(a) for a in flat]).reshape(shape))


@dataclass
class Ellipsoids:
    """A batch of ellipsoids ``(p - centre)^T q (p - centre) <= 1`` in some frame."""

    centre: np.ndarray  # (B, 3)
    q: np.ndarray       # (B, 3, 3), symmetric positive definite

    @staticmethod
    def from_axes(centre: np.ndarray, axes: np.ndarray,
                  rotation: np.ndarray | None = None) -> Ellipsoids:
        """Ellipsoid with semi-axes ``axes`` along the columns of ``rotation`` (default: xyz)."""
        diag = np.zeros(axes.shape[:-1] + (3, 3))
        for k in range(3):
            diag[..., k, k] = 1.0 / (axes[..., k] * axes[..., k])
        q = diag if rotation is None else matmul3(matmul3(rotation, diag), transpose3(rotation))
        return Ellipsoids(np.asarray(centre, dtype=np.float64), q)

    def front_depth(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Largest z of the surface above points (x, y) (B, N), and whether it exists."""
        dx = x - self.centre[:, 0:1]
        dy = y - self.centre[:, 1:2]
        q = self.q
        qzz = q[:, 2, 2][:, None]
        bz = q[:, 0, 2][:, None] * dx + q[:, 1, 2][:, None] * dy
        q2 = (q[:, 0, 0][:, None] * dx * dx + 2.0 * q[:, 0, 1][:, None] * dx * dy
              + q[:, 1, 1][:, None] * dy * dy)
        disc = bz * bz - qzz * (q2 - 1.0)
        inside = disc >= 0.0
        z = self.centre[:, 2:3] + (np.sqrt(np.maximum(disc, 0.0)) - bz) / qzz
        return np.where(inside, z, -np.inf), inside

    def normal(self, points: np.ndarray) -> np.ndarray:
        """Unit outward normals at points (B, N, 3) on (or near) the surfaces."""
        d = points - self.centre[:, None, :]
        n = np.stack([self.q[:, None, k, 0] * d[..., 0] + self.q[:, None, k, 1] * d[..., 1]
                      + self.q[:, None, k, 2] * d[..., 2] for k in range(3)], -1)
        return n / np.sqrt((n * n).sum(-1, keepdims=True))


@dataclass
class FaceModel:
    """The 3-D face of a batch of samples in face coordinates (before pose and framing).

    ``parts`` maps a part name to its ellipsoids; ``surface`` lists the parts that make up
    the head surface (used to lift landmarks and to test their visibility). ``normals`` are
    the surface normals at the landmarks, ``marks`` the 3-D positions of moles then freckles
    (radius in the last column).
    """

    landmarks: np.ndarray      # (B, 68, 3)
    normals: np.ndarray        # (B, 68, 3)
    parts: dict[str, Ellipsoids]
    surface: tuple[str, ...]
    marks: np.ndarray          # (B, MAX_MOLES + NUM_FRECKLES, 4): x, y, z, radius
    mark_normals: np.ndarray   # (B, MAX_MOLES + NUM_FRECKLES, 3)


HEAD_SURFACE = ("cranium", "jaw", "nose", "ala_right", "ala_left")
# Low reliefs on the head (their ellipsoids give the footprint): they shade the face like a
# normal map but do not move its surface, so landmarks and occlusion ignore them.
HEAD_RELIEFS = ("brow_ridge", "cheek_right", "cheek_left", "chin")


# Head proportions against the eyes (centres 0.72 apart): the jaw contour spans about 2.1
# eye distances and the chin lies about 1.6 below the eye line, as in real faces (the ArcFace
# five-point template and the mean iBUG-68 shape agree on these ratios).
HEAD_HALF_WIDTH = 0.76
JAW_HALF_WIDTH = 0.64


def head_parts(ident: dict[str, np.ndarray], mouth_open: np.ndarray) -> dict[str, Ellipsoids]:
    """Ellipsoids of the head (face coordinates) from the identity's shape scalars.

    Cranium and jaw form the head; a tilted ellipsoid and two small alae form the nose; the
    ears are flattened ellipsoids turned outwards. Opening the mouth lowers the jaw.
    """
    n = len(mouth_open)
    fw, fl, jw = ident["face_width"], ident["face_length"], ident["jaw_width"]
    ch = ident["cranium_height"]
    zeros = np.zeros(n)

    def vec(*cols):
        return np.stack([np.broadcast_to(np.asarray(c, dtype=np.float64), (n,)) for c in cols],
                        -1)

    parts = {
        "cranium": Ellipsoids.from_axes(vec(zeros, -0.28 * ch, -0.25),
                                        vec(HEAD_HALF_WIDTH * fw, 1.02 * ch, 1.12)),
        "jaw": Ellipsoids.from_axes(vec(zeros, 0.33 * fl + 0.035 * mouth_open, 0.06),
                                    vec(JAW_HALF_WIDTH * fw * jw, 0.80 * fl + 0.035 * mouth_open,
                                        0.86)),
    }
    def surface_z(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Front-most depth of cranium and jaw at face points (x, y), each (B,)."""
        return np.maximum(parts["jaw"].front_depth(x[:, None], y[:, None])[0][:, 0],
                          parts["cranium"].front_depth(x[:, None], y[:, None])[0][:, 0])

    def bump(x: np.ndarray, y: np.ndarray, axes: np.ndarray, rise: np.ndarray) -> Ellipsoids:
        """A relief's footprint: an ellipsoid centred on the head surface at (x, y)."""
        return Ellipsoids.from_axes(vec(x, y, surface_z(x, y)), axes)

    parts["brow_ridge"] = bump(zeros, zeros - 0.19, vec(0.55 * fw, 0.16 + zeros, 0.16 + zeros),
                               ident["brow_ridge"])
    cheek_x = 0.42 * fw
    for name, sign in (("cheek_right", -1.0), ("cheek_left", 1.0)):
        parts[name] = bump(sign * cheek_x, ident["cheek_height"],
                           vec(0.25 + zeros, 0.21 + zeros, 0.16 + zeros),
                           ident["cheek_prominence"])
    chin_y = (0.33 + 0.80 * 0.82) * fl + 0.035 * mouth_open
    parts["chin"] = bump(zeros, chin_y, vec(0.17 * ident["chin_width"], 0.12 + zeros,
                                            0.16 + zeros), ident["chin_prominence"])
    # Nose: its long axis tilts so that the tip comes forward; the tip protrudes by
    # 0.19 * protrusion in front of the face surface.
    nl, nw, npr = ident["nose_length"], ident["nose_width"], ident["nose_protrusion"]
    tilt_cos, tilt_sin = 0.86, 0.51  # about 31 degrees
    tilt = rotation_x(np.full(n, tilt_cos), np.full(n, tilt_sin))
    length, depth, width = 0.21 * nl, 0.10 * npr, 0.11 * nw
    y_centre = 0.29 * nl
    face_z, _ = parts["jaw"].front_depth(np.zeros((n, 1)), y_centre[:, None])
    face_z = np.maximum(face_z[:, 0], parts["cranium"].front_depth(
        np.zeros((n, 1)), y_centre[:, None])[0][:, 0])
    reach = np.sqrt((length * tilt_sin) ** 2 + (depth * tilt_cos) ** 2)
    z_centre = face_z + 0.19 * npr - reach
    parts["nose"] = Ellipsoids.from_axes(vec(zeros, y_centre, z_centre),
                                         vec(width, length, depth), tilt)
    ala_y = 0.455 * nl
    ala_x = 0.10 * nw * fw
    for name, sign in (("ala_right", -1.0), ("ala_left", 1.0)):
        z, _ = parts["jaw"].front_depth(np.full((n, 1), sign) * ala_x[:, None], ala_y[:, None])
        parts[name] = Ellipsoids.from_axes(vec(sign * ala_x, ala_y, z[:, 0] + 0.02),
                                           vec(0.07 * nw, 0.06 * nl, 0.06))
    es = ident["ear_size"]
    for name, sign in (("ear_right", -1.0), ("ear_left", 1.0)):
        turn = rotation_y(np.full(n, 0.80), np.full(n, -0.60 * sign))
        parts[name] = Ellipsoids.from_axes(vec(sign * (HEAD_HALF_WIDTH - 0.04) * fw, 0.20 + zeros,
                                               -0.30 + zeros),
                                           vec(0.045 + zeros, 0.24 * es, 0.15 * es), turn)
    return parts


def jaw_landmarks(cranium: Ellipsoids, jaw: Ellipsoids) -> tuple[np.ndarray, np.ndarray]:
    """The 17 iBUG jaw points traced on the frontal silhouette of cranium and jaw.

    Each point is where a ray from a point just below the eye line leaves the union of the two
    ellipsoids' frontal outlines, at the depth of the ellipsoid it leaves last (its rim), so
    that under a pose the far-side points turn behind the head. Returns points (B, 17, 3) and
    the index (0 cranium, 1 jaw) of the owning ellipsoid.
    """
    steps = np.arange(17) / 16.0
    angle = math.pi + _JAW_RAY_SPREAD - steps * (math.pi + 2.0 * _JAW_RAY_SPREAD)
    dx = np.array([math.cos(a) for a in angle])[None, :]
    dy = np.array([math.sin(a) for a in angle])[None, :]
    reach = []
    for part in (cranium, jaw):
        # Axis-aligned ellipses: (x - cx)^2 / a^2 + (y - cy)^2 / b^2 = 1 along the ray.
        inv_a2 = part.q[:, 0, 0][:, None]
        inv_b2 = part.q[:, 1, 1][:, None]
        ox = -part.centre[:, 0:1]
        oy = _JAW_RAY_ORIGIN_Y - part.centre[:, 1:2]
        qa = dx * dx * inv_a2 + dy * dy * inv_b2
        qb = ox * dx * inv_a2 + oy * dy * inv_b2
        qc = ox * ox * inv_a2 + oy * oy * inv_b2 - 1.0
        disc = qb * qb - qa * qc
        t = (np.sqrt(np.maximum(disc, 0.0)) - qb) / qa
        reach.append(np.where(disc >= 0.0, t, 0.0))
    owner = (reach[1] > reach[0]).astype(np.int64)
    t = np.where(owner == 1, reach[1], reach[0])
    depth = np.where(owner == 1, jaw.centre[:, 2:3], cranium.centre[:, 2:3])
    points = np.stack([t * dx, _JAW_RAY_ORIGIN_Y + t * dy, depth], -1)
    return points, owner


def _expression_xy(inner: np.ndarray, smile: np.ndarray, mouth_open: np.ndarray,
                   eyes_closed: np.ndarray, eye_scale: np.ndarray) -> np.ndarray:
    """Move the inner points (B, 51, 2) for a smile, an open mouth, closed eyes and age."""
    xy = inner.copy()
    x, y = xy[..., 0], xy[..., 1]
    # Eyes: scale about each eye's centre (children have larger eyes relative to the face).
    for eye in (RIGHT_EYE, LEFT_EYE):
        rows = eye - FIRST_INNER
        cx = (x[:, rows[0]] + x[:, rows[3]])[:, None] * 0.5
        cy = (y[:, rows[0]] + y[:, rows[3]])[:, None] * 0.5
        x[:, rows] = cx + (x[:, rows] - cx) * eye_scale[:, None]
        y[:, rows] = cy + (y[:, rows] - cy) * eye_scale[:, None]
        # Closed eyes: the upper lid comes down onto the lower lid (same s positions).
        upper, lower = rows[[1, 2]], rows[[5, 4]]
        closed = eyes_closed[:, None]
        y[:, upper] = y[:, upper] * (1.0 - closed) + (
            cy + (y[:, lower] - cy) * 0.85) * closed
        # A smile narrows the eyes a little.
        y[:, upper] = cy + (y[:, upper] - cy) * (1.0 - 0.25 * smile[:, None] * (1.0 - closed))
    mouth = np.concatenate([MOUTH_OUTER, MOUTH_INNER]) - FIRST_INNER
    mx = x[:, mouth]
    my = y[:, mouth]
    centre_x = (mx[:, 0] + mx[:, 6])[:, None] * 0.5
    half = (mx[:, 6] - mx[:, 0])[:, None] * 0.5
    s = (mx - centre_x) / half
    w = 1.0 - s * s
    sm, op = smile[:, None], mouth_open[:, None]
    # Smile: the corners rise and move out, so the lips curve upwards at the ends.
    mx = centre_x + (mx - centre_x) * (1.0 + 0.12 * sm)
    my = my - 0.055 * sm * (1.0 - w)
    # Open mouth: the lower lip and inner lower points drop along the lip curve.
    lower_rows = np.array([7, 8, 9, 10, 11, 17, 18, 19])  # 55..59 and 65..67
    upper_inner = np.array([13, 14, 15])                   # 61..63
    drop = np.zeros_like(my)
    drop[:, lower_rows] = 0.10
    drop[:, upper_inner] = -0.012
    my = my + drop * op * w
    x[:, mouth] = mx
    y[:, mouth] = my
    return xy


def eye_scale_for_age(age: np.ndarray) -> np.ndarray:
    """Relative eye size by age: children's eyes are up to 12 % larger."""
    return 1.0 + 0.12 * np.clip((16.0 - age) / 10.0, 0.0, 1.0)


def face_model(ident: dict[str, np.ndarray], smile: np.ndarray, mouth_open: np.ndarray,
               eyes_closed: np.ndarray, age: np.ndarray) -> FaceModel:
    """The posed-independent 3-D face of a batch: parts, 68 landmarks with normals, marks.

    ``ident`` holds stacked identity fields (:func:`stack_identities`), one row per sample.
    Inner landmarks take the identity's (x, y) moved by the expression, and their z from the
    front-most head surface above them (eyes slightly recessed, brows slightly raised).
    """
    parts = head_parts(ident, mouth_open)
    inner = _expression_xy(ident["inner_xy"], smile, mouth_open, eyes_closed,
                           eye_scale_for_age(age))
    jaw_points, owner = jaw_landmarks(parts["cranium"], parts["jaw"])

    surface = [parts[name] for name in HEAD_SURFACE]

    def lift(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        depths = np.stack([p.front_depth(x, y)[0] for p in surface], -1)
        best = depths.argmax(-1)
        return np.take_along_axis(depths, best[..., None], -1)[..., 0], best

    z, best = lift(inner[..., 0], inner[..., 1])
    offsets = np.zeros(51)
    offsets[np.concatenate([RIGHT_EYE, LEFT_EYE]) - FIRST_INNER] = -0.012
    offsets[np.concatenate([RIGHT_BROW, LEFT_BROW]) - FIRST_INNER] = 0.012
    inner3d = np.concatenate([inner, (z + offsets)[..., None]], -1)
    landmarks = np.concatenate([jaw_points, inner3d], 1)

    normals = np.zeros_like(landmarks)
    jaw_normals = [parts["cranium"].normal(jaw_points), parts["jaw"].normal(jaw_points)]
    normals[:, :17] = np.where(owner[..., None] == 1, jaw_normals[1], jaw_normals[0])
    inner_normals = np.stack([p.normal(inner3d) for p in surface], -2)
    normals[:, 17:] = np.take_along_axis(inner_normals, best[..., None, None], -2)[..., 0, :]

    marks2d = np.concatenate([ident["moles"], ident["freckles"]], 1)
    mz, mbest = lift(marks2d[..., 0], marks2d[..., 1])
    mz = np.where(np.isfinite(mz), mz, 0.0)
    marks = np.stack([marks2d[..., 0], marks2d[..., 1], mz + 0.004, marks2d[..., 2]], -1)
    mark_normals = np.stack([p.normal(marks[..., :3]) for p in surface], -2)
    mark_normals = np.take_along_axis(mark_normals, mbest[..., None, None], -2)[..., 0, :]
    return FaceModel(landmarks=landmarks, normals=normals, parts=parts,
                     surface=HEAD_SURFACE, marks=marks, mark_normals=mark_normals)
