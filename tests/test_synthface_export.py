"""``fkd synth export``: SynthFace as identity folders, insightface .rec/.bin and LFW pairs.txt."""

import json
from pathlib import Path

import numpy as np
import pytest

from fkdlib.cli import main
from fkdlib.data.formats import (
    ImageFolderDataset,
    RecordIODataset,
    decode_rgb,
    load_verification_bin,
    pairs_to_bin,
    parse_lfw_pairs,
    read_property,
    read_verification_bin,
    resolve_lfw_pairs,
)
from fkdlib.data.synthface import SynthFace
from fkdlib.data.synthface import export as export_module
from fkdlib.data.synthface.sizes import verification_lists
from fkdlib.data.synthface.export import (
    BIN_FILES,
    MANIFEST_NAME,
    ExportSummary,
    export_synthface,
    fold_order,
)
from fkdlib.errors import ConfigError
from fkdlib.evaluation import benchmark
from fkdlib.profiles import PROFILES, get_profile

# Small enough for a second, large enough that every protocol fills its 2 folds of 3 + 3
# pairs (CFP-FP-like needs frontal and profile images of 3 identities per fold).
SMALL = {"train_identities": 6, "train_images_per_identity": 3, "test_identities": 6,
         "test_images_per_identity": 8, "verification_folds": 2, "protocol_scale": 0.002,
         "identification_distractors": 4}
PROFILE = get_profile("smoke", **SMALL)
SEED = 0
NAMES = {"lfw": "lfw.bin", "cfp_fp": "cfp_fp.bin", "agedb": "agedb_30.bin"}


def _synthface(split):
    spec = benchmark.synthface_data_spec(PROFILE, split, SEED)
    return SynthFace(**{k: v for k, v in spec.items() if k != "kind"}, use_cache=False)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    out = tmp_path_factory.mktemp("export") / "synth"
    summary = export_synthface(out, "smoke", seed=SEED, **SMALL)
    train, test = _synthface("train"), _synthface("test")
    return out, summary, train, test


def _pixels(path):
    return decode_rgb(Path(path).read_bytes(), str(path)).transpose(2, 0, 1)


def test_the_summary_counts_what_is_on_disk(exported):
    out, summary, _, _ = exported
    assert isinstance(summary, ExportSummary) and summary.out_dir == out
    assert summary.identities == {"train": 6, "test": 6}
    assert summary.images == {"train": 18, "test": 48}
    assert summary.pairs == {"lfw.bin": 12, "cfp_fp.bin": 12, "agedb_30.bin": 12, "pairs.txt": 12}
    assert summary.entries == ("agedb_30.bin", "cfp_fp.bin", "lfw.bin", "pairs.txt",
                               "property", MANIFEST_NAME, "test/", "train.idx", "train.rec",
                               "train/")
    assert summary.files == sum(1 for path in out.rglob("*") if path.is_file()) == 18 + 48 + 8
    assert str(summary) == (
        f"wrote {out}: train 6 identities / 18 images, test 6 identities / 48 images, "
        "lfw.bin 12 pairs, cfp_fp.bin 12 pairs, agedb_30.bin 12 pairs, pairs.txt 12 pairs "
        "(74 files)")
    manifest = json.loads((out / MANIFEST_NAME).read_text())
    assert manifest["profile"] == PROFILE.to_dict() and manifest["seed"] == SEED
    assert manifest["layout"] == ["folder", "rec", "bins", "pairs"]
    # nothing left beside the export (the staging folder was renamed into place)
    assert [path.name for path in out.parent.iterdir()] == ["synth"]


def test_the_folders_hold_synthface_pixels_by_identity(exported):
    out, _, train, test = exported
    for split, data, base in (("train", train, 0), ("test", test, 2_000_000)):
        folder = ImageFolderDataset(out / split)
        names = [f"id{base + k:07d}" for k in range(data.num_identities)]
        assert folder.classes == names
        assert folder.targets == data.metadata["identity"].tolist()
        assert [path.name for path, _ in folder.samples[:data.images_per_identity]] == [
            f"{names[0]}_{k:04d}.png" for k in range(1, data.images_per_identity + 1)]
        stored = np.stack([_pixels(path) for path, _ in folder.samples])
        assert stored.shape == (len(data), 3, 16, 16)
        np.testing.assert_array_equal(stored, data.images_u8())
    assert set(train.metadata["global_identity"]).isdisjoint(test.metadata["global_identity"])


