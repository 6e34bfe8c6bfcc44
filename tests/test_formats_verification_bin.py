"""Verification .bin files: round trips, insightface variants, and the restricted unpickler."""

from __future__ import annotations

import codecs
import pickle
import struct

import numpy as np
import pytest
import torch
from test_formats_fixtures import HEIGHT, WIDTH, encode, face_like_image

from fkdlib.data.formats.safe_pickle import restricted_loads
from fkdlib.data.formats.verification_bin import (
    load_verification_bin,
    read_verification_bin,
    save_verification_bin,
)
from fkdlib.errors import ConfigError, DataFormatError, MissingDataError, UnsafePickleError

ISSAME = [True, False, True]


def faces(count=6, seed=0):
    return [face_like_image(seed + index) for index in range(count)]


def chw(pixels):
    return torch.from_numpy(np.stack(pixels).transpose(0, 3, 1, 2).copy())


def test_encoded_round_trip_is_bit_exact(tmp_path):
    pixels = faces()
    pngs = [encode(image) for image in pixels]
    save_verification_bin(tmp_path / "lfw.bin", pngs, ISSAME)
    encoded, issame = read_verification_bin(tmp_path / "lfw.bin")
    assert encoded == pngs
    assert issame.dtype == bool and issame.tolist() == ISSAME
    loaded = load_verification_bin(tmp_path / "lfw.bin")
    assert loaded.images.dtype == torch.uint8 and loaded.images.shape == (6, 3, HEIGHT, WIDTH)
    assert torch.equal(loaded.images, chw(pixels))


def test_uint8_images_are_stored_losslessly_and_readable_by_plain_pickle(tmp_path):
    images = chw(faces())
    save_verification_bin(tmp_path / "x.bin", images, np.array(ISSAME))
    assert torch.equal(load_verification_bin(tmp_path / "x.bin").images, images)
    # insightface's load_bin does pickle.load and expects (list of bytes, list of bool).
    bins, issame_list = pickle.loads((tmp_path / "x.bin").read_bytes())
    assert all(isinstance(b, bytes) for b in bins) and issame_list == ISSAME


def test_cv2_style_numpy_bins_and_numpy_issame(tmp_path):
    pixels = faces()
    # cv2.imencode returns (n, 1) uint8 arrays; some packing scripts store issame as an array.
    jpegs = [encode(image, "JPEG", quality=90) for image in pixels]
    bins = [np.frombuffer(data, np.uint8).reshape(-1, 1) for data in jpegs]
    for protocol in (2, 4, 5):
        path = tmp_path / f"cfp_fp_{protocol}.bin"
        path.write_bytes(pickle.dumps((bins, np.array(ISSAME)), protocol=protocol))
        encoded, issame = read_verification_bin(path)
        assert [np.frombuffer(data, np.uint8).tolist() for data in encoded] == [
            b.ravel().tolist() for b in bins
        ]
        assert issame.tolist() == ISSAME
    path = tmp_path / "numpy_bools.bin"
    path.write_bytes(pickle.dumps(([encode(p) for p in pixels], [np.bool_(v) for v in ISSAME])))
    assert read_verification_bin(path)[1].tolist() == ISSAME


def test_numpy1_global_names_are_accepted(tmp_path):
    payload = pickle.dumps(np.array(ISSAME), protocol=2)
    assert b"numpy._core.multiarray\n_reconstruct\n" in payload
    legacy = payload.replace(b"numpy._core.", b"numpy.core.")  # how numpy 1.x names them
    assert restricted_loads(legacy, "legacy").tolist() == ISSAME


def python2_pickle(bins, issame):
    """A protocol-2 pickle as Python 2 writes it: images are `str` (BINSTRING) objects."""
    out = [b"\x80\x02", b"(", b"]", b"("]
    for data in bins:
        out.append(b"T" + struct.pack("<I", len(data)) + data)
    out += [b"e", b"]", b"("]
    out += [b"\x88" if same else b"\x89" for same in issame]
    out += [b"e", b"t", b"."]
    return b"".join(out)


def test_python2_era_file_is_read_like_insightface_does(tmp_path):
    pngs = [encode(image) for image in faces()]
    data = python2_pickle(pngs, ISSAME)
    with pytest.raises(UnicodeDecodeError):
        pickle.loads(data)  # why insightface retries with encoding="bytes"
    reference_bins, reference_issame = pickle.loads(data, encoding="bytes")
    (tmp_path / "agedb_30.bin").write_bytes(data)
    encoded, issame = read_verification_bin(tmp_path / "agedb_30.bin")
    assert encoded == list(reference_bins) == pngs
    assert issame.tolist() == list(reference_issame) == ISSAME


def test_image_size_resizes_and_mismatched_sizes_need_it(tmp_path):
    flat = np.full((HEIGHT, WIDTH, 3), (10, 200, 90), np.uint8)
    wide = np.full((HEIGHT, WIDTH * 2, 3), (10, 200, 90), np.uint8)
    save_verification_bin(tmp_path / "x.bin", [encode(flat), encode(wide)], [True])
    with pytest.raises(DataFormatError, match=r"image 1, pair 0\): expected every image to be "
                       r"\(20, 16\)"):
        load_verification_bin(tmp_path / "x.bin")
    images = load_verification_bin(tmp_path / "x.bin", image_size=(8, 6)).images
    assert images.shape == (2, 3, 8, 6)
    # A flat colour stays exactly that colour under bilinear resizing.
    colour = torch.tensor([[10, 200, 90], [10, 200, 90]], dtype=torch.uint8)
    assert torch.equal(images[:, :, 0, 0], colour)
    assert torch.equal(images, images[:, :, :1, :1].expand_as(images))
    assert load_verification_bin(tmp_path / "x.bin", image_size=7).images.shape == (2, 3, 7, 7)


