"""SynthFace renderer: determinism, geometry, visibility, primitives and post-processing."""

from __future__ import annotations

import dataclasses
import itertools
import math
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

import numpy as np
import pytest
import torch

from fkdlib.data.synthface import params as P
from fkdlib.data.synthface import render as R
from fkdlib.errors import ConfigError


def _samples(keys, difficulty="hard", **override):
    identities = [P.sample_identity(0, g) for g, _ in keys]
    nuisances = [dataclasses.replace(P.sample_nuisance(0, "train", g, i, difficulty), **override)
                 for g, i in keys]
    return identities, nuisances


@pytest.fixture
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("resolution, aligned", [(24, False), (64, True)])
def test_pixels_do_not_depend_on_batch_order_chunking_or_threads(resolution, aligned,
                                                                 one_thread):
    keys = [(g, i) for g in range(10) for i in range(4)]
    ids, nus = _samples(keys)
    # Hard samples exercise every layer, occluders included.
    assert all(sum(getattr(n, name) > 0 for n in nus) >= 2
               for name in ("glasses", "scarf", "hand", "compression_step", "blur"))
    reference = R.render(ids, nus, resolution, aligned, chunk_size=40)
    for k in (0, 7, 22, 39):
        alone = R.render([ids[k]], [nus[k]], resolution, aligned)
        assert torch.equal(alone.images[0], reference.images[k])
        assert torch.equal(alone.landmarks68[0], reference.landmarks68[k])
        assert torch.equal(alone.visible68[0], reference.visible68[k])
    # Every sample again, in another order and in chunks of 7 other samples.
    order = np.random.default_rng(3).permutation(len(keys))
    shuffled = R.render([ids[k] for k in order], [nus[k] for k in order], resolution,
                        aligned, chunk_size=7)
    assert torch.equal(shuffled.images[np.argsort(order)], reference.images)
    torch.set_num_threads(2)
    # Two workers, each rendering a chunk of 20...
    two = R.render(ids, nus, resolution, aligned, chunk_size=40)
    assert torch.equal(two.images, reference.images)
    assert torch.get_num_threads() == 2  # the setting is restored
    # ... and one chunk with two intra-op threads: 40 images exceed PyTorch's parallel
    # grain, so single kernels are split across threads.
    intra = R._rasterise(R.build_scene(ids, nus, resolution, aligned))
    assert torch.equal(intra, reference.images)


def test_worker_processes_and_threads_render_the_same_pixels(one_thread, monkeypatch):
    keys = [(g, i) for g in range(6) for i in range(4)]
    ids, nus = _samples(keys)
    serial = R.render(ids, nus, 32, chunk_size=5).images
    torch.set_num_threads(2)
    with R.kept_workers():
        count, pool = R._kept_pool
        assert count == 2 and isinstance(pool, ProcessPoolExecutor)
        first = R.render(ids, nus, 32, chunk_size=5).images
        second = R.render(ids, nus, 32, chunk_size=5).images
        assert R._kept_pool[1] is pool  # reused, not forked again
    assert R._kept_pool is None
    assert torch.equal(first, serial) and torch.equal(second, serial)
    monkeypatch.setattr(R.sys, "platform", "darwin")  # no safe fork: threads
    with R.kept_workers():
        assert isinstance(R._kept_pool[1], ThreadPoolExecutor)
        threaded = R.render(ids, nus, 32, chunk_size=5).images
    assert torch.equal(threaded, serial)


def test_large_images_do_not_depend_on_their_chunk(one_thread):
    # At 100 px a feature's box is many pixels wide, so a box sized from other images (a bug
    # this test once caught in the glasses) shows up in the pixels.
    keys = [(g, i) for g in range(12) for i in range(6)]
    ids, nus = _samples(keys)
    whole = R.render(ids, nus, 100, chunk_size=72).images
    halves = R.render(ids, nus, 100, chunk_size=36).images
    assert torch.equal(whole, halves)


def test_output_shapes_and_types():
    ids, nus = _samples([(0, 0), (1, 1), (2, 2)])
    out = R.render(ids, nus, 20)
    assert out.images.shape == (3, 3, 20, 20) and out.images.dtype == torch.uint8
    assert out.landmarks68.shape == (3, 68, 2) and out.landmarks68.dtype == torch.float32
    assert out.visible68.shape == (3, 68) and out.visible68.dtype == torch.bool
    assert out.landmarks5.shape == (3, 5, 2)
    # Five points: eye centres are the means of the six eye landmarks; then 30, 48, 54.
    lm = out.landmarks68
    torch.testing.assert_close(out.landmarks5[:, 0], lm[:, 36:42].mean(1))
    torch.testing.assert_close(out.landmarks5[:, 1], lm[:, 42:48].mean(1))
    assert torch.equal(out.landmarks5[:, 2:], lm[:, [30, 48, 54]])