def test_the_rec_reads_back_the_training_images_and_labels(exported):
    out, _, train, _ = exported
    assert read_property(out / "property") == (6, (16, 16))
    for source in (out, out / "train.rec"):
        rec = RecordIODataset(source)
        assert len(rec) == 18 and rec.num_classes == 6
        records = [rec.read_image_record(rec.image_key(i)) for i in range(len(rec))]
        assert [label for label, _ in records] == train.metadata["identity"].tolist()
        np.testing.assert_array_equal(
            np.stack([decode_rgb(data, "record").transpose(2, 0, 1) for _, data in records]),
            train.images_u8())
        assert [rec[i]["identity"] for i in (0, 17)] == [0, 5]


def test_the_bins_hold_the_benchmark_lists_in_fold_order(exported):
    out, _, _, test = exported
    bench = benchmark.face_benchmark(PROFILE, SEED)
    protocols = verification_lists(PROFILE, test.metadata, SEED)
    for name, protocol in protocols.items():
        # the restated sizes draw exactly the benchmark's lists
        expected = bench.verification[name].protocol
        np.testing.assert_array_equal(protocol.rows, expected.rows)
        np.testing.assert_array_equal(protocol.fold, expected.fold)
        assert protocol.num_pairs == PROFILE.verification_folds * 6
        # already fold by fold, positives first: the file keeps the protocol's order
        np.testing.assert_array_equal(fold_order(protocol), np.arange(protocol.num_pairs))
        loaded = load_verification_bin(out / NAMES[name])
        np.testing.assert_array_equal(loaded.issame, protocol.issame)
        np.testing.assert_array_equal(loaded.issame, [1, 1, 1, 0, 0, 0] * 2)
        np.testing.assert_array_equal(loaded.images.numpy(), test.images_u8()[protocol.rows])
    # insightface's contiguous-block folds, as the real-data benchmark reads the files
    real = benchmark.face_benchmark(PROFILE, SEED, data=f"rec:{out}")
    for name, protocol in protocols.items():
        np.testing.assert_array_equal(real.verification[name].protocol.fold, protocol.fold)
        np.testing.assert_array_equal(real.verification[name].protocol.issame, protocol.issame)
        np.testing.assert_array_equal(real.pools[name].numpy(), test.images_u8()[protocol.rows])


def test_exported_lists_are_the_benchmarks():
    # the pair lists SynthFace's benchmark draws are exactly those exported, in one module
    drawn = benchmark.face_benchmark(PROFILE, SEED).verification
    assert set(BIN_FILES) == {key for key, vset in drawn.items()
                              if vset.protocol.fold is not None}
    assert BIN_FILES == {key: benchmark.REAL_BINS[key] for key in BIN_FILES}
    assert benchmark.verification_lists is verification_lists
    for split in ("train", "test"):
        spec = benchmark.synthface_data_spec(PROFILE, split, 3)
        kwargs = export_module._synthface_kwargs(PROFILE, split, 3, None)
        assert {k: v for k, v in spec.items() if k != "kind"} == {
            k: v for k, v in kwargs.items() if k != "use_cache"}


def test_pairs_txt_is_the_lfw_list_over_test(exported, tmp_path):
    out, _, _, test = exported
    protocol = verification_lists(PROFILE, test.metadata, SEED)["lfw"]
    assert (out / "pairs.txt").read_text().splitlines()[0] == "2\t3"
    pairs = parse_lfw_pairs(out / "pairs.txt")
    assert [pair.same for pair in pairs] == protocol.issame.tolist()
    assert [pair.fold for pair in pairs] == protocol.fold.tolist()
    paths = [path for pair in resolve_lfw_pairs(pairs, out / "test") for path in pair]
    classes = ImageFolderDataset(out / "test").class_to_idx
    assert [classes[path.parent.name] for path in paths] == protocol.labels.tolist()
    np.testing.assert_array_equal(np.stack([_pixels(path) for path in paths]),
                                  test.images_u8()[protocol.rows])
    # fkd convert pairs2bin over the export gives lfw.bin's images (PNG bytes) and labels
    pairs_to_bin(out / "test", out / "pairs.txt", tmp_path / "lfw.bin")
    converted, exported_bin = (read_verification_bin(path)
                               for path in (tmp_path / "lfw.bin", out / "lfw.bin"))
    assert converted[0] == exported_bin[0]
    np.testing.assert_array_equal(converted[1], exported_bin[1])


