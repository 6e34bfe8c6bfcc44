"""FAN-Face training with a bank of the frozen FAN's outputs (fkdlib.training.fan_guided): the
bank gives exactly what the FAN computes at every step, flipped images included."""

import pytest
import torch
import torch.nn.functional as F

from fkdlib.data.synthface.dataset import SynthFace
from fkdlib.data.transforms import hflip, to_float_image
from fkdlib.heads import create_head
from fkdlib.models import create_model
from fkdlib.training.fan_guided import FanGuidedTask, bank_bytes
from fkdlib.training.trainer import TrainConfig, Trainer


def _task(**options):
    torch.manual_seed(0)
    backbone = create_model("fan_face", depth=18, input_size=16, width=0.125, embedding_size=8,
                            fan_width=0.125, fan_depth=2, **options)
    head = create_head("cosface", embedding_size=8, num_classes=3, s=16.0, m=0.2)
    return FanGuidedTask(backbone, head)


@pytest.fixture(scope="module")
def faces(tmp_path_factory):
    return SynthFace("train", 3, 4, 16, difficulty="easy", aligned=False,
                     cache_dir=tmp_path_factory.mktemp("faces"))


@pytest.mark.parametrize("options", [
    {"heatmaps": "h2", "integration": "basic", "fan_half": "h2l"},
    {"heatmaps": "h2+", "integration": None},
    {"heatmaps": "none", "integration": "simple", "fan_half": "l2h", "connectivity": "1-M"}])
def test_the_bank_gives_the_loss_the_fan_gives_at_every_step(faces, options):
    task = _task(**options)
    targets = task.training_targets(faces)
    labels = torch.tensor(faces.metadata["identity"].to_numpy())
    torch.testing.assert_close(targets[:, 0], labels)
    torch.testing.assert_close(targets[:, 1], torch.arange(12))
    flip = torch.tensor([True, False, True] * 4)
    images = hflip(to_float_image(torch.from_numpy(faces.images_u8())), flip)
    rows = task.flip_targets(targets, flip, 16)
    torch.testing.assert_close(rows[:, 1], torch.arange(12) + 12 * flip)
    task.eval()  # BatchNorm on its running statistics, so the two passes are comparable
    banked = task(images, rows)["ce"]
    online = task(images, labels)["ce"]  # identities alone: the FAN runs in the forward
    embedding = task.backbone(images)
    expected = F.cross_entropy(task.head(embedding, labels), labels)
    torch.testing.assert_close(online, expected)
    torch.testing.assert_close(banked, expected, atol=1e-5, rtol=1e-5)


def test_the_bank_holds_only_what_the_network_reads():
    # 51 heatmaps of 4x4 at 16 px (stem stride 4) for H2; two images per training image
    assert bank_bytes(_task(heatmaps="h2", integration=None).backbone, 10) == 2 * 10 * 51 * 16 * 4
    # the h2l half of a depth-2 hourglass at 16 px: 32 channels at 4, 2 and 1 px
    assert bank_bytes(_task(heatmaps="none", integration="basic").backbone, 10) == \
        2 * 10 * 32 * (16 + 4 + 1) * 4


def test_without_room_or_in_memory_images_the_fan_runs_at_every_step(faces):
    task = _task(heatmaps="h2", integration="basic")
    task.limit_bytes = 0
    assert task.training_targets(faces) is None and task.bank is None
    labels = torch.arange(3)
    assert task.flip_targets(labels, torch.tensor([True, False, True]), 16) is labels
    history = Trainer(task, TrainConfig(epochs=1, batch_size=4, lr=0.05, amp=False)).fit(faces)
    assert history["loss_ce"].notna().all()


def test_training_with_the_bank_leaves_the_fan_untouched(faces):
    task = _task(heatmaps="h2", integration="basic")
    before = {k: v.clone() for k, v in task.backbone.fan.state_dict().items()}
    Trainer(task, TrainConfig(epochs=2, batch_size=4, lr=0.05, amp=False)).fit(faces)
    for key, value in task.backbone.fan.state_dict().items():
        torch.testing.assert_close(value, before[key])
    assert task.bank is not None and task.bank.heatmaps[0].shape == (24, 51, 4, 4)
