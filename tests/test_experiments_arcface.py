"""Notebook 01's recipe: one shared Softmax pre-training, then every loss for the rest of the
budget; ArcFace from scratch kept as the collapse it avoids."""

import pytest

from fkdlib.evaluation.benchmark import face_benchmark
from fkdlib.experiments import arcface
from fkdlib.profiles import get_profile
from fkdlib.zoo import recipes
from fkdlib.zoo.cache import with_seed


@pytest.fixture(scope="module")
def bench():
    return face_benchmark(get_profile("default"), 0)


@pytest.mark.parametrize("epochs, split", [(24, (24, 12)), (8, (8, 4)), (5, (5, 2)),
                                           (2, (2, 1)), (1, (1, 1))])
def test_the_full_schedule_then_half_as_many_epochs_at_least_one(epochs, split):
    assert recipes.fine_tune_schedule(epochs) == split


def test_every_loss_starts_from_the_same_pretraining_with_the_same_budget(bench):
    specs = arcface.specs(bench)
    parent = arcface.pretrain_spec(bench)
    assert list(specs) == list(arcface.LOSSES)
    assert parent.head == "softmax" and parent.init_from is None
    for name, spec in specs.items():
        assert spec.init_from == parent
        assert (parent.train["epochs"], spec.train["epochs"]) == (24, 12)
        assert parent.train["lr"] == bench.profile.lr == 0.1
        assert spec.train["lr"] == pytest.approx(0.01)  # fine-tuning at a tenth of the rate
        assert (spec.head, spec.head_kwargs) == (arcface.LOSSES[name][0], arcface.LOSSES[name][1])
        # identical but for the head (and the name)
        assert spec.replace(head="softmax", head_kwargs={}, name="") == \
            specs["Softmax"].replace(name="")
    # a second training seed moves the pre-training's seed too: no parent shared across seeds
    seeded = with_seed(specs["ArcFace"], 1)
    assert seeded.init_from == with_seed(parent, 1) != parent


def test_arcface_from_scratch_is_the_full_budget_without_pretraining(bench):
    scratch = arcface.scratch_spec(bench)
    assert scratch.init_from is None and scratch.train["epochs"] == 24
    assert (scratch.head, scratch.head_kwargs) == ("arcface", {"s": 64.0, "m": 0.5})