@pytest.mark.parametrize("layout, entries", [
    ("rec", ["property", MANIFEST_NAME, "train.idx", "train.rec"]),
    (["pairs"], ["pairs.txt", MANIFEST_NAME, "test"]),
    ("bins,folder", ["agedb_30.bin", "cfp_fp.bin", "lfw.bin", MANIFEST_NAME, "test", "train"]),
])
def test_layout_selects_what_is_written(tmp_path, layout, entries):
    summary = export_synthface(tmp_path / "out", layout=layout, **SMALL)
    assert sorted(path.name for path in (tmp_path / "out").iterdir()) == entries
    if layout == "rec":
        assert len(RecordIODataset(tmp_path / "out")) == 18
        assert summary.images == {"train": 18} and summary.pairs == {}


def test_refuses_a_non_empty_folder_and_overwrites_only_an_export(tmp_path):
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "notes.txt").write_text("keep me")
    with pytest.raises(ConfigError, match="already exists and is not empty"):
        export_synthface(taken, layout="bins", **SMALL)
    with pytest.raises(ConfigError, match="not an earlier SynthFace export"):
        export_synthface(taken, layout="bins", overwrite=True, **SMALL)
    assert [path.name for path in taken.iterdir()] == ["notes.txt"]

    out = tmp_path / "out"
    export_synthface(out, layout="bins", **SMALL)
    summary = export_synthface(out, layout="rec", overwrite=True, **SMALL)
    assert summary.entries == ("property", MANIFEST_NAME, "train.idx", "train.rec")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["out", "taken"]

    empty = tmp_path / "empty"
    empty.mkdir()
    assert export_synthface(empty, layout="bins", **SMALL).pairs["lfw.bin"] == 12


@pytest.mark.parametrize("kwargs, message", [
    ({"profile": "smokey"}, "unknown profile 'smokey'"),
    ({"layout": "rec,tfrecord"}, "unknown: \\['tfrecord'\\]"),
    ({"layout": ""}, "expected one or more of"),
    ({"test_identities": 3}, "folds need at least 4 identities"),
])
def test_bad_settings_are_refused_before_writing(tmp_path, kwargs, message):
    with pytest.raises(ConfigError, match=message):
        export_synthface(tmp_path / "out", **{**SMALL, **kwargs})
    assert list(tmp_path.iterdir()) == []


def test_unwritable_places_are_refused(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="is not a folder"):
        export_synthface(tmp_path / "file", layout="bins", **SMALL)
    with pytest.raises(ConfigError, match="cannot create the output folder"):
        export_synthface(tmp_path / "file" / "out", layout="bins", **SMALL)


def test_an_interrupted_export_leaves_nothing(tmp_path, monkeypatch):
    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(export_module, "save_verification_bin", interrupt)
    with pytest.raises(KeyboardInterrupt):
        export_synthface(tmp_path / "out", **SMALL)
    assert list(tmp_path.iterdir()) == []


def test_fkd_synth_export(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(PROFILES, "smoke", PROFILE)
    out = tmp_path / "out"
    assert main(["synth", "export", str(out), "--profile", "smoke", "--seed", "0",
                 "--layout", "bins,pairs"]) == 0
    assert capsys.readouterr().out == (
        f"wrote {out}: test 6 identities / 48 images, lfw.bin 12 pairs, cfp_fp.bin 12 pairs, "
        "agedb_30.bin 12 pairs, pairs.txt 12 pairs (53 files)\n")
    assert main(["synth", "export", str(out)]) == 2
    error = capsys.readouterr().err
    assert error.startswith(f"fkd: error: {out}: the output folder already exists") \
        and error.count("\n") == 1
    assert main(["synth", "export", str(out), "--overwrite", "--layout", "rec"]) == 0
    assert capsys.readouterr().out.startswith(f"wrote {out}: train 6 identities / 18 images")
    assert main(["synth", "export", str(tmp_path / "new"), "--profile", "huge"]) == 2
    assert capsys.readouterr().err.startswith("fkd: error: unknown profile 'huge'")
    assert not (tmp_path / "new").exists()
