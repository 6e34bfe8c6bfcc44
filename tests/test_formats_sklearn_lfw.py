"""The LFW pairs through scikit-learn's cache: a fake offline cache, written and read back."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.datasets import fetch_lfw_pairs
from test_formats_fixtures import face_like_image

from fkdlib.data.formats import lfw_to_sklearn_cache, parse_lfw_pairs
from fkdlib.data.formats.sklearn_lfw import (
    LFW_IMAGE_SIZE,
    LFW_MEAN_EYES,
    SQUARE_FACE_SLICE,
    arcface_square_slice,
    LfwPairsSet,
    load_sklearn_lfw_pairs,
    write_sklearn_lfw_cache,
)
from fkdlib.errors import ConfigError, DataFormatError, MissingDataError

NAMES = [f"Person_{letter}" for letter in "ABCDEF"]
FOLDS, PER_FOLD = 2, 3


def make_faces(images_per_name: int = 4) -> dict[str, list[np.ndarray]]:
    return {
        name: [face_like_image(10 * k + i, 48, 40) for i in range(images_per_name)]
        for k, name in enumerate(NAMES)
    }


def read_pairs(path: Path) -> list[list[str]]:
    """pairs.txt lines split on tabs (as scikit-learn does), header dropped."""
    return [line.split("\t") for line in path.read_text().splitlines()[1:]]


@pytest.fixture
def cache(tmp_path):
    faces = make_faces()
    home = write_sklearn_lfw_cache(tmp_path / "sk", faces, folds=FOLDS, pairs_per_fold=PER_FOLD)
    return home, faces


def test_square_slice_puts_lfw_mean_eyes_on_the_arcface_template():
    rows, cols = SQUARE_FACE_SLICE
    side = rows.stop - rows.start
    assert (rows.start, rows.stop, cols.start, cols.stop) == (51, 182, 59, 190)
    assert cols.stop - cols.start == side and 0 <= min(rows.start, cols.start)
    assert max(rows.stop, cols.stop) <= LFW_IMAGE_SIZE
    # the mean eyes, cropped and resized to 112 (pixel centres at integers), land within
    # half a pixel of the template's eye centres
    scale = 112 / side
    u = (LFW_MEAN_EYES[:, 0] - cols.start + 0.5) * scale - 0.5
    v = (LFW_MEAN_EYES[:, 1] - rows.start + 0.5) * scale - 0.5
    template = np.array([[38.2946, 51.6963], [73.5318, 51.5014]])  # insightface arcface_dst
    assert np.abs(np.stack([u, v], 1) - template).max() < 0.5
    # the crop is a function of the eyes: moved eyes move it
    shifted = arcface_square_slice(LFW_MEAN_EYES + [10.0, -5.0])
    assert (shifted[0].start, shifted[1].start) == (rows.start - 5, cols.start + 10)


def test_writer_layout(cache):
    home, faces = cache
    lfw_home = home / "lfw_home"
    for name in NAMES:
        files = sorted(p.name for p in (lfw_home / "lfw_funneled" / name).iterdir())
        assert files == [f"{name}_{i:04d}.jpg" for i in range(1, 5)]
    first = np.asarray(Image.open(lfw_home / "lfw_funneled" / NAMES[0] / f"{NAMES[0]}_0001.jpg"))
    assert first.shape == (250, 250, 3)
    assert abs(float(first[:SQUARE_FACE_SLICE[0].start].mean()) - 128) < 2  # grey canvas above the face
    text = (lfw_home / "pairs.txt").read_text()
    assert text.splitlines()[0] == f"{FOLDS}\t{PER_FOLD}"
    lines = read_pairs(lfw_home / "pairs.txt")
    assert [len(fields) for fields in lines] == ([3] * PER_FOLD + [4] * PER_FOLD) * FOLDS
    for fields in lines:
        if len(fields) == 4:
            assert fields[0] != fields[2]
        else:
            assert fields[1] != fields[2]
    for name in ("pairsDevTrain.txt", "pairsDevTest.txt"):
        dev = (lfw_home / name).read_text().splitlines()
        assert dev[0] == str(PER_FOLD) and len(dev) == 1 + 2 * PER_FOLD
    # deterministic in the seed
    again = write_sklearn_lfw_cache(home.parent / "again", faces, folds=FOLDS,
                                    pairs_per_fold=PER_FOLD)
    assert (again / "lfw_home" / "pairs.txt").read_text() == text


def test_round_trip_offline(cache):
    home, faces = cache
    resolution = 32
    lfw = load_sklearn_lfw_pairs(resolution, data_home=home, download=False)
    assert isinstance(lfw, LfwPairsSet)
    n = FOLDS * 2 * PER_FOLD
    assert lfw.images.shape == (2 * n, 3, resolution, resolution)
    assert lfw.images.dtype == torch.uint8
    lines = read_pairs(home / "lfw_home" / "pairs.txt")
    assert lfw.issame.dtype == bool and lfw.issame.tolist() == [len(f) == 3 for f in lines]
    assert lfw.fold.dtype == np.int64
    assert lfw.fold.tolist() == [k // (2 * PER_FOLD) for k in range(n)]
    expected = [(f[0], int(f[1]), f[0], int(f[2])) if len(f) == 3
                else (f[0], int(f[1]), f[2], int(f[3])) for f in lines]
    assert lfw.identities.shape == (2 * n,)
    assert lfw.identities.tolist() == [name for e in expected for name in (e[0], e[2])]
    assert str(home / "lfw_home") in lfw.source

    def direct(face):  # the written face resized straight to the resolution
        return np.asarray(Image.fromarray(face).resize(
            (resolution, resolution), Image.Resampling.BICUBIC)).astype(np.float32)

    references = {(name, i): direct(face) for name in NAMES
                  for i, face in enumerate(faces[name], start=1)}
    rows = [(e[k], e[k + 1]) for e in expected for k in (0, 2)]
    for row, key in enumerate(rows):
        got = lfw.images[row].permute(1, 2, 0).numpy().astype(np.float32)
        distance = {other: np.abs(got - ref).mean() for other, ref in references.items()}
        # close to its own face despite JPEG and two resamplings (about 2.5 grey levels) ...
        assert distance[key] < 8, (row, key, distance[key])
        # ... and that face is the nearest of all written faces (others are ~20 levels away)
        assert min(distance, key=distance.get) == key


def test_sklearn_returns_floats_in_unit_range_losslessly(cache):
    """scikit-learn's pairs are float32 = uint8 / 255 (resize=1.0 leaves the crop untouched);
    at the crop's own size the loader gives those pixels back exactly."""
    home, _ = cache
    side = SQUARE_FACE_SLICE[0].stop - SQUARE_FACE_SLICE[0].start
    bunch = fetch_lfw_pairs(subset="10_folds", color=True, funneled=True, resize=1.0,
                            slice_=SQUARE_FACE_SLICE, data_home=home, download_if_missing=False)
    assert bunch.pairs.dtype == np.float32
    assert bunch.pairs.shape == (FOLDS * 2 * PER_FOLD, 2, side, side, 3)
    assert 0.0 <= bunch.pairs.min() and bunch.pairs.max() <= 1.0
    scaled = bunch.pairs.astype(np.float64) * 255
    np.testing.assert_allclose(scaled, np.rint(scaled), atol=1e-3)
    lfw = load_sklearn_lfw_pairs(side, data_home=home, download=False)
    expected = np.rint(scaled).astype(np.uint8).reshape(-1, side, side, 3).transpose(0, 3, 1, 2)
    assert torch.equal(lfw.images, torch.from_numpy(np.ascontiguousarray(expected)))


