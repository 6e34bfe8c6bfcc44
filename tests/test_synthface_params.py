"""SynthFace parameter sampling and the 3-D face model: purity, ranges, attributes, geometry."""

from __future__ import annotations

import dataclasses
import itertools
import math

import numpy as np
import pytest

from fkdlib.data.synthface import params as P
from fkdlib.errors import ConfigError

# iBUG-68 left/right partners (image-left point, image-right point).
IBUG_MIRROR = ([(i, 16 - i) for i in range(8)] + [(17 + i, 26 - i) for i in range(5)]
               + [(31, 35), (32, 34), (36, 45), (37, 44), (38, 43), (39, 42), (40, 47), (41, 46),
                  (48, 54), (49, 53), (50, 52), (59, 55), (58, 56), (60, 64), (61, 63),
                  (67, 65)])
IBUG_MIDLINE = (8, 27, 28, 29, 30, 33, 51, 57, 62, 66)


def _fields_equal(a, b) -> bool:
    return all(np.array_equal(np.asarray(getattr(a, f.name)), np.asarray(getattr(b, f.name)))
               for f in dataclasses.fields(a))


def _mean_identity() -> dict[str, np.ndarray]:
    """Stacked fields of an identity with every shape scalar at 1 and the mean template."""
    ident = P.stack_identities([P.sample_identity(0, 0)])
    for name in ("face_width", "face_length", "jaw_width", "cranium_height", "nose_length",
                 "nose_width", "nose_protrusion", "ear_size", "neck_width"):
        ident[name] = np.ones(1)
    ident["inner_xy"] = P.MEAN_INNER_XY[None].copy()
    return ident


def test_identity_parameters_are_a_pure_function_of_seed_and_id():
    first = [P.sample_identity(3, g) for g in (5, 9, 5)]
    assert _fields_equal(first[0], first[2])
    assert _fields_equal(P.sample_identity(3, 9), first[1])
    assert not _fields_equal(first[0], first[1])
    assert not _fields_equal(P.sample_identity(4, 5), first[0])


def test_nuisance_is_keyed_by_seed_split_identity_and_index():
    base = P.sample_nuisance(0, "train", 7, 2, "medium")
    assert _fields_equal(base, P.sample_nuisance(0, "train", 7, 2, "medium"))
    for other in (P.sample_nuisance(1, "train", 7, 2), P.sample_nuisance(0, "val", 7, 2),
                  P.sample_nuisance(0, "train", 8, 2), P.sample_nuisance(0, "train", 7, 3)):
        assert other.yaw != base.yaw


def test_metadata_shortcuts_equal_the_full_sampling():
    for g, i in [(0, 0), (12, 5), (2_000_003, 1)]:
        full = P.sample_nuisance(5, "test", g, i, "hard")
        assert P.sample_pose_and_drift(5, "test", g, i, "hard") == (
            full.yaw, full.pitch, full.roll, full.age_drift)
        ident = P.sample_identity(5, g)
        assert P.sample_identity_attributes(5, g) == (ident.base_age, ident.gender,
                                                      ident.skin_tone)


def test_difficulty_maps_the_same_draws_to_wider_ranges():
    keys = [(g, i) for g in range(40) for i in range(5)]
    draws = {name: [P.sample_nuisance(0, "train", g, i, name) for g, i in keys]
             for name in P.DIFFICULTIES}
    for name, preset in P.DIFFICULTIES.items():
        yaw = np.array([n.yaw for n in draws[name]])
        pitch = np.array([n.pitch for n in draws[name]])
        assert np.abs(yaw).max() <= preset.max_yaw and np.abs(pitch).max() <= preset.max_pitch
        assert np.abs(yaw).max() > 0.9 * preset.max_yaw  # the range is actually used
        assert max(n.blur for n in draws[name]) <= preset.max_blur
        assert max(n.noise for n in draws[name]) <= preset.max_noise
    # Same uniforms: hard yaw is easy yaw times 90 / 20, sample by sample.
    easy = np.array([n.yaw for n in draws["easy"]])
    hard = np.array([n.yaw for n in draws["hard"]])
    np.testing.assert_allclose(hard, easy * 90.0 / 20.0, rtol=1e-12)
    occluded = {name: sum(n.scarf + n.hand + (n.glasses == 2) for n in nuis)
                for name, nuis in draws.items()}
    assert occluded["easy"] == 0 < occluded["medium"] < occluded["hard"]


def test_unknown_names_fail_clearly():
    with pytest.raises(ConfigError, match="valid difficulties are: easy, medium, hard"):
        P.get_difficulty("extreme")
    with pytest.raises(ConfigError, match="valid splits are: train, val, test"):
        P.split_code("training")