@pytest.mark.parametrize("resolution", [15, 129, 0, 64.0, True, "64"])
def test_resolution_outside_16_to_128_is_refused(resolution):
    ids, nus = _samples([(0, 0)])
    with pytest.raises(ConfigError, match="between 16 and 128|integer"):
        R.render(ids, nus, resolution)


def test_both_resolution_bounds_render():
    ids, nus = _samples([(0, 0)], "easy")
    for resolution in (16, 128):
        image = R.render(ids, nus, resolution).images[0]
        assert image.shape == (3, resolution, resolution)
        assert image.float().std() > 10  # not blank


def test_frontal_aligned_face_fits_the_template_and_the_frame():
    keys = [(g, 0) for g in range(12)]
    ids, nus = _samples(keys, "easy", yaw=0.0, pitch=0.0, roll=0.0, smile=0.0, mouth_open=0.0)
    out = R.render(ids, nus, 64, aligned=True)
    template = torch.from_numpy(R.template_points(64)).float()
    error = (out.landmarks5 - template).norm(dim=-1)
    assert error.mean() < 1.5 and error.max() < 3.0
    assert torch.all(out.visible68)
    # Pixel centres are at integers, so the image spans [-0.5, 63.5]. The chin lies about 1.6
    # eye distances below the eyes, as on real faces, near the template's bottom edge: a long
    # chin may pass it by a few pixels, as in insightface's own crops.
    lm = out.landmarks68
    assert torch.all((lm >= -0.5) & (lm[..., 0] <= 63.5)[..., None])
    chin = list(range(6, 11))
    others = [k for k in range(68) if k not in chin]
    assert torch.all(lm[:, others, 1] <= 63.5) and torch.all(lm[:, chin, 1] <= 63.5 + 4.0)


def test_far_side_landmarks_are_hidden_at_large_yaw():
    ids, nus = _samples([(3, 0), (3, 0)], "easy", pitch=0.0, roll=0.0)
    nus = [dataclasses.replace(nus[0], yaw=80.0), dataclasses.replace(nus[1], yaw=-80.0)]
    visible = R.render(ids, nus, 32, aligned=False).visible68
    far_right, far_left = list(range(12, 17)), list(range(0, 5))
    # Yaw > 0 turns the nose to the image right: the image-right half turns away, while the
    # near half and the chin (point 8) stay visible.
    assert not visible[0, far_right].any() and visible[0, list(range(0, 9))].all()
    assert not visible[1, far_left].any() and visible[1, list(range(8, 17))].all()
    assert not visible[0, [42, 43, 44, 45, 46, 47]].any()  # the far eye
    assert visible[0, [36, 37, 38, 39, 40, 41, 30]].all()   # the near eye and the nose tip


def test_pose_moves_the_features_consistently():
    base = dict(pitch=0.0, roll=0.0)
    ids, nus = _samples([(2, 0)] * 4, "easy", **base)
    nus = [dataclasses.replace(n, yaw=yaw, pitch=pitch) for n, (yaw, pitch) in
           zip(nus, [(0.0, 0.0), (40.0, 0.0), (0.0, 30.0), (0.0, -30.0)])]
    lm = R.render(ids, nus, 64, aligned=False).landmarks68
    eyes_mid = (lm[:, 39] + lm[:, 42]) / 2
    offset = lm[:, 30] - eyes_mid
    assert abs(offset[0, 0]) < 0.5 and offset[1, 0] > 3  # nose tip to the right with yaw
    # The nose tip sticks out, so it rises towards the eyes when the face turns up (pitch > 0)
    # and drops when it turns down; the flat eye-to-mouth distance shortens both ways.
    assert offset[2, 1] < offset[0, 1] < offset[3, 1]
    eye_to_mouth = (lm[:, 57, 1] - eyes_mid[:, 1])
    assert eye_to_mouth[2] < eye_to_mouth[0] and eye_to_mouth[3] < eye_to_mouth[0]


def test_identities_differ_more_than_images_of_one_identity():
    keys = [(g, i) for g in range(8) for i in range(4)]
    ids, nus = _samples(keys, "easy")
    images = R.render(ids, nus, 32).images.float() / 255.0
    centre = images[:, :, 8:24, 8:24].reshape(len(keys), -1)
    distance = torch.cdist(centre, centre) / math.sqrt(centre.shape[1])
    labels = torch.tensor([g for g, _ in keys])
    same = (labels[:, None] == labels[None]) & ~torch.eye(len(keys), dtype=torch.bool)
    different = labels[:, None] != labels[None]
    assert distance[same].mean() < 0.6 * distance[different].mean()


