"""FAN training on landmark heatmaps (fkdlib.training.landmarks): the mirror permutation, the
flip of targets with the images, the loss, and a short training run that learns."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fkdlib.data.synthface import params as P
from fkdlib.data.synthface.dataset import SynthFace
from fkdlib.data.transforms import hflip, hflip_mask, random_hflip
from fkdlib.evaluation.landmarks import (
    MIRROR_51,
    MIRROR_68,
    decode_heatmaps,
    landmark_heatmaps,
    mirror_landmarks,
    predict_landmarks,
    to_heatmap_coordinates,
    to_image_coordinates,
)
from fkdlib.models.fan import FAN
from fkdlib.training.landmarks import LandmarkTask
from fkdlib.training.trainer import TrainConfig, Trainer


def test_mirror_swaps_left_and_right_points_and_fixes_the_midline():
    order = np.array(MIRROR_68)
    assert sorted(order) == list(range(68)) and (order[order] == np.arange(68)).all()
    assert (MIRROR_68[36], MIRROR_68[45], MIRROR_68[0], MIRROR_68[48]) == (45, 36, 16, 54)
    assert [k for k in range(68) if MIRROR_68[k] == k] == [8, 27, 28, 29, 30, 33, 51, 57, 62, 66]
    # SynthFace's mean face is symmetric: mirrored, it is itself
    template = torch.as_tensor(P.MEAN_INNER_XY)
    mirrored = template[list(MIRROR_51)] * torch.tensor([-1.0, 1.0])
    torch.testing.assert_close(mirrored, template, atol=1e-9, rtol=0)


def test_mirrored_landmarks_follow_the_flipped_pixels():
    points = torch.tensor([[[2.0, 3.0]] + [[10.0, 20.0]] * 50])
    flipped = mirror_landmarks(points, 64)
    assert flipped[0, MIRROR_51[0], 0] == 61.0  # x -> 63 - x
    torch.testing.assert_close(mirror_landmarks(flipped, 64), points)
    image = torch.zeros(1, 1, 8, 8)
    image[0, 0, 3, 2] = 1.0
    row, col = divmod(int(hflip(image, torch.tensor([True]))[0, 0].argmax()), 8)
    assert (col, row) == (7 - 2, 3)


def test_random_hflip_draws_the_mask_it_always_drew():
    images = torch.arange(6 * 4, dtype=torch.float32).view(6, 1, 1, 4)
    expected_mask = torch.rand(6, generator=torch.Generator().manual_seed(5)) < 0.5
    mask = hflip_mask(6, torch.Generator().manual_seed(5))
    assert torch.equal(mask, expected_mask)
    out = random_hflip(images, torch.Generator().manual_seed(5))
    torch.testing.assert_close(out[mask], images[mask].flip(-1))
    torch.testing.assert_close(out[~mask], images[~mask])


def _synthface(tmp_path, identities=4, images=8):
    return SynthFace("train", identities, images, 64, difficulty="easy", aligned=False,
                     cache_dir=tmp_path)


def test_task_targets_flips_and_loss(tmp_path):
    torch.manual_seed(0)
    task = LandmarkTask(FAN(width=0.125, input_size=64), sigma=1.5)
    data = _synthface(tmp_path, 2, 2)
    targets = task.training_targets(data)
    np.testing.assert_array_equal(targets.numpy(), data.landmarks68()[:, 17:])
    flipped = task.flip_targets(targets, torch.tensor([True, False, False, True]), 64)
    torch.testing.assert_close(flipped[1:3], targets[1:3])
    torch.testing.assert_close(flipped[0], mirror_landmarks(targets[:1], 64)[0])
    images = torch.randn(4, 3, 64, 64)
    heatmaps = task.fan(images)
    goal = landmark_heatmaps(to_heatmap_coordinates(targets, 4), 16, 1.5)
    expected = (F.mse_loss(heatmaps[0], goal) + F.mse_loss(heatmaps[1], goal)) / 2
    torch.testing.assert_close(task(images, targets)["heatmap_mse"], expected)


def test_a_short_training_run_lowers_the_heatmap_loss(tmp_path):
    torch.manual_seed(0)
    task = LandmarkTask(FAN(width=0.125, input_size=64), sigma=1.5)
    config = TrainConfig(epochs=4, batch_size=16, lr=1e-3, optimizer="adamw",
                         weight_decay=0.0, schedule="constant", amp=False)
    history = Trainer(task, config).fit(_synthface(tmp_path, 8, 8))
    loss = history["loss_heatmap_mse"].to_numpy()
    assert loss[-1] < 0.7 * loss[0]


def test_fan_needs_landmarks_it_can_learn(tmp_path):
    from fkdlib.errors import ConfigError

    with pytest.raises(ConfigError, match="68 or the 51 internal points"):
        LandmarkTask(FAN(width=0.125, num_landmarks=5, input_size=64)).training_targets(
            _synthface(tmp_path, 1, 1))


def test_per_image_targets_need_an_in_memory_dataset():
    from fkdlib.errors import ConfigError

    class Listed(torch.utils.data.Dataset):
        def __len__(self):
            return 32

        def __getitem__(self, index):
            return {"image": torch.zeros(3, 64, 64), "identity": 0}

    class Targets(LandmarkTask):
        def training_targets(self, dataset):
            return torch.zeros(32, 51, 2)

    task = Targets(FAN(width=0.125, input_size=64))
    with pytest.raises(ConfigError, match="cannot give all its images at once"):
        Trainer(task, TrainConfig(batch_size=16, amp=False)).fit(Listed())


def test_the_zoo_trains_and_caches_a_fan(tmp_path):
    from fkdlib.errors import ConfigError
    from fkdlib.zoo import ModelSpec, get_or_train

    spec = ModelSpec(
        backbone="fan", head="", method="landmarks", method_kwargs={"sigma": 1.5},
        backbone_kwargs={"width": 0.125, "input_size": 64},
        data={"kind": "synthface", "split": "train", "num_identities": 4,
              "images_per_identity": 8, "resolution": 64, "seed": 0, "difficulty": "easy",
              "aligned": False},
        train={"epochs": 2, "batch_size": 16, "lr": 1e-3, "optimizer": "adamw",
               "weight_decay": 0.0, "schedule": "constant", "seed": 0},
        profile="smoke", name="tiny FAN")
    first = get_or_train(spec, cache_dir=tmp_path, log=lambda line: None)
    assert not first.from_cache and isinstance(first.head, torch.nn.Identity)
    assert "loss_heatmap_mse" in first.history.columns
    again = get_or_train(spec, cache_dir=tmp_path, log=lambda line: None)
    assert again.from_cache
    for key, value in first.backbone.state_dict().items():
        torch.testing.assert_close(again.backbone.state_dict()[key], value)
    with pytest.raises(ConfigError, match="trains a FAN without a margin head"):
        get_or_train(spec.replace(backbone="iresnet18", backbone_kwargs={
            "input_size": 64, "width": 0.125}), cache_dir=tmp_path, log=lambda line: None)


# ----------------------------------------------------------------------------- FAN-Face


def _tiny_fan_spec(resolution=16):
    from fkdlib.zoo import ModelSpec

    return ModelSpec(
        backbone="fan", head="", method="landmarks", method_kwargs={"sigma": 1.0},
        backbone_kwargs={"width": 0.125, "depth": 2, "input_size": resolution},
        data={"kind": "synthface", "split": "train", "num_identities": 4,
              "images_per_identity": 4, "resolution": resolution, "seed": 0,
              "difficulty": "easy", "aligned": False},
        train={"epochs": 1, "batch_size": 8, "lr": 1e-3, "optimizer": "adamw",
               "weight_decay": 0.0, "schedule": "constant", "seed": 0},
        profile="smoke", name="tiny FAN")


def _frn_spec(fan_spec, method, **options):
    frn = {"depth": 18, "input_size": 16, "width": 0.125, "embedding_size": 8,
           "fan_stacks": 2, "fan_width": 0.125, "fan_depth": 2, **options}
    return fan_spec.replace(backbone="fan_face", head="cosface", backbone_kwargs=frn,
                            head_kwargs={"s": 16.0, "m": 0.2}, method=method,
                            method_kwargs={"fan": fan_spec.to_dict()}
                            if method == "fan_guided" else {},
                            train={"epochs": 1, "batch_size": 8, "lr": 0.05, "seed": 0},
                            name="tiny FAN-Face")


def test_fan_face_trains_on_the_zoos_fan_and_never_changes_it(tmp_path):
    from fkdlib.zoo import get_or_train

    quiet = {"cache_dir": tmp_path, "log": lambda line: None}
    fan = get_or_train(_tiny_fan_spec(), **quiet)
    face = get_or_train(_frn_spec(_tiny_fan_spec(), "fan_guided"), **quiet)
    assert "loss_ce" in face.history.columns
    for key, value in fan.backbone.state_dict().items():
        torch.testing.assert_close(face.backbone.fan.state_dict()[key], value)
    again = get_or_train(_frn_spec(_tiny_fan_spec(), "fan_guided"), **quiet)
    assert again.from_cache
    torch.testing.assert_close(again.backbone.fan.to_heatmaps[1].weight,
                               fan.backbone.to_heatmaps[1].weight)


def test_fan_face_refuses_a_fan_of_another_size_or_method(tmp_path):
    from fkdlib.errors import ConfigError
    from fkdlib.zoo import get_or_train

    quiet = {"cache_dir": tmp_path, "log": lambda line: None}
    wider = _frn_spec(_tiny_fan_spec(), "fan_guided", fan_width=0.25)
    with pytest.raises(ConfigError, match="does not fit the FAN inside"):
        get_or_train(wider, **quiet)
    not_a_fan = _frn_spec(_tiny_fan_spec(), "fan_guided")
    not_a_fan = not_a_fan.replace(method_kwargs={"fan": not_a_fan.replace(
        method="classify", method_kwargs={}).to_dict()})
    with pytest.raises(ConfigError, match="method 'landmarks'"):
        get_or_train(not_a_fan, **quiet)
    with pytest.raises(ConfigError, match="multitask=True"):
        get_or_train(_frn_spec(_tiny_fan_spec(), "landmark_multitask"), **quiet)


def test_multitask_targets_carry_identity_and_landmarks_and_flip_only_the_landmarks(tmp_path):
    from fkdlib.heads import create_head
    from fkdlib.models import create_model
    from fkdlib.training.landmarks import MultitaskLandmarkTask

    torch.manual_seed(0)
    backbone = create_model("fan_face", depth=18, input_size=32, width=0.125, embedding_size=8,
                            heatmaps="none", integration=None, multitask=True)
    head = create_head("cosface", embedding_size=8, num_classes=4, s=16.0, m=0.2)
    task = MultitaskLandmarkTask(backbone, head)
    data = SynthFace("train", 4, 2, 32, difficulty="easy", aligned=False, cache_dir=tmp_path)
    targets = task.training_targets(data)
    assert targets.shape == (8, 1 + 2 * 51)
    np.testing.assert_array_equal(targets[:, 0].numpy(), data.metadata["identity"].to_numpy())
    np.testing.assert_array_equal(targets[:, 1:].reshape(8, 51, 2).numpy(),
                                  data.landmarks68()[:, 17:])
    flip = torch.tensor([True, False] * 4)
    flipped = task.flip_targets(targets, flip, 32)
    torch.testing.assert_close(flipped[:, 0], targets[:, 0])
    torch.testing.assert_close(flipped[~flip], targets[~flip])
    torch.testing.assert_close(flipped[0, 1:].reshape(51, 2),
                               mirror_landmarks(targets[:1, 1:].reshape(1, 51, 2), 32)[0])
    images = torch.randn(8, 3, 32, 32)
    losses = task(images, targets)
    features = backbone.forward_features(images)
    labels = targets[:, 0].long()
    ce = F.cross_entropy(head(features["embedding"], labels), labels)
    # layer 4 is 2x2 at 32 px: a stride of 16 pixels per heatmap pixel
    goal = landmark_heatmaps(to_heatmap_coordinates(targets[:, 1:].reshape(8, 51, 2), 16), 2)
    torch.testing.assert_close(losses["ce"], ce)
    torch.testing.assert_close(losses["heatmap_mse"], 0.1 * F.mse_loss(features["heatmaps"],
                                                                       goal))


def test_a_fan_larger_than_the_images_learns_their_landmarks_at_its_own_side(tmp_path):
    torch.manual_seed(0)
    task = LandmarkTask(FAN(width=0.125, input_size=64), sigma=1.0)
    data = SynthFace("train", 2, 2, 32, difficulty="easy", aligned=False, cache_dir=tmp_path)
    targets = task.training_targets(data)
    images = torch.randn(4, 3, 32, 32)
    up = F.interpolate(images, size=(64, 64), mode="bilinear", align_corners=False)
    torch.testing.assert_close(task.fan.resized(images), up)
    assert task.fan.resized(up) is up
    heatmaps = task.fan(up)
    # 32 px landmarks on 16x16 heatmaps of a 64 px input: 2 image pixels per heatmap pixel
    goal = landmark_heatmaps(to_heatmap_coordinates(targets, 2), 16, 1.0)
    expected = (F.mse_loss(heatmaps[0], goal) + F.mse_loss(heatmaps[1], goal)) / 2
    torch.testing.assert_close(task(images, targets)["heatmap_mse"], expected)
    # and what it finds comes back in the 32 px images' pixels
    found = predict_landmarks(task.fan, images)
    with torch.no_grad():
        last = task.fan.eval()(up)[-1]
    torch.testing.assert_close(found, to_image_coordinates(decode_heatmaps(last), 2))


def test_multitask_on_faces_without_landmarks_learns_those_the_fan_finds():
    from fkdlib.errors import ConfigError
    from fkdlib.heads import create_head
    from fkdlib.models import create_model
    from fkdlib.training.landmarks import MultitaskLandmarkTask

    class Unlabelled(torch.utils.data.Dataset):  # identities, no landmarks (real faces)
        def __len__(self):
            return 4

    torch.manual_seed(0)
    backbone = create_model("fan_face", depth=18, input_size=32, width=0.125, embedding_size=8,
                            heatmaps="none", integration=None, multitask=True)
    head = create_head("softmax", embedding_size=8, num_classes=2)
    fan = FAN(width=0.125, input_size=64)
    task = MultitaskLandmarkTask(backbone, head, fan=fan).train()
    assert not fan.training and not any(p.requires_grad for p in fan.parameters())
    assert task.training_targets(Unlabelled()) is None
    labels = torch.tensor([0, 1, 1, 0])
    assert task.flip_targets(labels, torch.tensor([True] * 4), 32) is labels
    images = torch.randn(4, 3, 32, 32)
    losses = task(images, labels)
    features = backbone.forward_features(images)
    found = predict_landmarks(fan, images)
    goal = landmark_heatmaps(to_heatmap_coordinates(found, 16), 2)
    torch.testing.assert_close(losses["heatmap_mse"], 0.1 * F.mse_loss(features["heatmaps"], goal))
    with pytest.raises(ConfigError, match="finds 68 landmarks"):
        MultitaskLandmarkTask(backbone, head, fan=FAN(width=0.125, num_landmarks=68,
                                                      input_size=64))
    without = MultitaskLandmarkTask(backbone, head)
    with pytest.raises(ConfigError, match="no landmarks68"):
        without.training_targets(Unlabelled())
