"""Trainer: bit-identical resume, NaN guard, schedules, frozen parameters, both data paths."""

import numpy as np
import pytest
import torch
import torch.nn as nn

from conftest import KillAt, TinyU8Data

from fkdlib.errors import ConfigError
from fkdlib.training import trainer as trainer_module
from fkdlib.training.trainer import (
    NAN_CHECK_INTERVAL, ClassificationTask, TrainConfig, Trainer, TrainingDivergedError,
    _lr_lambda, _nan_check_interval)


class DictOnlyData(TinyU8Data):
    images_u8 = None  # hides the fast path

    def __getattribute__(self, name):
        if name == "images_u8":
            raise AttributeError(name)
        return super().__getattribute__(name)


def _task(seed=0, classes=4):
    torch.manual_seed(seed)
    backbone = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 16), nn.Dropout(0.1))
    head = nn.Linear(16, classes)

    class Head(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = head

        def forward(self, x, labels):
            return self.fc(x)

    return ClassificationTask(backbone, Head())


CONFIG = TrainConfig(epochs=3, batch_size=16, lr=0.05, seed=3, milestones=(0.6,))


def test_loss_decreases_on_a_learnable_task():
    history = Trainer(_task(), TrainConfig(epochs=6, batch_size=16, lr=0.1)).fit(TinyU8Data())
    assert list(history.epoch) == [1, 2, 3, 4, 5, 6]
    assert history.loss.iloc[-1] < 0.5 * history.loss.iloc[0]
    assert {"lr", "time_s", "images_per_s", "loss_ce"} <= set(history.columns)


def test_killed_and_resumed_run_is_bit_identical(tmp_path):
    reference = _task()
    Trainer(reference, CONFIG, checkpoint_dir=tmp_path / "a").fit(TinyU8Data())

    interrupted = _task()
    with pytest.raises(KeyboardInterrupt):
        Trainer(interrupted, CONFIG, checkpoint_dir=tmp_path / "b",
                callbacks=[KillAt(epoch=1, step=2)]).fit(TinyU8Data())
    saved = torch.load(tmp_path / "b" / "last.pt", weights_only=True)
    assert saved["epoch"] == 1

    resumed = _task(seed=99)  # fresh weights: everything must come from the checkpoint
    history = Trainer(resumed, CONFIG, checkpoint_dir=tmp_path / "b").fit(TinyU8Data(),
                                                                          resume=True)
    assert list(history.epoch) == [1, 2, 3]
    for (name, a), (_, b) in zip(reference.state_dict().items(), resumed.state_dict().items()):
        assert torch.equal(a, b), name


def test_resume_with_another_config_is_refused(tmp_path):
    Trainer(_task(), CONFIG, checkpoint_dir=tmp_path).fit(TinyU8Data())
    other = TrainConfig(epochs=3, batch_size=16, lr=0.01, seed=3, milestones=(0.6,))
    with pytest.raises(ConfigError, match="lr"):
        Trainer(_task(), other, checkpoint_dir=tmp_path).fit(TinyU8Data(), resume=True)


class NanAtEpoch2(nn.Module):
    def __init__(self):
        super().__init__()
        self.inner = _task()
        self.calls = 0

    def forward(self, images, labels):
        losses = self.inner(images, labels)
        self.calls += 1
        if self.calls > 4:  # 64 samples / 16 = 4 steps per epoch
            losses["ce"] = losses["ce"] * float("nan")
        return losses


def test_nan_loss_stops_with_epoch_step_and_causes_and_keeps_checkpoint(tmp_path):
    with pytest.raises(TrainingDivergedError) as excinfo:
        Trainer(NanAtEpoch2(), CONFIG, checkpoint_dir=tmp_path).fit(TinyU8Data())
    message = str(excinfo.value)
    assert "epoch 2, step 1" in message
    assert "learning rate" in message and "margin" in message and "AMP" in message
    assert torch.load(tmp_path / "last.pt", weights_only=True)["epoch"] == 1


class NanAtCalls(nn.Module):
    """NaN loss at the given forward calls (1-based; 4 steps per epoch with CONFIG)."""

    def __init__(self, calls):
        super().__init__()
        self.inner, self.nan_calls, self.calls = _task(), set(calls), 0

    def forward(self, images, labels):
        losses = self.inner(images, labels)
        self.calls += 1
        if self.calls in self.nan_calls:
            losses["ce"] = losses["ce"] * float("nan")
        return losses


class RecordEpochEnds:
    def __init__(self):
        self.epochs = []

    def on_epoch_end(self, trainer, epoch):
        self.epochs.append(epoch)


@pytest.mark.parametrize("interval, nan_calls, where", [
    (3, [5, 6, 7, 8], "epoch 2, one of steps 1-3"),  # caught at the first window's check
    (3, [8], "epoch 2, step 4 "),  # only the epoch's last step, caught at its end
    (NAN_CHECK_INTERVAL, [6], "epoch 2, one of steps 1-4"),  # window longer than the epoch
])
def test_deferred_nan_check_names_the_window_and_keeps_the_checkpoint(
        tmp_path, monkeypatch, interval, nan_calls, where):
    monkeypatch.setattr(trainer_module, "_nan_check_interval", lambda device: interval)
    epoch_ends = RecordEpochEnds()
    with pytest.raises(TrainingDivergedError) as excinfo:
        Trainer(NanAtCalls(nan_calls), CONFIG, checkpoint_dir=tmp_path,
                callbacks=[epoch_ends]).fit(TinyU8Data())
    message = str(excinfo.value)
    assert where in message
    assert "last good checkpoint" in message
    assert "learning rate" in message and "margin" in message and "AMP" in message
    assert torch.load(tmp_path / "last.pt", weights_only=True)["epoch"] == 1
    assert epoch_ends.epochs == [0]  # the diverged epoch is not evaluated either


def test_the_nan_flag_is_read_once_per_window_and_training_is_unchanged(monkeypatch):
    assert _nan_check_interval(torch.device("cpu")) == 1
    assert _nan_check_interval(torch.device("cuda")) == NAN_CHECK_INTERVAL
    every_step = _task()
    Trainer(every_step, CONFIG).fit(TinyU8Data())

    reads = []
    check = Trainer._check_finite

    def counting(self, nonfinite, epoch, first_step, last_step, losses):
        reads.append((epoch, first_step, last_step))
        check(self, nonfinite, epoch, first_step, last_step, losses)

    monkeypatch.setattr(trainer_module, "_nan_check_interval", lambda device: 3)
    monkeypatch.setattr(Trainer, "_check_finite", counting)
    deferred = _task()
    Trainer(deferred, CONFIG).fit(TinyU8Data())
    assert reads == [(epoch, first, last) for epoch in range(3) for first, last in
                     ((0, 2), (3, 3))]
    for (name, a), b in zip(every_step.state_dict().items(), deferred.state_dict().values()):
        assert torch.equal(a, b), name


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_no_host_sync_inside_an_epoch_on_cuda():
    class ErrorOnSyncBetweenFirstAndLastStep:
        def on_step_end(self, trainer, epoch, step, losses):
            torch.cuda.set_sync_debug_mode("error" if step < 2 else "default")

    try:
        # steps 2 and 3 of each epoch (4 steps, fewer than NAN_CHECK_INTERVAL) run with every
        # synchronising CUDA call raising
        Trainer(_task(), TrainConfig(epochs=2, batch_size=16, amp=False), device="cuda",
                callbacks=[ErrorOnSyncBetweenFirstAndLastStep()]).fit(TinyU8Data())
    finally:
        torch.cuda.set_sync_debug_mode("default")


def test_frozen_parameters_do_not_move():
    task = _task()
    task.backbone[1].weight.requires_grad_(False)
    before = task.backbone[1].weight.clone()
    Trainer(task, TrainConfig(epochs=1, batch_size=16)).fit(TinyU8Data())
    assert torch.equal(before, task.backbone[1].weight)


def test_dataloader_path_trains_too():
    history = Trainer(_task(), TrainConfig(epochs=2, batch_size=16)).fit(DictOnlyData())
    assert len(history) == 2 and np.isfinite(history.loss).all()


def test_schedules():
    multistep = _lr_lambda(TrainConfig(epochs=10, milestones=(0.5, 0.8)), 100, 10)
    assert [multistep(s) for s in (0, 49, 50, 79, 80, 99)] == pytest.approx(
        [1, 1, 0.1, 0.1, 0.01, 0.01])
    cosine = _lr_lambda(TrainConfig(epochs=10, schedule="cosine"), 100, 10)
    assert cosine(0) == pytest.approx(1) and cosine(50) == pytest.approx(0.5)
    assert cosine(100) == pytest.approx(0, abs=1e-12)
    poly = _lr_lambda(TrainConfig(epochs=10, schedule="poly", warmup_epochs=1), 100, 10)
    assert poly(0) == pytest.approx(0.1) and poly(9) == pytest.approx(1.0)
    assert poly(55) == pytest.approx((1 - 45 / 90) ** 2)


def test_bad_configs_and_tiny_datasets_are_refused():
    with pytest.raises(ConfigError, match="optimizer"):
        TrainConfig(optimizer="lion")
    with pytest.raises(ConfigError, match="fewer than one batch"):
        Trainer(_task(), TrainConfig(batch_size=1000)).fit(TinyU8Data())
