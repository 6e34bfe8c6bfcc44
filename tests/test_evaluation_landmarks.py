"""Heatmap targets, their decoding and the NME (fkdlib.evaluation.landmarks) against hand
computations."""

import math

import numpy as np

import pytest
import torch

from fkdlib.errors import ConfigError
from fkdlib.evaluation.landmarks import (
    OUTER_EYE_CORNERS_51,
    decode_heatmaps,
    landmark_heatmaps,
    normalised_mean_error,
    to_heatmap_coordinates,
    to_image_coordinates,
)


def test_heatmap_targets_peak_at_the_landmarks_with_a_gaussian_falloff():
    points = torch.tensor([[[3.0, 5.0], [10.0, 2.0]]])
    maps = landmark_heatmaps(points, side=16, sigma=1.5)
    assert maps.shape == (1, 2, 16, 16)
    for k, (x, y) in enumerate(points[0].long().tolist()):
        assert maps[0, k, y, x] == 1.0
        assert maps[0, k].argmax() == y * 16 + x
    # one pixel right and two down of (3, 5): d^2 = 5
    assert maps[0, 0, 7, 4].item() == pytest.approx(math.exp(-5 / (2 * 1.5 ** 2)))
    # halfway between pixels the two neighbours are equal
    half = landmark_heatmaps(torch.tensor([[[4.5, 4.0]]]), side=9)
    assert half[0, 0, 4, 4] == half[0, 0, 4, 5]


def test_decoding_recovers_pixel_landmarks_and_moves_a_quarter_towards_the_true_side():
    points = torch.tensor([[[3.0, 5.0], [10.0, 2.0], [0.0, 15.0]]])
    torch.testing.assert_close(decode_heatmaps(landmark_heatmaps(points, 16)), points)
    shifted = torch.tensor([[[6.3, 7.0], [6.0, 7.4]]])
    decoded = decode_heatmaps(landmark_heatmaps(shifted, 16))
    torch.testing.assert_close(decoded, torch.tensor([[[6.25, 7.0], [6.0, 7.25]]]))


def test_coordinates_between_image_and_heatmap_pixels():
    # the centre of image pixels 0..3 (x = 1.5) is the centre of heatmap pixel 0 at stride 4
    assert to_heatmap_coordinates(torch.tensor(1.5), 4).item() == 0.0
    p = torch.tensor([[[10.25, 33.0]]])
    torch.testing.assert_close(to_image_coordinates(to_heatmap_coordinates(p, 4), 4), p)


def test_nme_divides_the_mean_error_by_the_outer_eye_corner_distance():
    target = torch.zeros(1, 51, 2)
    right, left = OUTER_EYE_CORNERS_51
    assert (right, left) == (19, 28)
    target[0, right] = torch.tensor([10.0, 20.0])
    target[0, left] = torch.tensor([50.0, 20.0])  # inter-ocular distance 40
    predicted = target.clone()
    predicted[0, 0] += torch.tensor([3.0, 4.0])  # one point 5 px off
    nme = normalised_mean_error(predicted, target)
    assert nme.shape == (1,)
    assert nme.item() == pytest.approx(5.0 / 51 / 40.0)
    with pytest.raises(ConfigError, match=r"\(batch, landmarks, 2\)"):
        normalised_mean_error(predicted[0], target[0])


def test_predicted_landmarks_come_back_in_image_pixels():
    from fkdlib.evaluation.landmarks import predict_landmarks

    heat_points = torch.tensor([[[3.0, 5.0], [10.0, 2.0]], [[7.0, 7.0], [0.0, 12.0]]])

    class Oracle(torch.nn.Module):  # answers with Gaussians at the known points
        def forward(self, images):
            index = images[:, 0, 0, 0].long()
            return [landmark_heatmaps(heat_points[index], 16)]

    images = torch.zeros(2, 3, 64, 64)
    images[1] = 1.0
    found = predict_landmarks(Oracle(), images, batch_size=1)
    torch.testing.assert_close(found, to_image_coordinates(heat_points, 4))


def test_nme_by_pose_groups_images_by_absolute_yaw():
    from fkdlib.evaluation.landmarks import nme_by_pose

    target = torch.zeros(3, 51, 2)
    target[:, 19] = torch.tensor([0.0, 0.0])
    target[:, 28] = torch.tensor([10.0, 0.0])  # inter-ocular 10 px
    predicted = target.clone()
    predicted[:, :, 0] += torch.tensor([1.0, 2.0, 3.0]).view(3, 1)  # every point 1, 2, 3 px off
    table = nme_by_pose(predicted, target, np.array([-10.0, 45.0, -70.0])).set_index("pose")
    assert list(table.index) == ["|yaw| 0-30", "|yaw| 30-60", "|yaw| >=60", "all"]
    assert table["nme_percent"].tolist() == pytest.approx([10.0, 20.0, 30.0, 20.0])
    assert table["images"].tolist() == [1, 1, 1, 3]
