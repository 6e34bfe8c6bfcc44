"""CIFAR-10/100 python-pickle reader and writer: round trips in the real format, the pixel
layout of the CIFAR site, refusal of code in pickles, and error messages."""

from __future__ import annotations

import pickle
import pickletools

import numpy as np
import pytest
import torch

from fkdlib.data.formats.cifar import (
    CIFARDataset,
    find_cifar_folder,
    python2_pickle,
    write_cifar,
)
from fkdlib.errors import ConfigError, DataFormatError, MissingDataError, UnsafePickleError


def fake_split(count, num_classes, seed):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(count, 3, 32, 32), dtype=np.uint8)
    labels = rng.integers(0, num_classes, size=count)
    return images, labels


@pytest.fixture
def cifar10(tmp_path):
    splits = {"train": fake_split(12, 10, 0), "test": fake_split(4, 10, 1)}
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
             "truck"]
    folder = write_cifar(tmp_path, 10, splits, classes=names)
    return folder, splits, names


@pytest.fixture
def cifar100(tmp_path):
    splits = {"train": fake_split(7, 100, 2), "test": fake_split(3, 100, 3)}
    folder = write_cifar(tmp_path, 100, splits)
    return folder, splits


def test_cifar10_round_trip(cifar10):
    folder, splits, names = cifar10
    assert folder.name == "cifar-10-batches-py"
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        ["batches.meta", "test_batch"] + [f"data_batch_{i}" for i in range(1, 6)])
    for split, (images, labels) in splits.items():
        dataset = CIFARDataset(folder.parent, split=split)
        assert dataset.variant == 10 and dataset.num_classes == 10
        assert dataset.classes == names
        assert len(dataset) == len(labels)
        np.testing.assert_array_equal(dataset.images_u8(), images)
        np.testing.assert_array_equal(dataset.targets, labels)
        assert dataset.metadata["identity"].tolist() == labels.tolist()
        assert (dataset.metadata["coarse_identity"] == -1).all()
        assert dataset.metadata["filename"].iloc[0] == f"{split}_000000.png"
        item = dataset[1]
        expected = (images[1].astype(np.float32) / 255.0 - 0.5) / 0.5
        np.testing.assert_allclose(item["image"].numpy(), expected, rtol=0, atol=1e-6)
        assert item["identity"] == labels[1] and item["image"].dtype == torch.float32


def test_cifar10_training_images_are_spread_over_five_batches(cifar10):
    folder, splits, _ = cifar10
    sizes = [len(pickle.loads((folder / f"data_batch_{i}").read_bytes(),
                              encoding="bytes")[b"labels"]) for i in range(1, 6)]
    assert sizes == [3, 3, 2, 2, 2]  # 12 images, in order
    meta = pickle.loads((folder / "batches.meta").read_bytes(), encoding="bytes")
    assert meta[b"num_cases_per_batch"] == 3 and meta[b"num_vis"] == 3072