def test_missing_cache_names_lfw_home(tmp_path):
    lfw_home = tmp_path / "nothing" / "lfw_home"
    with pytest.raises(MissingDataError) as caught:
        load_sklearn_lfw_pairs(32, data_home=tmp_path / "nothing", download=False)
    message = str(caught.value)
    assert str(lfw_home) in message and "data_home" in message and "230 MB" in message


def test_missing_image_folder(cache):
    home, _ = cache
    funneled = home / "lfw_home" / "lfw_funneled"
    funneled.rename(funneled.with_name("moved"))
    with pytest.raises(MissingDataError, match="lfw-funneled.tgz"):
        load_sklearn_lfw_pairs(32, data_home=home, download=False)


@pytest.mark.parametrize("resolution", [0, -3, 2.5, True, "112", None])
def test_bad_resolution(tmp_path, resolution):
    with pytest.raises(ConfigError, match="positive int"):
        load_sklearn_lfw_pairs(resolution, data_home=tmp_path, download=False)


def test_pairs_file_changed_after_sklearn_cached(cache):
    """scikit-learn memoises the decoded pairs (joblib, keyed on the file *path*), so a later
    edit of pairs.txt is not seen by it; names read from the edited file would be wrong."""
    home, _ = cache
    lfw_home = home / "lfw_home"
    load_sklearn_lfw_pairs(32, data_home=home, download=False)
    assert (lfw_home / "joblib").is_dir()
    path = lfw_home / "pairs.txt"
    lines = path.read_text().splitlines()
    # swap the first matched and the first mismatched pair of fold 0: still a valid file
    lines[1], lines[1 + PER_FOLD] = lines[1 + PER_FOLD], lines[1]
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataFormatError, match="pairs.txt"):
        load_sklearn_lfw_pairs(32, data_home=home, download=False)
    # the advice in the message works: without the memoised arrays the edited file is read
    shutil.rmtree(lfw_home / "joblib")
    lfw = load_sklearn_lfw_pairs(32, data_home=home, download=False)
    assert not lfw.issame[0] and lfw.issame[PER_FOLD]