def test_attribute_bins_follow_the_documented_edges():
    assert P.pose_bin(np.array([-90, -30.01, -30, 0, 30, 30.01, 90])).tolist() == [
        0, 0, 2, 2, 2, 1, 1]
    assert P.age_group_of(np.array([5, 19.99, 20, 49.99, 50, 95])).tolist() == [
        0, 0, 1, 1, 2, 2]
    assert P.image_age(np.array([10.0, 90.0]), np.array([-9.0, 9.0])).tolist() == [5.0, 95.0]


def test_cohort_is_a_bijection_onto_270_values():
    combos = list(itertools.product(range(3), range(2), range(5), range(3), range(3)))
    cohorts = [int(P.cohort_of(*c)) for c in combos]
    assert sorted(cohorts) == list(range(P.NUM_COHORTS)) == list(range(270))
    # Mixed radix, last attribute fastest: one step in yaw_bin moves by 1, age by 90.
    assert int(P.cohort_of(1, 0, 0, 0, 0)) == 90 and int(P.cohort_of(0, 0, 0, 0, 1)) == 1


def test_identity_attributes_are_in_range():
    people = [P.sample_identity(0, g) for g in range(60)]
    assert {p.gender for p in people} == {0, 1}
    assert {p.skin_tone for p in people} <= set(range(5)) and len({p.skin_tone
                                                                   for p in people}) >= 4
    for p in people:
        low, high = P.BASE_AGE_RANGES[p.base_age_group]
        assert low <= p.base_age <= high
        assert p.facial_hair == 0 or (p.gender == 1 and p.base_age >= 18)
        assert np.all((p.skin_rgb >= 0) & (p.skin_rgb <= 1))


def test_mean_template_is_mirror_symmetric_in_ibug_order():
    ident = _mean_identity()
    face = P.face_model(ident, np.zeros(1), np.zeros(1), np.zeros(1), np.array([30.0]))
    lm = face.landmarks[0]
    for left, right in IBUG_MIRROR:
        np.testing.assert_allclose(lm[left] * [-1, 1, 1], lm[right], atol=1e-12)
        assert lm[left, 0] < 0 < lm[right, 0]
    np.testing.assert_allclose(lm[list(IBUG_MIDLINE), 0], 0.0, atol=1e-12)
    # iBUG layout: brows above eyes above nose tip above mouth above chin; jaw 0..8 goes down.
    assert lm[19, 1] < lm[37, 1] < lm[30, 1] < lm[51, 1] < lm[57, 1] < lm[8, 1]
    assert np.all(np.diff(lm[0:9, 1]) > 0) and np.all(np.diff(lm[0:9, 0]) > 0)
    assert lm[36, 0] < lm[39, 0] < lm[42, 0] < lm[45, 0]
    # The nose tip is the front-most point, the jaw corners the deepest.
    assert lm[:, 2].argmax() == 30 and lm[[0, 16], 2].max() < lm[17:, 2].min()


def test_landmarks_lie_on_the_head_surface():
    ident = P.stack_identities([P.sample_identity(0, g) for g in range(4)])
    face = P.face_model(ident, np.array([0, 1, 0, 0.5]), np.array([0, 0, 1, 0.3]),
                        np.array([0, 0, 0, 1.0]), np.array([30.0, 8, 60, 40]))
    surface = [face.parts[name] for name in face.surface]
    inner = face.landmarks[:, 17:]
    depth = np.max([p.front_depth(inner[..., 0], inner[..., 1])[0] for p in surface], 0)
    offsets = np.abs(inner[..., 2] - depth)
    assert offsets.max() <= 0.0121  # eyes sit 0.012 below, brows 0.012 above the skin
    # Jaw points are on the rim of the cranium or jaw ellipsoid: quadric value 1.
    jaw = face.landmarks[:, :17]
    values = []
    for part in (face.parts["cranium"], face.parts["jaw"]):
        d = jaw - part.centre[:, None]
        values.append(np.einsum("bni,bij,bnj->bn", d, part.q, d))
    assert np.all(np.isclose(values[0], 1.0) | np.isclose(values[1], 1.0))
    np.testing.assert_allclose(np.linalg.norm(face.normals, axis=-1), 1.0, atol=1e-12)