# --- the restricted unpickler --------------------------------------------------------------


class _Payload:
    """Unpickling this object calls `call(*args)`: what a crafted .bin would do."""

    def __init__(self, call, *args):
        self.call, self.args = call, args

    def __reduce__(self):
        return self.call, self.args


def test_plain_pickle_would_run_the_payload(tmp_path):
    marker = tmp_path / "pwned"
    pickle.loads(pickle.dumps(_Payload(open, str(marker), "w")))
    assert marker.exists()  # the control: the payload is live


@pytest.mark.parametrize("protocol", [2, 4])
@pytest.mark.parametrize(
    "call, args",
    [
        (open, ("MARKER", "w")),
        (__import__("os").system, ("touch MARKER",)),
        (eval, ("open('MARKER', 'w')",)),
        (__import__("subprocess").call, (["touch", "MARKER"],)),
    ],
)
def test_crafted_bin_is_refused_and_runs_nothing(tmp_path, monkeypatch, call, args, protocol):
    monkeypatch.chdir(tmp_path)  # a relative MARKER would land here too
    marker = tmp_path / "MARKER"
    path = tmp_path / "lfw.bin"
    path.write_bytes(pickle.dumps(([_Payload(call, *args), b"x"], [True]), protocol=protocol))
    with pytest.raises(UnsafePickleError) as error:
        load_verification_bin(path)
    message = str(error.value)
    # Protocol 2 spells globals the Python 2 way (__builtin__.open, commands.call...).
    assert message.startswith(f"{path}: refused to load global '")
    assert f".{call.__name__}'" in message and "Nothing in the file was executed" in message
    assert not marker.exists()


def test_object_arrays_and_non_latin1_codecs_are_refused(tmp_path):
    path = tmp_path / "obj.bin"
    path.write_bytes(pickle.dumps((np.array([b"a", b"b"], dtype=object), [True]), protocol=2))
    with pytest.raises(UnsafePickleError, match=r"obj\.bin: refused numpy dtype"):
        read_verification_bin(path)
    path.write_bytes(pickle.dumps(([_Payload(codecs.encode, "abc", "rot13"), b""], [True])))
    with pytest.raises(UnsafePickleError, match=r"refused _codecs.encode with encoding 'rot13'"):
        read_verification_bin(path)


# --- malformed files -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "content, message",
    [
        (([b"a", b"b", b"c"], [True]), r"expected an even number of images .* found 3"),
        (([b"a", b"b", b"c", b"d"], [True]), r"2 x len\(issame\) = 2 images for 1 pairs, found 4"),
        ({"bins": [], "issame": []}, r"a pickled pair \(bins, issame_list\), found a dict"),
        (([b"a", b"b"], [True], [0.1]), r"found a tuple of 3 items"),
        (([b"a", 7], [True]), r"image 1: expected encoded image bytes .* found int"),
        (([b"a", b"b"], ["yes"]), r"expected the second item to be a list of booleans"),
    ],
)
def test_malformed_contents(tmp_path, content, message):
    path = tmp_path / "bad.bin"
    path.write_bytes(pickle.dumps(content))
    with pytest.raises(DataFormatError, match=message):
        read_verification_bin(path)


def test_truncated_missing_and_undecodable(tmp_path):
    pngs = [encode(image) for image in faces(2)]
    save_verification_bin(tmp_path / "ok.bin", pngs, [False])
    truncated = tmp_path / "truncated.bin"
    truncated.write_bytes((tmp_path / "ok.bin").read_bytes()[:-30])
    with pytest.raises(DataFormatError, match=r"truncated\.bin: expected a complete pickle"):
        read_verification_bin(truncated)
    with pytest.raises(MissingDataError, match=r"nope\.bin: verification file not found"):
        read_verification_bin(tmp_path / "nope.bin")
    broken_png = b"\x89PNG\r\n\x1a\nbroken"
    (tmp_path / "junk.bin").write_bytes(pickle.dumps(([pngs[0], broken_png], [True])))
    with pytest.raises(DataFormatError, match=r"junk\.bin \(image 1, pair 0\): expected an"):
        load_verification_bin(tmp_path / "junk.bin")


def test_save_checks_its_input_and_writes_nothing_on_error(tmp_path):
    with pytest.raises(ConfigError, match="expected 2 x len"):
        save_verification_bin(tmp_path / "x.bin", chw(faces(4)), [True])
    with pytest.raises(ConfigError, match=r"uint8 array \(2N, 3, H, W\)"):
        save_verification_bin(tmp_path / "x.bin", chw(faces(2)).float(), [True])
    with pytest.raises(DataFormatError, match="image 1 given for"):
        save_verification_bin(tmp_path / "x.bin", [encode(face_like_image(0)), b"junk"], [True])
    assert list(tmp_path.iterdir()) == []
