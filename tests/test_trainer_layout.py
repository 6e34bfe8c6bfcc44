"""Trainer on the CPU: channels_last for grouped-conv nets during fit, contiguous weights
after, no autocast.

Values, not timing: ``benchmarks/training_step.py`` measures the speed.
"""

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from conftest import KillAt, TinyU8Data

from fkdlib.models import create_model
from fkdlib.training.trainer import (
    TrainConfig, Trainer, TrainingDivergedError, prefers_channels_last)

CONFIG = TrainConfig(epochs=3, batch_size=16, lr=0.05, seed=3, milestones=(0.6,))


def _channels_last(tensor):
    return tensor.is_contiguous(memory_format=torch.channels_last) and not tensor.is_contiguous()


class ConvTask(nn.Module):
    """conv-BN-ReLU-depthwise conv-pool-linear (``dense=True``: a plain conv instead of the
    depthwise one); records the layouts and autocast state its forward sees."""

    def __init__(self, seed=0, nan_after=None, dense=False):
        super().__init__()
        torch.manual_seed(seed)
        self.conv = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(8)
        self.dw = nn.Conv2d(8, 8, 3, padding=1, groups=1 if dense else 8)
        self.fc = nn.Linear(8, 4)
        self.seen = []
        self.nan_after = nan_after

    def forward(self, images, labels):
        self.seen.append({"images": _channels_last(images),
                          "weight": _channels_last(self.conv.weight),
                          "autocast": torch.is_autocast_enabled("cpu")})
        features = self.dw(F.relu(self.bn(self.conv(images)))).mean((2, 3))
        loss = F.cross_entropy(self.fc(features), labels)
        if self.nan_after is not None and len(self.seen) > self.nan_after:
            loss = loss * float("nan")
        return {"ce": loss}


def _states_equal(a, b):
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(),
                                                 b.state_dict().values()))


@pytest.mark.parametrize("amp", [True, False])
def test_cpu_fit_runs_channels_last_without_autocast_and_hands_back_contiguous(amp):
    task = ConvTask()
    Trainer(task, TrainConfig(epochs=2, batch_size=16, amp=amp)).fit(TinyU8Data())
    assert len(task.seen) == 8
    assert all(s == {"images": True, "weight": True, "autocast": False} for s in task.seen)
    assert task.conv.weight.is_contiguous() and task.conv.weight.grad.is_contiguous()


def test_amp_is_a_no_op_on_cpu():
    with_amp, without = ConvTask(), ConvTask()
    Trainer(with_amp, TrainConfig(epochs=2, batch_size=16, amp=True)).fit(TinyU8Data())
    Trainer(without, TrainConfig(epochs=2, batch_size=16, amp=False)).fit(TinyU8Data())
    assert _states_equal(with_amp, without)


def test_channels_last_changes_no_value_beyond_float_rounding():
    fast, plain = ConvTask(), ConvTask()
    history = Trainer(fast, CONFIG).fit(TinyU8Data())
    reference = Trainer(plain, CONFIG, channels_last=False).fit(TinyU8Data())
    assert not any(s["images"] or s["weight"] for s in plain.seen)
    assert all(s["images"] and s["weight"] for s in fast.seen)
    for (name, a), b in zip(fast.state_dict().items(), plain.state_dict().values()):
        assert torch.allclose(a.float(), b.float(), rtol=1e-4, atol=1e-5), name
    np.testing.assert_allclose(history.loss, reference.loss, rtol=1e-5)


def test_channels_last_only_for_grouped_convolutions_on_the_cpu_unless_asked():
    assert prefers_channels_last(ConvTask(), "cpu")
    assert not prefers_channels_last(ConvTask(dense=True), "cpu")  # IResNet-like: slower there
    assert not prefers_channels_last(ConvTask(), "meta")  # not measured off the CPU
    assert Trainer(ConvTask(), CONFIG).channels_last
    assert not Trainer(ConvTask(), CONFIG, channels_last=False).channels_last
    assert not Trainer(ConvTask(), CONFIG, device="meta").channels_last
    assert Trainer(ConvTask(dense=True), CONFIG, channels_last=True).channels_last


def test_dense_conv_nets_train_contiguous_by_default():
    task = ConvTask(dense=True)
    Trainer(task, CONFIG).fit(TinyU8Data())
    assert not any(s["images"] or s["weight"] for s in task.seen)


@pytest.mark.parametrize("model", ["iresnet18", "mobilefacenet", "vargfacenet"])
def test_the_default_profile_models_get_the_measured_layout(model):
    backbone = create_model(model, input_size=32, width=0.125, embedding_size=16)
    assert prefers_channels_last(backbone, "cpu") == (model != "iresnet18")


def test_killed_and_resumed_channels_last_run_is_bit_identical(tmp_path):
    reference = ConvTask()
    Trainer(reference, CONFIG, checkpoint_dir=tmp_path / "a").fit(TinyU8Data())

    interrupted = ConvTask()
    with pytest.raises(KeyboardInterrupt):
        Trainer(interrupted, CONFIG, checkpoint_dir=tmp_path / "b",
                callbacks=[KillAt(epoch=1, step=2)]).fit(TinyU8Data())
    assert interrupted.conv.weight.is_contiguous()  # handed back even when killed

    resumed = ConvTask(seed=99)
    Trainer(resumed, CONFIG, checkpoint_dir=tmp_path / "b").fit(TinyU8Data(), resume=True)
    assert _states_equal(reference, resumed)


def test_weights_are_contiguous_after_a_diverged_fit():
    task = ConvTask(nan_after=5)
    with pytest.raises(TrainingDivergedError):
        Trainer(task, CONFIG).fit(TinyU8Data())
    assert task.seen[0]["weight"] and task.conv.weight.is_contiguous()