def test_expressions_move_the_right_landmarks():
    ident = P.stack_identities([P.sample_identity(0, 1)] * 4)
    face = P.face_model(ident, np.array([0, 1, 0, 0.0]), np.array([0, 0, 1, 0.0]),
                        np.array([0, 0, 0, 1.0]), np.full(4, 30.0))
    lm = face.landmarks
    neutral, smile, open_, closed = lm
    # Smile: mouth corners rise (y decreases) and move apart.
    assert smile[48, 1] < neutral[48, 1] - 0.04 and smile[54, 0] > neutral[54, 0]
    # Open mouth: the inner lips separate by about 0.1 face units.
    assert open_[66, 1] - open_[62, 1] > 0.09 > neutral[66, 1] - neutral[62, 1]
    # Closed eyes: the upper lid comes down to the lower lid.
    assert closed[37, 1] - closed[41, 1] > -0.02 > neutral[37, 1] - neutral[41, 1]
    assert np.array_equal(neutral[17:27], smile[17:27])  # brows do not move


def test_ellipsoid_front_depth_solves_the_quadric():
    rng = np.random.default_rng(0)
    axes = np.array([[0.9, 1.1, 1.2]])
    c, s = math.cos(0.4), math.sin(0.4)
    rotation = P.rotation_y(np.array([c]), np.array([s]))
    e = P.Ellipsoids.from_axes(np.array([[0.1, -0.2, 0.3]]), axes, rotation)
    x = rng.uniform(-1.2, 1.2, (1, 200))
    y = rng.uniform(-1.4, 1.2, (1, 200))
    z, inside = e.front_depth(x, y)
    p = np.stack([x, y, z], -1)[inside][None] - e.centre[:, None]
    value = np.einsum("bni,ij,bnj->bn", p, e.q[0], p)
    np.testing.assert_allclose(value, 1.0, rtol=1e-9)
    # The front root is the larger one: the point a little further forward is outside.
    forward = p + np.array([0, 0, 1e-3])
    assert np.all(np.einsum("bni,ij,bnj->bn", forward, e.q[0], forward) > 1.0)
    assert 0 < inside.sum() < inside.size


def test_pose_rotations_follow_the_documented_directions():
    angles = np.array([30.0])
    c, s = P.cos_sin_degrees(angles)
    nose = np.array([0.0, 0.0, 1.0])
    assert (P.rotation_y(c, s)[0] @ nose)[0] > 0          # yaw > 0: nose to the image right
    assert (P.rotation_x(c, s)[0] @ nose)[1] < 0          # pitch > 0: nose up (y is down)
    assert (P.rotation_z(c, s)[0] @ np.array([1.0, 0, 0]))[1] > 0  # roll > 0: clockwise
    for rot in (P.rotation_x(c, s), P.rotation_y(c, s), P.rotation_z(c, s)):
        np.testing.assert_allclose(rot[0] @ rot[0].T, np.eye(3), atol=1e-15)
    a = np.random.default_rng(1).normal(size=(3, 3, 3))
    np.testing.assert_allclose(P.matmul3(a, a), a @ a, rtol=1e-12)


# --- hair as a nuisance, and the renderer's ablation variants --------------------------------

def _restyle_inputs(n: int, styles, genders, restyle, draws):
    ident = P.stack_identities([P.sample_identity(0, g) for g in range(n)])
    ident["hair_style"] = np.asarray(styles)
    ident["gender"] = np.asarray(genders)
    nuis = {"restyle": np.asarray(restyle, dtype=float), "restyle_draws": np.asarray(draws)}
    return ident, nuis


def test_restyle_keeps_or_redraws_the_hair_from_the_photo_draws():
    receding = P.HAIR_STYLES.index("receding")
    draws = [[0.05, 0.99, 0.5, 0.1], [0.95, 0.0, 0.0, 0.9], [0.5, 0.5, 0.5, 0.5],
             [0.5, 0.5, 0.5, 0.5]]
    ident, nuis = _restyle_inputs(4, [1, 2, receding, 1], [1, 0, 1, 0], [1, 1, 1, 0], draws)
    out = P.restyled_hair(ident, nuis)
    # a male restyle at u = 0.99 falls in the last style he can get (long: receding is out)
    assert out["hair_style"][0] == P.HAIR_STYLES.index("long")
    assert out["hair_style"][1] == P.HAIR_STYLES.index("shaved")  # u = 0 -> first style
    assert out["hair_style"][2] == receding  # receding hair never grows back
    np.testing.assert_array_equal(out["hair_rgb"][0], P.HAIR_COLOURS[0])
    np.testing.assert_array_equal(out["hair_rgb"][1], P.HAIR_COLOURS[-1])
    assert out["fringe"][0] == pytest.approx(0.5 + 0.5 * 0.1 / 0.3) and out["fringe"][1] == 0
    assert out["hair_volume"][0] == pytest.approx(0.05 + 0.12 * 0.5 + 0.05)  # long: fuller
    for name in ("hair_style", "hair_rgb", "hair_volume", "fringe"):  # no restyle: unchanged
        np.testing.assert_array_equal(out[name][3], ident[name][3])
    for name in ("skin_rgb", "brow_rgb", "inner_xy"):  # the face itself never changes
        np.testing.assert_array_equal(out[name], ident[name])