def test_ellipsoid_coverage_area_and_depth_match_a_sphere():
    canvas = R._Canvas(1, 64)
    win = canvas.everywhere()
    radius = 20.0
    sphere = P.Ellipsoids.from_axes(np.array([[31.3, 30.6, 5.0]]), np.full((1, 3), radius))
    surface = R._ellipsoid(win, sphere, np.array([0]), want_depth=True)
    area = surface.alpha.sum().item()
    assert abs(area - math.pi * radius ** 2) < 2 * math.pi * radius * 0.05
    r = torch.sqrt((win.gx - 31.3) ** 2 + (win.gy - 30.6) ** 2)[0, 0]
    alpha = surface.alpha[0, 0]
    assert torch.all(alpha[r < radius - 1] == 1) and torch.all(alpha[r > radius + 1] == 0)
    inside = r < radius - 1
    expected = 5.0 + torch.sqrt(radius ** 2 - r[inside] ** 2)
    torch.testing.assert_close(surface.depth[0, 0][inside], expected, atol=2e-3, rtol=0)


def test_similarity_fit_recovers_a_known_transform():
    rng = np.random.default_rng(4)
    src = rng.normal(size=(2, 5, 2))
    a, b, t = np.array([1.7, -0.4]), np.array([0.3, 2.1]), np.array([[3.0, -1.0], [0.5, 9.0]])
    dst = np.stack([a[:, None] * src[..., 0] - b[:, None] * src[..., 1],
                    b[:, None] * src[..., 0] + a[:, None] * src[..., 1]], -1) + t[:, None]
    fa, fb, ft = R._similarity_to_template(src, dst)
    np.testing.assert_allclose(fa, a, rtol=1e-12)
    np.testing.assert_allclose(fb, b, rtol=1e-12)
    np.testing.assert_allclose(ft, t, rtol=1e-12, atol=1e-12)


def test_blur_weights_are_a_normalised_truncated_gaussian():
    image = torch.zeros(2, 3, 15, 15)
    image[:, :, 7, 7] = 1.0
    sigma = np.array([0.8, 1.5])
    out = R._blur(image.clone(), sigma)
    for k, s in enumerate(sigma):
        radius = math.ceil(2 * s)
        taps = np.array([math.exp(-d * d / (2 * s * s)) for d in range(-radius, radius + 1)])
        taps /= taps.sum()
        expected = np.zeros(15)
        expected[7 - radius:8 + radius] = taps
        np.testing.assert_allclose(out[k, 0, 7].numpy(), expected * taps[radius], atol=1e-7)
        assert abs(out[k].sum().item() - 3.0) < 1e-5
    flat = torch.full((1, 3, 9, 9), 0.3)
    torch.testing.assert_close(R._blur(flat.clone(), np.array([1.2])), flat)


def test_block_compression_keeps_block_means_and_quantises_residuals():
    rng = torch.Generator().manual_seed(0)
    image = torch.rand(1, 3, 19, 21, generator=rng)
    step = 0.1
    out = R._compress(image.clone(), np.array([step]))
    block = image[:, :, :8, :8]
    mean = block.mean(dim=(2, 3), keepdim=True)
    residual = (out[:, :, :8, :8] - mean) / step
    torch.testing.assert_close(residual, residual.round(), atol=1e-4, rtol=0)
    assert (out - image).abs().max() <= step / 2 + 1e-5
    assert not torch.equal(out, image)


def test_windows_mask_everything_outside_each_images_box():
    canvas = R._Canvas(2, 32)
    boxes = np.array([[2.0, 3.0, 9.0, 6.0], [20.0, 10.0, 30.5, 25.0]])
    win = canvas.window(np.array([0, 1]), boxes)
    assert win.shape == (int(np.ceil(15.0)) + 3, int(np.ceil(10.5)) + 3)
    alpha = win.bounded(torch.ones(2, 1, *win.shape))
    for k, (x0, y0, x1, y1) in enumerate(boxes):
        gx, gy = win.gx[k, 0, 0], win.gy[k, 0, :, 0]
        inside = ((gy >= y0) & (gy <= y1))[:, None] & ((gx >= x0) & (gx <= x1))[None]
        assert torch.equal(alpha[k, 0] > 0, inside)
    canvas.rgb.zero_()
    canvas.paint(win, torch.ones(2, 1, *win.shape), torch.ones(2, 3, 1, 1))
    assert canvas.rgb[0, 0].sum().item() == (9 - 2 + 1) * (6 - 3 + 1)