def test_writer_rejects_too_few_identities_or_images(tmp_path):
    faces = make_faces()
    with pytest.raises(ConfigError, match="two identities"):
        write_sklearn_lfw_cache(tmp_path / "a", {NAMES[0]: faces[NAMES[0]]}, 1, 1)
    with pytest.raises(ConfigError, match="two images"):
        write_sklearn_lfw_cache(tmp_path / "b", {n: f[:1] for n, f in faces.items()}, 1, 1)
    with pytest.raises(ConfigError, match="folder names"):
        write_sklearn_lfw_cache(tmp_path / "c", {"Bad Name": faces[NAMES[0]], **faces}, 1, 1)
    with pytest.raises(ConfigError, match="uint8"):
        write_sklearn_lfw_cache(tmp_path / "d", {n: [f[0].astype(float)] * 2
                                                  for n, f in faces.items()}, 1, 1)
    with pytest.raises(ConfigError, match="pairs_per_fold"):
        write_sklearn_lfw_cache(tmp_path / "e", faces, 1, 0)


def test_writer_refuses_existing_cache(cache):
    home, faces = cache
    with pytest.raises(ConfigError, match="already holds"):
        write_sklearn_lfw_cache(home, faces, folds=FOLDS, pairs_per_fold=PER_FOLD)


# --- lfw_to_sklearn_cache: an LFW folder and pairs.txt from elsewhere, installed ---------------

def test_install_reads_back_like_the_source_cache(cache, tmp_path):
    home, _ = cache
    source = home / "lfw_home"
    summary = lfw_to_sklearn_cache(source / "lfw_funneled", source / "pairs.txt",
                                   tmp_path / "installed")
    lfw_home = tmp_path / "installed" / "lfw_home"
    assert summary.output == lfw_home and summary.pairs == FOLDS * 2 * PER_FOLD
    assert summary.reencoded == 0
    pairs = parse_lfw_pairs(source / "pairs.txt")
    named = sorted({name for p in pairs for name in (p.name1, p.name2)})
    # every image of each person a pair names (scikit-learn indexes the sorted folder)
    assert summary.identities == len(named) and summary.images == 4 * len(named)
    for name in named:  # JPEG bytes unchanged
        folder = Path("lfw_funneled") / name
        assert sorted(p.name for p in (lfw_home / folder).iterdir()) == sorted(
            p.name for p in (source / folder).iterdir())
        for path in (source / folder).iterdir():
            assert (lfw_home / folder / path.name).read_bytes() == path.read_bytes()
    assert (lfw_home / "pairs.txt").read_bytes() == (source / "pairs.txt").read_bytes()
    body = (source / "pairs.txt").read_text().splitlines()[1:]
    assert (lfw_home / "pairsDevTrain.txt").read_text().splitlines() == [
        str(PER_FOLD), *body[:2 * PER_FOLD]]
    assert (lfw_home / "pairsDevTest.txt").read_text().splitlines() == [
        str(PER_FOLD), *body[-2 * PER_FOLD:]]
    ours = load_sklearn_lfw_pairs(24, data_home=tmp_path / "installed", download=False)
    theirs = load_sklearn_lfw_pairs(24, data_home=home, download=False)
    assert torch.equal(ours.images, theirs.images)
    assert ours.issame.tolist() == theirs.issame.tolist()
    assert ours.identities.tolist() == theirs.identities.tolist()


