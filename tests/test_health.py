"""Training health: the measures against hand computations, the gate, the tables."""

import math
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn as nn

from fkdlib.errors import ConfigError
from fkdlib.evaluation.health import (
    HEALTH_COLUMNS, HealthGate, class_geometry, effective_dimension, failed_models,
    final_loss_drop, health_table, model_health, training_health)
from fkdlib.heads import create_head


def test_effective_dimension_is_the_participation_ratio():
    rng = np.random.default_rng(0)
    # one direction only (and its opposite): every normalised row is ±e1 → one eigenvalue
    line = np.outer(rng.choice([-1.0, 1.0], 400), np.eye(8)[0]) * rng.uniform(1, 3, (400, 1))
    assert effective_dimension(line) == pytest.approx(1.0)
    # isotropic in 16 dimensions → close to 16
    assert effective_dimension(rng.normal(size=(20000, 16))) == pytest.approx(16.0, rel=0.02)
    # against the formula on an arbitrary sample
    x = rng.normal(size=(300, 5)) * np.array([3.0, 1.0, 0.5, 0.2, 0.1])
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    eig = np.linalg.eigvalsh(np.cov(unit.T))
    assert effective_dimension(torch.from_numpy(x)) == pytest.approx(
        eig.sum() ** 2 / (eig ** 2).sum())
    with pytest.raises(ConfigError, match="samples >= 2"):
        effective_dimension(np.ones(5))


def test_class_geometry_against_a_hand_computed_example():
    head = create_head("cosface", embedding_size=2, num_classes=3, s=10.0, m=0.3)
    with torch.no_grad():
        head.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]]))
    embeddings = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.2]])
    labels = torch.tensor([0, 1, 2])
    got = class_geometry(embeddings, labels, head)
    r = 1 / math.sqrt(2)
    c3 = (1 + 0.2) / math.sqrt(1.04) * r  # sample 3 vs class 2
    c1 = 1 / math.sqrt(1.04)  # sample 3 vs class 0
    margins = [1 - r, 1 - r, c3 - c1]
    assert got["class_margin"] == pytest.approx(np.mean(margins))
    assert got["max_weight_cosine"] == pytest.approx(r)
    # the inference logits s·cos: sample 3 is nearer class 0 → two of three right
    assert got["train_top1"] == pytest.approx(2 / 3)
    assert math.isnan(class_geometry(embeddings, labels, nn.Identity())["train_top1"])


def test_final_loss_drop_reads_the_last_two_epochs():
    assert final_loss_drop(pd.DataFrame({"loss": [5.0, 2.0, 1.6]})) == pytest.approx(0.2)
    assert math.isnan(final_loss_drop(pd.DataFrame({"loss": [5.0]})))
    assert math.isnan(final_loss_drop(pd.DataFrame({"other": [1.0, 2.0]})))


def test_training_health_of_a_model_on_its_images():
    torch.manual_seed(0)
    backbone = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 6))
    head = create_head("softmax", embedding_size=6, num_classes=4)
    images = torch.randint(0, 256, (40, 3, 4, 4), dtype=torch.uint8)
    labels = torch.arange(40) % 4
    model = SimpleNamespace(backbone=backbone, head=head,
                            history=pd.DataFrame({"loss": [2.0, 1.0]}))
    test = np.random.default_rng(1).normal(size=(50, 6))
    row = training_health(model, images, labels, test, batch_size=7)
    with torch.no_grad():
        emb = backbone(images.float() / 127.5 - 1.0)
    assert row["train_top1"] == pytest.approx(float((head(emb).argmax(1) == labels).double()
                                                    .mean()))
    assert row["effective_dim"] == pytest.approx(effective_dimension(test))
    assert row["final_loss_drop"] == pytest.approx(0.5)
    with pytest.raises(ConfigError, match="40 training images but 3 labels"):
        training_health(model, images, labels[:3], test)


def test_the_gate_names_every_failure_and_ignores_missing_measures():
    gate = HealthGate()
    healthy = {"train_top1": 0.97, "class_margin": 0.3, "max_weight_cosine": 0.5,
               "effective_dim": 12.0, "final_loss_drop": 0.01}
    assert gate.reason(healthy) == ""
    collapsed = {"train_top1": 0.58, "class_margin": 0.007, "max_weight_cosine": 0.9996,
                 "effective_dim": 3.3, "final_loss_drop": 0.2}
    assert gate.reason(collapsed) == (
        "training top-1 58.0% < 90%; two class weights at cosine 1.000 > 0.9; effective "
        "dimension 3.3 < 5; loss still falling 20.0% in the last epoch (> 5%)")
    no_head = dict(healthy, train_top1=math.nan, max_weight_cosine=math.nan,
                   final_loss_drop=math.nan)
    assert gate.reason(no_head) == ""

    table = health_table({("ArcFace", 0): collapsed, ("ArcFace", 1): healthy,
                          ("Softmax", 0): healthy})
    assert tuple(table.columns) == HEALTH_COLUMNS
    assert list(table["converged"]) == [False, True, True]
    assert failed_models(table) == {"ArcFace": "seed 0: " + gate.reason(collapsed)}


