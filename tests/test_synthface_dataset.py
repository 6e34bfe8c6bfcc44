"""SynthFace dataset: metadata contract, splits, items, and the checksummed cache."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch

from fkdlib.data.synthface import params as P
from fkdlib.data.synthface import render as R
from fkdlib.data.synthface.dataset import ATTRIBUTE_KEYS, METADATA_COLUMNS, SynthFace
from fkdlib.errors import ConfigError


def _small(tmp_path, **kwargs) -> SynthFace:
    options = dict(split="test", num_identities=3, images_per_identity=4, resolution=16,
                   seed=1, difficulty="medium", cache_dir=tmp_path)
    options.update(kwargs)
    return SynthFace(**options)


def test_metadata_has_exactly_the_contract_columns_and_layout(tmp_path):
    ds = _small(tmp_path, num_identities=5, images_per_identity=3, difficulty="hard")
    meta = ds.metadata
    assert tuple(meta.columns) == METADATA_COLUMNS == (
        "identity", "global_identity", "index", "yaw", "pitch", "roll", "age", "age_group",
        "gender", "skin_tone", "pitch_bin", "yaw_bin", "cohort")
    assert len(meta) == len(ds) == 15
    assert meta["identity"].tolist() == [k // 3 for k in range(15)]
    assert meta["index"].tolist() == [k % 3 for k in range(15)]
    assert (meta["global_identity"] - meta["identity"]).eq(P.SPLIT_IDENTITY_BASE["test"]).all()
    assert meta["age_group"].isin([0, 1, 2]).all() and meta["gender"].isin([0, 1]).all()
    assert meta["skin_tone"].between(0, 4).all() and meta["yaw"].abs().max() <= 90
    expected_bins = np.where(meta["pitch"] < -30, 0, np.where(meta["pitch"] > 30, 1, 2))
    assert np.array_equal(meta["pitch_bin"], expected_bins)
    cohort = ((((meta.age_group * 2 + meta.gender) * 5 + meta.skin_tone) * 3 + meta.pitch_bin)
              * 3 + meta.yaw_bin)
    assert np.array_equal(meta["cohort"], cohort) and meta["cohort"].between(0, 269).all()


def test_metadata_is_computed_without_rendering(tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("metadata must not render")

    monkeypatch.setattr(R, "render", refuse)
    meta = _small(tmp_path).metadata
    nuisance = P.sample_nuisance(1, "test", P.SPLIT_IDENTITY_BASE["test"] + 2, 3, "medium")
    row = meta.iloc[2 * 4 + 3]
    assert (row["yaw"], row["pitch"], row["roll"]) == (nuisance.yaw, nuisance.pitch,
                                                       nuisance.roll)
    identity = P.sample_identity(1, P.SPLIT_IDENTITY_BASE["test"] + 2)
    assert row["age"] == pytest.approx(identity.base_age + nuisance.age_drift)
    assert row["gender"] == identity.gender and row["skin_tone"] == identity.skin_tone


def test_items_match_metadata_and_pixels(tmp_path):
    ds = _small(tmp_path)
    u8 = torch.from_numpy(ds.images_u8())
    assert u8.shape == (12, 3, 16, 16) and ds.images_u8().dtype == np.uint8
    for k in (0, 5, 11):
        item = ds[k]
        row = ds.metadata.iloc[k]
        assert item["identity"] == row["identity"] and item["global_identity"] == row[
            "global_identity"]
        assert set(item["attributes"]) == set(ATTRIBUTE_KEYS)
        for key in ATTRIBUTE_KEYS:
            assert item["attributes"][key] == row[key]
        image = item["image"]
        assert image.dtype == torch.float32 and image.shape == (3, 16, 16)
        assert image.min() >= -1.0 and image.max() <= 1.0
        torch.testing.assert_close(image, (u8[k].float() / 255.0 - 0.5) / 0.5, rtol=0, atol=0)
        assert item["landmarks68"].shape == (68, 2) and item["visible68"].dtype == torch.bool
        assert item["landmarks5"].shape == (5, 2)
    assert ds.num_classes == 3
    assert ds[-1]["identity"] == 2
    with pytest.raises(IndexError, match="out of range for 12 samples"):
        ds[12]


def test_a_dataset_sample_is_the_sample_rendered_alone(tmp_path):
    ds = _small(tmp_path, use_cache=False, aligned=False)
    g = ds.global_identity(1)
    alone = R.render([P.sample_identity(1, g)], [P.sample_nuisance(1, "test", g, 2, "medium")],
                     16, aligned=False)
    assert np.array_equal(ds.images_u8()[1 * 4 + 2], alone.images[0].numpy())
    assert torch.equal(ds[6]["landmarks68"], alone.landmarks68[0])


def test_splits_and_offsets_own_disjoint_identities(tmp_path):
    sets = {}
    for split in P.SPLITS:
        for offset in (0, 3):
            ds = _small(tmp_path, split=split, identity_offset=offset)
            sets[split, offset] = set(ds.metadata["global_identity"])
    keys = list(sets)
    for i, a in enumerate(keys):
        for b in keys[i + 1:]:
            assert not sets[a] & sets[b], (a, b)
    with pytest.raises(ConfigError, match="holds 1000000 identities"):
        _small(tmp_path, identity_offset=999_999, num_identities=2)


@pytest.mark.parametrize("kwargs, message", [
    (dict(split="training"), "valid splits are"),
    (dict(num_identities=0), "num_identities must be an integer >= 1"),
    (dict(images_per_identity=2.5), "images_per_identity must be an integer"),
    (dict(resolution=200), "between 16 and 128"),
    (dict(difficulty="insane"), "valid difficulties are"),
    (dict(seed=-1), "seed must be an integer >= 0"),
])
def test_bad_arguments_are_refused_with_a_reason(tmp_path, kwargs, message):
    with pytest.raises(ConfigError, match=message):
        _small(tmp_path, **kwargs)


def test_cache_round_trip_reads_without_rendering(tmp_path, monkeypatch):
    first = _small(tmp_path)
    images = first.images_u8().copy()
    data_path, sidecar_path = first.cache_paths()
    sidecar = json.loads(sidecar_path.read_text())
    assert sidecar["config"] == first.config() and sidecar["bytes"] == data_path.stat().st_size
    monkeypatch.setattr(R, "render", lambda *a, **k: pytest.fail("the cache was not used"))
    second = _small(tmp_path)
    assert np.array_equal(second.images_u8(), images)
    assert torch.equal(second[3]["landmarks68"], first[3]["landmarks68"])
    # Anything that changes the pixels changes the key.
    assert _small(tmp_path, seed=2).cache_key() != first.cache_key()
    assert _small(tmp_path, aligned=False).cache_key() != first.cache_key()


def _corrupt_truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _corrupt_flip(path):
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("corrupt, reason", [
    (_corrupt_truncate, "bytes"),
    (_corrupt_flip, "SHA-256"),
    (lambda path: path.with_suffix(".json").unlink(), "sidecar .* is missing"),
])
def test_a_corrupt_cache_is_reported_and_rebuilt(tmp_path, corrupt, reason):
    first = _small(tmp_path)
    images = first.images_u8().copy()
    data_path, sidecar_path = first.cache_paths()
    corrupt(data_path)
    with pytest.warns(RuntimeWarning, match=reason):
        rebuilt = _small(tmp_path).images_u8()
    assert np.array_equal(rebuilt, images)
    # The entry was rewritten and now verifies cleanly.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.array_equal(_small(tmp_path).images_u8(), images)
    assert sidecar_path.exists()


def test_without_cache_nothing_is_written(tmp_path):
    ds = _small(tmp_path / "cache", use_cache=False)
    ds.images_u8()
    assert not (tmp_path / "cache").exists()