def test_install_copies_given_dev_pairs(cache, tmp_path):
    home, _ = cache
    source = home / "lfw_home"
    dev = tmp_path / "dev"
    dev.mkdir()
    for filename, lines in (("pairsDevTrain.txt", ["1", f"{NAMES[0]}\t1\t2",
                                                   f"{NAMES[0]}\t1\t{NAMES[1]}\t1"]),
                            ("pairsDevTest.txt", ["1", f"{NAMES[1]}\t1\t2",
                                                  f"{NAMES[1]}\t2\t{NAMES[2]}\t1"])):
        (dev / filename).write_text("\n".join(lines) + "\n")
    lfw_to_sklearn_cache(source / "lfw_funneled", source / "pairs.txt", tmp_path / "out",
                         dev_pairs_dir=dev)
    for filename in ("pairsDevTrain.txt", "pairsDevTest.txt"):
        assert (tmp_path / "out" / "lfw_home" / filename).read_bytes() == (
            dev / filename).read_bytes()


@pytest.fixture
def images(cache, tmp_path):
    """A copy of the fake cache's LFW folder, to spoil."""
    copy = tmp_path / "images"
    shutil.copytree(cache[0] / "lfw_home" / "lfw_funneled", copy)
    return copy


def test_install_reencodes_png_as_jpeg(cache, images, tmp_path):
    home, _ = cache
    jpeg = images / NAMES[0] / f"{NAMES[0]}_0001.jpg"
    pixels = np.asarray(Image.open(jpeg).convert("RGB"))
    Image.fromarray(pixels).save(jpeg.with_suffix(".png"))
    jpeg.unlink()
    summary = lfw_to_sklearn_cache(images, home / "lfw_home" / "pairs.txt", tmp_path / "out")
    assert summary.reencoded == 1
    written = tmp_path / "out" / "lfw_home" / "lfw_funneled" / NAMES[0] / f"{NAMES[0]}_0001.jpg"
    assert written.read_bytes()[:3] == b"\xff\xd8\xff"
    again = np.asarray(Image.open(written).convert("RGB")).astype(int)
    assert np.abs(again - pixels).mean() < 3  # JPEG at quality 95


def test_install_refuses_wrong_size_and_writes_nothing(cache, images, tmp_path):
    home, _ = cache
    small = images / NAMES[0] / f"{NAMES[0]}_0002.jpg"
    Image.open(small).resize((112, 112)).save(small)
    with pytest.raises(DataFormatError, match=r"112 x 112 pixels.*250 x 250"):
        lfw_to_sklearn_cache(images, home / "lfw_home" / "pairs.txt", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_install_refuses_gaps_in_numbering(cache, images, tmp_path):
    home, _ = cache
    for name in NAMES:  # a gap in every person's numbering: 0001 .. 0004, 0007
        shutil.copy(images / name / f"{name}_0001.jpg", images / name / f"{name}_0007.jpg")
    with pytest.raises(DataFormatError, match=r"without gaps"):
        lfw_to_sklearn_cache(images, home / "lfw_home" / "pairs.txt", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_install_missing_image_and_existing_cache(cache, images, tmp_path):
    home, _ = cache
    shutil.rmtree(images / NAMES[0])
    with pytest.raises(MissingDataError, match="images named by the pairs file are missing"):
        lfw_to_sklearn_cache(images, home / "lfw_home" / "pairs.txt", tmp_path / "out")
    assert not (tmp_path / "out").exists()
    source = home / "lfw_home"
    with pytest.raises(ConfigError, match="not empty"):
        lfw_to_sklearn_cache(source / "lfw_funneled", source / "pairs.txt", home)


def test_fkd_convert_lfw2sklearn(cache, tmp_path, capsys):
    from fkdlib.cli import main

    home, _ = cache
    source = home / "lfw_home"
    assert main(["convert", "lfw2sklearn", str(source / "lfw_funneled"),
                 str(source / "pairs.txt"), str(tmp_path / "installed")]) == 0
    out = capsys.readouterr().out.strip()
    assert out == (f"wrote {tmp_path / 'installed' / 'lfw_home'}: {4 * len(NAMES)} images, "
                   f"{len(NAMES)} identities, {FOLDS * 2 * PER_FOLD} pairs")
    assert main(["convert", "lfw2sklearn", str(source / "lfw_funneled"),
                 str(source / "pairs.txt"), str(tmp_path / "installed")]) == 2  # not empty any more
    assert "not empty" in capsys.readouterr().err