def test_model_health_measures_every_seed_on_its_training_images(tmp_path):
    from fkdlib.zoo import ModelSpec, train_seeds

    data = {"kind": "synthface", "split": "train", "num_identities": 4,
            "images_per_identity": 6, "resolution": 16, "seed": 0, "difficulty": "easy"}
    spec = ModelSpec(backbone="iresnet18", head="softmax", data=data,
                     train={"epochs": 2, "batch_size": 8, "lr": 0.05, "seed": 3},
                     backbone_kwargs={"input_size": 16, "width": 0.125, "embedding_size": 8},
                     profile="smoke")
    models = train_seeds({"m": spec}, 2, cache_dir=tmp_path, log=lambda *_: None)
    rng = np.random.default_rng(0)
    embeddings = {"m": [rng.normal(size=(30, 8)), rng.normal(size=(30, 8))]}
    table = model_health(models, embeddings)
    assert list(table["model"]) == ["m", "m"] and list(table["seed"]) == [3, 4]
    from fkdlib.data import build_dataset

    dataset = build_dataset(data)
    images = torch.from_numpy(dataset.images_u8())
    labels = torch.tensor(dataset.metadata["identity"].to_numpy())
    expected = training_health(models["m"][1], images, labels, embeddings["m"][1])
    assert table.iloc[1]["train_top1"] == pytest.approx(expected["train_top1"])
    assert table.iloc[1]["effective_dim"] == pytest.approx(expected["effective_dim"])
    with pytest.raises(ConfigError, match="2 models but 1 sets"):
        model_health(models, {"m": embeddings["m"][:1]})
    with pytest.raises(ConfigError, match="no test embeddings for \\['m'\\]"):
        model_health(models, {})


def test_the_health_figure_plots_every_run_against_the_gate():
    from fkdlib.report.figures import plot_training_health

    healthy = {"train_top1": 0.97, "class_margin": 0.3, "max_weight_cosine": 0.5,
               "effective_dim": 12.0, "final_loss_drop": 0.01}
    collapsed = {"train_top1": 0.58, "class_margin": 0.007, "max_weight_cosine": 0.9996,
                 "effective_dim": 3.3, "final_loss_drop": 0.02}
    table = health_table({("Softmax", 0): healthy, ("ArcFace", 0): collapsed,
                          ("ArcFace", 1): dict(collapsed, train_top1=0.6)})
    gate = HealthGate()
    fig = plot_training_health(table, gate)
    first = fig.axes[0]
    points = [(line.get_xdata()[0], line.get_ydata()[0], line.get_markerfacecolor())
              for line in first.lines if line.get_marker() == "o"]
    assert [(x, y) for x, y, _ in points] == [(0.97, 0), (0.58, 1), (0.6, 1)]
    assert points[1][2] == "white" and points[0][2] != "white"  # hollow: fails the gate
    thresholds = [line.get_xdata()[0] for ax in fig.axes for line in ax.lines
                  if line.get_marker() in ("None", "", None)]
    assert thresholds == [gate.min_train_top1, gate.max_weight_cosine, gate.min_effective_dim,
                          gate.max_final_loss_drop]
    assert [t.get_text() for t in first.get_yticklabels()] == ["Softmax", "ArcFace"]
    with pytest.raises(ConfigError, match="lacks the columns"):
        plot_training_health(table.drop(columns="effective_dim"), gate)


def test_the_health_figure_keeps_few_x_ticks_on_its_narrow_panels():
    """In the fkdlib style a loss-drop panel spanning -0.12 to 0.05 got eight ticks whose
    labels ran into each other; every panel keeps at most five."""
    from fkdlib.report.figures import plot_training_health, style_context

    base = {"train_top1": 0.97, "class_margin": 0.3, "max_weight_cosine": 0.5,
            "effective_dim": 12.0, "final_loss_drop": 0.0}
    drops = {("A", 0): -0.117, ("A", 1): 0.029, ("B", 0): 0.0, ("C", 0): 0.02, ("D", 0): -0.01,
             ("E", 0): 0.0}
    with style_context():
        fig = plot_training_health(health_table({run: dict(base, final_loss_drop=drop)
                                                 for run, drop in drops.items()}), HealthGate())
        fig.canvas.draw()
    for ax in fig.axes:
        low, high = ax.get_xlim()
        assert len([x for x in ax.get_xticks() if low <= x <= high]) <= 5