def test_restyled_styles_follow_the_gender_frequencies_without_receding():
    n = 4000
    rng = np.random.default_rng(0)
    ident, nuis = _restyle_inputs(1, [1], [1], [1], [[0.5] * 4])
    ident = {k: np.repeat(v, n, axis=0) for k, v in ident.items()}
    nuis = {"restyle": np.ones(n), "restyle_draws": rng.random((n, 4))}
    for gender in (0, 1):
        ident["gender"] = np.full(n, gender)
        styles = P.restyled_hair(ident, nuis)["hair_style"]
        weights = P.HAIR_STYLE_WEIGHTS[gender].copy()
        weights[P.HAIR_STYLES.index("receding")] = 0.0
        expected = weights / weights.sum()
        observed = np.bincount(styles, minlength=len(P.HAIR_STYLES)) / n
        np.testing.assert_allclose(observed, expected, atol=0.03)


def test_variants_switch_one_cue_each():
    keys = [(g, i) for g in range(60) for i in range(5)]
    for difficulty in ("easy", "medium", "hard"):
        standard = np.array([P.sample_nuisance(0, "train", g, i, difficulty).restyle
                             for g, i in keys])
        fixed = [P.sample_nuisance(0, "train", g, i, difficulty, "hair_fixed").restyle
                 for g, i in keys]
        p = P.DIFFICULTIES[difficulty].p_restyle
        assert abs(standard.mean() - p) < 0.07 and not any(fixed)
    plain = P.sample_nuisance(0, "train", 3, 1, "medium")
    flat = P.sample_nuisance(0, "train", 3, 1, "medium", "flat_shading")
    assert flat.diffuse == 0.0
    assert flat.ambient == pytest.approx(plain.ambient + 0.55 * plain.diffuse)
    assert flat.yaw == plain.yaw and np.array_equal(flat.light, plain.light)
    scalars = ("face_width", "face_length", "jaw_width", "cranium_height", "nose_length",
               "nose_width", "nose_protrusion", "ear_size", "neck_width", "chin_width")
    for g in range(5):
        full, half = P.sample_identity(0, g), P.sample_identity(0, g, "half_geometry")
        for name in scalars:  # every departure from the mean shape is halved
            assert getattr(half, name) - 1.0 == pytest.approx(0.5 * (getattr(full, name) - 1.0))
        assert half.skin_rgb.tolist() == full.skin_rgb.tolist()  # colours untouched
        mean = P.sample_identity(0, g, P.Variant("mean", geometry=0.0))
        assert all(getattr(mean, name) == 1.0 for name in scalars)
        np.testing.assert_array_equal(mean.inner_xy, P.MEAN_INNER_XY)
    with pytest.raises(ConfigError, match="valid variants are: standard, hair_fixed"):
        P.get_variant("no_hair")


def test_exposure_brightens_faces_turned_from_the_light():
    assert P._face_shade(0.0, 0.0, np.array([0.0, 0.0, 1.0]), 0.5, 0.6) == pytest.approx(1.1)
    assert P._face_shade(90.0, 0.0, np.array([0.0, 0.0, 1.0]), 0.5, 0.6) == pytest.approx(
        0.5 + 0.2 * 0.6)
    # pitch > 0 turns the face up (y points down): light from above then falls on it
    up = P._face_shade(0.0, 40.0, np.array([0.0, -1.0, 0.0]), 0.5, 0.6)
    assert up == pytest.approx(0.5 + 0.6 * (0.2 + 0.8 * math.sin(math.radians(40.0))))
    shades = []
    for g, i in itertools.product(range(40), range(10)):
        n = P.sample_nuisance(0, "train", g, i, "hard")
        shades.append(P._face_shade(n.yaw, n.pitch, n.light, n.ambient, n.diffuse))
    shades = np.array(shades)
    # the dimmest raw face (ambient 0.42 x 0.85, diffuse 0.5 x 0.85 at 0.2) gets the full gain
    floor = min(P.FRONT_LIT_SHADE, P.MAX_EXPOSURE_GAIN * (0.42 + 0.2 * 0.5) * 0.85)
    assert shades.min() >= floor - 1e-9
    assert np.isclose(shades, P.FRONT_LIT_SHADE).sum() > 10  # the gain is at work
