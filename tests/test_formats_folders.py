"""Identity folders and LFW pairs files."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_formats_fixtures import encode, face_like_image, make_identity_tree

from fkdlib.data.formats.folders import (
    ImageFolderDataset,
    LfwPair,
    parse_lfw_pairs,
    resolve_lfw_pairs,
)
from fkdlib.errors import ConfigError, DataFormatError, MissingDataError


def to_u8(image: torch.Tensor) -> np.ndarray:
    return torch.round((image * 0.5 + 0.5) * 255).to(torch.uint8).permute(1, 2, 0).numpy()


def test_folder_dataset_labels_samples_and_pixels(tmp_path):
    written = make_identity_tree(tmp_path, {"zoe": 2, "adam": 1, "mia": 3})
    extra = face_like_image(99)
    (tmp_path / "mia" / "nested").mkdir()
    (tmp_path / "mia" / "nested" / "UPPER.PNG").write_bytes(encode(extra))
    (tmp_path / "mia" / "notes.txt").write_text("not an image")
    (tmp_path / "mia" / ".hidden.png").write_bytes(b"ignored")
    (tmp_path / ".cache").mkdir()
    (tmp_path / ".cache" / "a.png").write_bytes(encode(extra))
    dataset = ImageFolderDataset(tmp_path)
    assert dataset.classes == ["adam", "mia", "zoe"]
    assert dataset.class_to_idx == {"adam": 0, "mia": 1, "zoe": 2}
    relative = [(str(path.relative_to(tmp_path)), label) for path, label in dataset.samples]
    assert relative == [
        ("adam/adam_0001.png", 0),
        ("mia/mia_0001.png", 1),
        ("mia/mia_0002.png", 1),
        ("mia/mia_0003.png", 1),
        ("mia/nested/UPPER.PNG", 1),
        ("zoe/zoe_0001.png", 2),
        ("zoe/zoe_0002.png", 2),
    ]
    assert dataset.targets == [0, 1, 1, 1, 1, 2, 2] and dataset.num_classes == 3
    for index, (path, label) in enumerate(dataset.samples):
        item = dataset[index]
        assert item["identity"] == label
        assert item["image"].shape == (3, 20, 16) and item["image"].abs().max() <= 1
        assert np.array_equal(to_u8(item["image"]), written.get(path, extra))


def test_grey_and_bmp_images_are_read_as_rgb(tmp_path):
    (tmp_path / "a").mkdir()
    grey = face_like_image(1)[..., 0]
    (tmp_path / "a" / "g.bmp").write_bytes(encode(grey, "BMP"))
    image = ImageFolderDataset(tmp_path)[0]["image"]
    assert np.array_equal(to_u8(image), np.repeat(grey[..., None], 3, axis=2))


def test_empty_identity_folders_are_ignored_with_a_warning(tmp_path):
    make_identity_tree(tmp_path, {"b": 1})
    (tmp_path / "a").mkdir()
    with pytest.warns(UserWarning, match=r"1 identity folders hold no image .* \(e.g. a\)"):
        dataset = ImageFolderDataset(tmp_path)
    assert dataset.classes == ["b"]


def test_missing_and_empty_roots(tmp_path):
    with pytest.raises(MissingDataError, match=r"nowhere: image folder not found"):
        ImageFolderDataset(tmp_path / "nowhere")
    with pytest.raises(DataFormatError, match=r"found 0 sub-folders and no image"):
        ImageFolderDataset(tmp_path)
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "readme.txt").write_text("hi")
    with pytest.raises(DataFormatError, match=r"found 1 sub-folders and no image"):
        ImageFolderDataset(tmp_path)
    with pytest.raises(ConfigError, match="on_error"):
        ImageFolderDataset(tmp_path, on_error="maybe")


def test_undecodable_image_raise_and_skip(tmp_path):
    make_identity_tree(tmp_path, {"a": 1, "b": 1})
    broken = tmp_path / "a" / "a_0002.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 truncated")
    with pytest.raises(DataFormatError, match=r"a_0002\.jpg: expected an encoded image"):
        ImageFolderDataset(tmp_path)[1]
    lenient = ImageFolderDataset(tmp_path, on_error="skip")
    with pytest.warns(UserWarning, match="undecodable image skipped"):
        item = lenient[1]
    assert item["identity"] == 1 and lenient.skipped == 1


PAIRS = """2\t2
Ann\t1\t2
Bob\t1\t3
Ann\t1\tBob\t2
Cy\t1\tAnn\t2
Cy\t1\t2
Dee\t2\t1
Dee\t1\tCy\t2
Bob\t3\tDee\t2
"""


def test_parse_lfw_pairs(tmp_path):
    (tmp_path / "pairs.txt").write_text(PAIRS)
    pairs = parse_lfw_pairs(tmp_path / "pairs.txt")
    assert pairs[0] == LfwPair("Ann", 1, "Ann", 2, True, 0, 2)
    assert pairs[2] == LfwPair("Ann", 1, "Bob", 2, False, 0, 4)
    assert pairs[7] == LfwPair("Bob", 3, "Dee", 2, False, 1, 9)
    assert [p.same for p in pairs] == [True, True, False, False] * 2
    assert [p.fold for p in pairs] == [0, 0, 0, 0, 1, 1, 1, 1]


def test_single_number_header_is_one_fold(tmp_path):
    (tmp_path / "pairsDevTest.txt").write_text("1\nAnn 1 2\nAnn 1 Bob 1\n")
    pairs = parse_lfw_pairs(tmp_path / "pairsDevTest.txt")
    assert [(p.same, p.fold) for p in pairs] == [(True, 0), (False, 0)]


@pytest.mark.parametrize(
    "text, message",
    [
        ("ten 300\n", r"line 1: expected the header '<folds> <pairs per fold>'"),
        ("2 2\nAnn 1 2\n", r"announces 2 folds x \(2 matched \+ 2 mismatched\) = 8 pairs, found 1"),
        ("1 1\nAnn 1 x\nAnn 1 Bob 1\n", r"line 2: expected 'name i j' \(matched\)"),
        ("1 1\nAnn 1 2 3 4\nAnn 1 Bob 1\n", r"line 2: expected 'name i j'"),
        ("1 1\nAnn 0 2\nAnn 1 Bob 1\n", r"line 2: .*positive image numbers"),
        ("1 1\nAnn 1 Bob 1\nAnn 1 Bob 2\n", r"fold 0 \(lines 2..3\) holds 0 matched pairs"),
        ("", r"found an empty file"),
    ],
)
def test_malformed_pairs_files(tmp_path, text, message):
    (tmp_path / "pairs.txt").write_text(text)
    with pytest.raises(DataFormatError, match=message):
        parse_lfw_pairs(tmp_path / "pairs.txt")


def test_resolve_pairs_to_lfw_paths(tmp_path):
    make_identity_tree(tmp_path / "lfw", {"Ann": 2, "Bob": 3, "Cy": 2, "Dee": 2})
    (tmp_path / "pairs.txt").write_text(PAIRS)
    pairs = parse_lfw_pairs(tmp_path / "pairs.txt")
    resolved = resolve_lfw_pairs(pairs, tmp_path / "lfw")
    assert resolved[0] == (tmp_path / "lfw/Ann/Ann_0001.png", tmp_path / "lfw/Ann/Ann_0002.png")
    assert resolved[3] == (tmp_path / "lfw/Cy/Cy_0001.png", tmp_path / "lfw/Ann/Ann_0002.png")
    (tmp_path / "lfw/Dee/Dee_0002.png").unlink()
    with pytest.raises(MissingDataError, match=r"2 images named by the pairs file are missing, "
                       r"e.g. Dee/Dee_0002.jpg \(pairs line 7\)"):
        resolve_lfw_pairs(pairs, tmp_path / "lfw")
    with pytest.raises(MissingDataError, match=r"lfw2: LFW image folder not found"):
        resolve_lfw_pairs(pairs, tmp_path / "lfw2")
    with pytest.raises(MissingDataError, match="LFW pairs file not found"):
        parse_lfw_pairs(tmp_path / "none.txt")


def test_folder_dataset_resizes_to_image_size(tmp_path):
    from PIL import Image

    written = make_identity_tree(tmp_path, {"ann": 1, "bob": 2})
    dataset = ImageFolderDataset(tmp_path, image_size=8)
    for index, (path, _) in enumerate(dataset.samples):
        image = dataset[index]["image"]
        assert image.shape == (3, 8, 8)
        expected = np.asarray(Image.fromarray(written[path]).resize((8, 8), Image.BILINEAR))
        assert np.array_equal(to_u8(image), expected)
    assert ImageFolderDataset(tmp_path, image_size=(10, 6))[0]["image"].shape == (3, 10, 6)
    for bad in (0, -3, (4,), "8", True):
        with pytest.raises(ConfigError, match="image_size"):
            ImageFolderDataset(tmp_path, image_size=bad)