def test_aligned_crops_keep_the_face_at_every_pose():
    """Aligned crops follow the five-point fit as real aligners do, but stop its zoom at
    MAX_ALIGN_ZOOM and centre strongly turned faces inside the head: up to 30 degrees of yaw
    and pitch all but a few jaw points are in the frame (the chin, which may pass the
    template's bottom edge as in insightface's own crops, aside), and at the hard preset's
    extreme poses nine tenths of the face."""
    def inside(yaws, pitches, rolls):
        poses = list(itertools.product(yaws, pitches, rolls))
        ids, nus = [], []
        for g in range(4):
            for yaw, pitch, roll in poses:
                ident, nuis = _samples([(g, 0)], "hard", yaw=yaw, pitch=pitch, roll=roll)
                ids += ident
                nus += nuis
        lm = R.render(ids, nus, 64, aligned=True).landmarks68
        face = [k for k in range(68) if k not in range(6, 11)]  # all but the chin
        return ((lm[:, face] >= -0.5) & (lm[:, face] <= 63.5)).all(-1).float().mean(1), ids, nus

    moderate, _, _ = inside((-30.0, 0.0, 30.0), (-30.0, 0.0, 30.0), (-30.0, 30.0))
    assert moderate.min() >= 0.95
    extreme, ids, nus = inside((-90.0, -45.0, 0.0, 45.0, 90.0), (-45.0, 0.0, 45.0),
                               (-30.0, 0.0, 30.0))
    assert extreme.min() >= 0.9 and extreme.mean() >= 0.98
    # the zoom never exceeds MAX_ALIGN_ZOOM times the frontal scale
    frontal = R.build_scene(ids[:1], [dataclasses.replace(nus[0], yaw=0.0, pitch=0.0)], 64,
                            aligned=True).scale[0]
    turned = R.build_scene(ids[:45], nus[:45], 64, aligned=True).scale
    assert turned.max() <= R.MAX_ALIGN_ZOOM * frontal * (1 + 1e-12)
    assert turned.min() < 0.9 * frontal  # below that, the five-point fit's own scale


def test_relief_dome_is_one_at_the_centre_and_flat_at_the_outline():
    sphere = P.Ellipsoids.from_axes(np.array([[15.5, 15.5, 0.0]]), np.array([[8.0, 8.0, 8.0]]))
    canvas = R._Canvas(1, 32)
    win = canvas.window(np.array([0]), np.array([[0.0, 0.0, 31.0, 31.0]]))
    dome = R._dome(win, sphere, np.array([0]))[0, 0]
    r = torch.sqrt((win.gx[0, 0] - 15.5) ** 2 + (win.gy[0, 0] - 15.5) ** 2)
    expected = (1.0 - (r / 8.0) ** 2).clamp(min=0.0) ** 2
    torch.testing.assert_close(dome, expected.expand_as(dome), atol=1e-5, rtol=0)


def test_camera_colour_matrix():
    neutral, offset = R.camera_matrix(np.array([[1.0, 1.0, 1.0, 1.0]]))
    np.testing.assert_allclose(neutral[0], np.eye(3), atol=1e-15)
    np.testing.assert_allclose(offset, 0.0, atol=1e-15)
    colour = np.array([0.8, 0.4, 0.2])
    grey, offset = R.camera_matrix(np.array([[0.0, 1.0, 1.0, 1.0]]))  # no saturation
    np.testing.assert_allclose(grey[0] @ colour, np.full(3, R.LUMA @ colour))
    flat, offset = R.camera_matrix(np.array([[1.0, 0.5, 1.0, 1.0]]))  # half contrast
    np.testing.assert_allclose(flat[0] @ np.full(3, 0.5) + offset[0], 0.5)  # mid grey stays
    np.testing.assert_allclose(flat[0] @ colour + offset[0], 0.5 + 0.5 * (colour - 0.5))
    warm, _ = R.camera_matrix(np.array([[1.0, 1.0, 1.1, 0.9]]))  # white balance gains
    np.testing.assert_allclose(warm[0] @ colour, colour * [1.1, 1.0, 0.9])
    rgb = torch.rand(2, 3, 4, 4)
    camera = np.array([[0.7, 1.1, 1.05, 0.95], [1.2, 0.9, 0.97, 1.03]])
    matrix, offset = R.camera_matrix(camera)
    expected = torch.einsum("bkc,bchw->bkhw", torch.tensor(matrix, dtype=torch.float32), rgb) \
        + torch.tensor(offset, dtype=torch.float32)[..., None, None]
    torch.testing.assert_close(R._camera_colour(rgb, camera), expected, atol=1e-6, rtol=0)