def test_cifar100_round_trip_with_fine_and_coarse_labels(cifar100):
    folder, splits = cifar100
    assert folder.name == "cifar-100-python"
    assert sorted(p.name for p in folder.iterdir()) == ["meta", "test", "train"]
    images, labels = splits["train"]
    dataset = CIFARDataset(folder, split="train")  # the extracted folder itself works too
    assert dataset.variant == 100 and dataset.num_classes == 100
    assert dataset.classes[:2] == ["class_00", "class_01"] and len(dataset.coarse_classes) == 20
    np.testing.assert_array_equal(dataset.images_u8(), images)
    np.testing.assert_array_equal(dataset.targets, labels)
    assert dataset.metadata["coarse_identity"].tolist() == (labels // 5).tolist()


def test_written_files_load_with_the_published_recipes(cifar100):
    folder, splits = cifar100
    raw = (folder / "train").read_bytes()
    # The CIFAR site's recipe: pickle.load(fo, encoding='bytes') -> keys b'data', b'fine_labels'.
    as_bytes = pickle.loads(raw, encoding="bytes")
    assert list(as_bytes) == [b"filenames", b"batch_label", b"fine_labels", b"coarse_labels",
                              b"data"]
    assert as_bytes[b"batch_label"] == b"training batch 1 of 1"
    # torchvision's recipe: encoding='latin1' -> str keys "data", "fine_labels".
    as_text = pickle.loads(raw, encoding="latin1")
    images, labels = splits["train"]
    np.testing.assert_array_equal(as_text["data"], images.reshape(len(images), -1))
    assert as_text["fine_labels"] == labels.tolist()
    meta = pickle.loads((folder / "meta").read_bytes(), encoding="latin1")
    assert meta["coarse_label_names"][0] == "superclass_00"


def test_written_pickles_use_only_python2_opcodes_and_numpy_globals(cifar10):
    folder, _, _ = cifar10
    ops = list(pickletools.genops((folder / "data_batch_1").read_bytes()))
    assert ops[0][0].name == "PROTO" and ops[0][1] == 2
    names = {op.name for op, _, _ in ops}
    assert {"SHORT_BINSTRING", "BINSTRING", "GLOBAL"} <= names
    assert not names & {"BINUNICODE", "SHORT_BINUNICODE", "STACK_GLOBAL", "FRAME"}
    globals_ = {arg for op, arg, _ in ops if op.name == "GLOBAL"}
    assert globals_ == {"numpy.core.multiarray _reconstruct", "numpy ndarray", "numpy dtype"}


def test_python2_pickle_of_plain_values_matches_known_bytes():
    # Hand-assembled from pickletools' opcode table: PROTO 2, EMPTY_DICT, MARK,
    # SHORT_BINSTRING 'a', EMPTY_LIST, MARK, BININT1 1, BININT2 300, BININT -1, APPENDS,
    # SHORT_BINSTRING 'b', NONE, NEWTRUE, TUPLE2, SETITEMS, STOP.
    expected = (b"\x80\x02}(U\x01a](K\x01M,\x01J\xff\xff\xff\xffeU\x01bN\x88\x86u.")
    assert python2_pickle({"a": [1, 300, -1], b"b": (None, True)}) == expected
    with pytest.raises(TypeError, match="float"):
        python2_pickle(1.5)


def test_pixel_layout_follows_the_cifar_site(tmp_path):
    # "The first 1024 entries contain the red channel values, the next 1024 the green, and the
    # final 1024 the blue. The image is stored in row-major order."  Built without our writer,
    # pickled the Python 3 way (bytes keys through _codecs.encode).
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    data = np.zeros((5, 3072), dtype=np.uint8)
    data[0, 0] = 255              # red, row 0, column 0
    data[0, 1024 + 32] = 128      # green, row 1, column 0
    data[0, 2048 + 5] = 7         # blue, row 0, column 5
    data[4, 1023] = 9             # red, row 31, column 31 of the last image
    batch = {b"batch_label": b"testing batch 1 of 1", b"labels": [3, 1, 4, 1, 5], b"data": data,
             b"filenames": [b"a.png"] * 5}
    (folder / "test_batch").write_bytes(pickle.dumps(batch, protocol=2))
    names = {b"label_names": [f"c{i}".encode() for i in range(10)], b"num_vis": 3072}
    (folder / "batches.meta").write_bytes(pickle.dumps(names, protocol=2))
    dataset = CIFARDataset(tmp_path, split="test")
    images = dataset.images_u8()
    assert images.shape == (5, 3, 32, 32) and images.dtype == np.uint8
    assert images[0, 0, 0, 0] == 255 and images[0, 1, 1, 0] == 128
    assert images[0, 2, 0, 5] == 7 and images[4, 0, 31, 31] == 9
    assert int(images.astype(np.int64).sum()) == 255 + 128 + 7 + 9
    assert dataset.targets.tolist() == [3, 1, 4, 1, 5] and dataset.classes[2] == "c2"


def test_ascii_only_pixels_take_the_text_decoding_path(tmp_path):
    # Pixels below 128 make the whole pickle ASCII: restricted_loads then decodes the Python 2
    # strings as str (keys "data", raw array bytes as text) instead of retrying with bytes.
    images = np.random.default_rng(4).integers(0, 128, size=(5, 3, 32, 32), dtype=np.uint8)
    labels = np.arange(5)
    folder = write_cifar(tmp_path, 10, {"train": (images, labels), "test": (images, labels)})
    dataset = CIFARDataset(folder, split="test")
    np.testing.assert_array_equal(dataset.images_u8(), images)
    assert dataset.targets.tolist() == [0, 1, 2, 3, 4]


def test_transform_is_applied_to_the_float_image(cifar10):
    folder, splits, _ = cifar10
    dataset = CIFARDataset(folder, split="test", transform=lambda image: image.flip(-1))
    expected = (splits["test"][0][2].astype(np.float32) / 255.0 - 0.5) / 0.5
    np.testing.assert_allclose(dataset[2]["image"].numpy(), expected[..., ::-1], atol=1e-6)
    with pytest.raises(IndexError, match="out of range"):
        dataset[len(dataset)]


class OpenPayload:
    """Unpickling it calls open(path, "w"): a file appears if the pickle's code ran."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_a_pickle_that_runs_code_is_refused_and_nothing_runs(cifar10, tmp_path):
    folder, _, _ = cifar10
    control, marker = tmp_path / "control", tmp_path / "pwned"
    pickle.loads(pickle.dumps(OpenPayload(control)))
    assert control.exists()  # the control: the payload is live under pickle.loads
    evil = {b"data": np.zeros((1, 3072), np.uint8), b"labels": [0], b"x": OpenPayload(marker)}
    (folder / "data_batch_3").write_bytes(pickle.dumps(evil, protocol=2))
    with pytest.raises(UnsafePickleError, match=r"data_batch_3: refused.*open"):
        CIFARDataset(folder, split="train")
    assert not marker.exists()


def test_find_cifar_folder_detects_the_variant_and_refuses_ambiguity(cifar10, cifar100, tmp_path):
    assert find_cifar_folder(tmp_path, 10) == (cifar10[0], 10)
    assert find_cifar_folder(tmp_path, 100) == (cifar100[0], 100)
    assert find_cifar_folder(cifar10[0]) == (cifar10[0], 10)
    with pytest.raises(ConfigError, match="both CIFAR-10.*variant=10 or variant=100"):
        find_cifar_folder(tmp_path)


def test_missing_folder_and_wrong_variant_are_named(cifar10, tmp_path):
    with pytest.raises(MissingDataError, match=r"nowhere: CIFAR folder not found.*cifar-10-"
                                               r"batches-py.*cifar-100-python"):
        CIFARDataset(tmp_path / "nowhere")
    with pytest.raises(MissingDataError, match=r"no CIFAR-100 data.*cifar-100-python/meta.*"
                                               r"holds CIFAR-10: pass variant=10"):
        CIFARDataset(tmp_path, variant=100)
    (tmp_path / "empty").mkdir()
    with pytest.raises(MissingDataError, match="no CIFAR-10/100 data.*an empty folder"):
        CIFARDataset(tmp_path / "empty")


def test_missing_batch_file_is_named(cifar10):
    folder, _, _ = cifar10
    (folder / "data_batch_3").unlink()
    assert len(CIFARDataset(folder, split="test")) == 4  # the test split does not need it
    with pytest.raises(MissingDataError, match=r"data_batch_3: CIFAR file missing"):
        CIFARDataset(folder, split="train")


def rewrite(path, **changes):
    content = pickle.loads(path.read_bytes(), encoding="bytes")
    content.update({key.encode(): value for key, value in changes.items()})
    path.write_bytes(pickle.dumps(content, protocol=2))


@pytest.mark.parametrize(
    "changes, fragment",
    [
        ({"data": np.zeros((4, 3000), np.uint8)}, r"shape \(N, 3072\).*\(4, 3000\)"),
        ({"data": np.zeros((4, 3072), np.float32)}, "found a float32 array"),
        ({"labels": [0, 1, 2]}, "4 integer labels.*shape \\(3,\\)"),
        ({"labels": [0, 1, 2, 10]}, r"in \[0, 9\], found values from 0 to 10"),
    ],
)
def test_malformed_batches_are_described(cifar10, changes, fragment):
    folder, _, _ = cifar10
    rewrite(folder / "test_batch", **changes)
    with pytest.raises(DataFormatError, match=f"test_batch: expected .*{fragment}"):
        CIFARDataset(folder, split="test")


def test_wrong_meta_and_non_dict_pickles_are_described(cifar10):
    folder, _, _ = cifar10
    rewrite(folder / "batches.meta", label_names=[b"a", b"b"])
    with pytest.raises(DataFormatError, match="batches.meta: expected 'label_names' to list 10 "
                                              "class names, found 2"):
        CIFARDataset(folder)
    (folder / "batches.meta").write_bytes(pickle.dumps([1, 2], protocol=2))
    with pytest.raises(DataFormatError, match="expected a pickled dict.*found a list"):
        CIFARDataset(folder)
    (folder / "batches.meta").write_bytes(pickle.dumps({b"labels": []}, protocol=2))
    with pytest.raises(DataFormatError, match=r"expected the key 'label_names'.*\['labels'\]"):
        CIFARDataset(folder)


def test_truncated_file_is_a_data_format_error(cifar10):
    folder, _, _ = cifar10
    path = folder / "test_batch"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(DataFormatError, match="test_batch: expected a complete pickle"):
        CIFARDataset(folder, split="test")


@pytest.mark.parametrize(
    "call, fragment",
    [
        (lambda root: CIFARDataset(root, split="val"), "split must be 'train' or 'test'"),
        (lambda root: CIFARDataset(root, variant=20), "variant must be 10 .* or 100"),
        (lambda root: write_cifar(root, 10, {"train": fake_split(4, 10, 0),
                                             "test": fake_split(1, 10, 0)}),
         "needs at least 5 images, got 4"),
        (lambda root: write_cifar(root, 10, {"train": fake_split(5, 10, 0)}), "missing.*test"),
        (lambda root: write_cifar(root, 10, {"train": fake_split(5, 100, 0),
                                             "test": fake_split(1, 10, 0)}), r"\[0, 9\]"),
        (lambda root: write_cifar(root, 100, {"train": fake_split(1, 10, 0),
                                              "test": fake_split(1, 10, 0)}, classes=["a"]),
         "100 names"),
        (lambda root: write_cifar(root, 10, {"train": (np.zeros((5, 32, 32, 3), np.uint8),
                                                       np.zeros(5, int)),
                                             "test": fake_split(1, 10, 0)}), r"\(N, 3, 32, 32\)"),
    ],
)
def test_invalid_arguments_are_config_errors(cifar10, tmp_path, call, fragment):
    with pytest.raises(ConfigError, match=fragment):
        call(tmp_path)
