"""`fkd convert`: folder <-> rec, pairs -> bin -> folder; bytes kept, failures write nothing."""

from __future__ import annotations

import argparse
import pickle

import numpy as np
import pytest
from test_formats_fixtures import encode, face_like_image, make_identity_tree

from fkdlib.data.formats.cli import add_convert_parser
from fkdlib.data.formats.convert import bin_to_folder, folder_to_rec, rec_to_folder
from fkdlib.data.formats.recordio import RecordIODataset
from fkdlib.data.formats.verification_bin import load_verification_bin
from fkdlib.errors import ConfigError, DataFormatError, FkdError, UnsafePickleError


def run(argv: list[str]) -> int:
    """Parse and run like `fkd` does: fkdlib errors become exit status 2."""
    parser = argparse.ArgumentParser(prog="fkd")
    add_convert_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except FkdError:
        return 2


def listing(root):
    return sorted(str(path.relative_to(root)) for path in root.rglob("*"))


def test_parser_arguments():
    parser = argparse.ArgumentParser(prog="fkd")
    add_convert_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["convert", "folder2rec", "src", "out/train", "--quality", "90"])
    assert (args.src_dir, args.out_prefix, args.quality) == ("src", "out/train", 90)
    assert parser.parse_args(["convert", "folder2rec", "s", "o"]).quality == 95
    args = parser.parse_args(["convert", "pairs2bin", "lfw", "pairs.txt", "lfw.bin"])
    assert (args.folder, args.pairs_file, args.out_bin) == ("lfw", "pairs.txt", "lfw.bin")
    with pytest.raises(SystemExit):
        parser.parse_args(["convert", "rec2bin", "a", "b"])


def test_folder_rec_folder_round_trip_is_bit_identical(tmp_path, capsys):
    written = make_identity_tree(tmp_path / "src", {"zed": 2, "amy": 3, "kim": 1})
    assert run(["convert", "folder2rec", str(tmp_path / "src"), str(tmp_path / "rec/train")]) == 0
    assert capsys.readouterr().out.endswith("train.rec: 6 images, 3 identities\n")
    assert (tmp_path / "rec/property").read_text() == "3,20,16\n"
    dataset = RecordIODataset(tmp_path / "rec")
    assert dataset.identity_ranges == [(1, 4), (4, 5), (5, 7)]  # amy, kim, zed
    assert run(["convert", "rec2folder", str(tmp_path / "rec"), str(tmp_path / "out")]) == 0
    assert listing(tmp_path / "out") == [
        "0", "0/00000001.png", "0/00000002.png", "0/00000003.png",
        "1", "1/00000004.png",
        "2", "2/00000005.png", "2/00000006.png",
    ]
    originals = sorted(written, key=lambda path: (path.parent.name, path.name))
    copies = sorted((tmp_path / "out").rglob("*.png"))
    assert [p.read_bytes() for p in copies] == [p.read_bytes() for p in originals]


def test_summary_line(tmp_path, capsys):
    make_identity_tree(tmp_path / "src", {"a": 2, "b": 1})
    assert run(["convert", "folder2rec", str(tmp_path / "src"), str(tmp_path / "train")]) == 0
    assert capsys.readouterr().out == f"wrote {tmp_path / 'train.rec'}: 3 images, 2 identities\n"


def test_non_jpeg_png_images_are_reencoded_as_jpeg(tmp_path):
    (tmp_path / "src/a").mkdir(parents=True)
    pixels = face_like_image(5)
    (tmp_path / "src/a/x.bmp").write_bytes(encode(pixels, "BMP"))
    summary = folder_to_rec(tmp_path / "src", tmp_path / "train", quality=100)
    assert summary.reencoded == 1
    _, payload = RecordIODataset(tmp_path / "train").read_image_record(1)
    # Pillow's JPEG encoder is deterministic: the record holds exactly its quality-100 output.
    assert payload == encode(pixels, "JPEG", quality=100)
    assert payload != encode(pixels, "JPEG", quality=95)


def test_folder2rec_refuses_mixed_sizes_and_writes_nothing(tmp_path):
    make_identity_tree(tmp_path / "src", {"a": 2})
    (tmp_path / "src/b").mkdir()
    (tmp_path / "src/b/big.png").write_bytes(encode(face_like_image(0, 40, 32)))
    with pytest.raises(DataFormatError, match=r"big\.png: expected 20x16 pixels .* found 40x32"):
        folder_to_rec(tmp_path / "src", tmp_path / "out/train")
    assert not (tmp_path / "out").exists()  # the folder made for the output went again
    with pytest.raises(ConfigError, match="quality"):
        folder_to_rec(tmp_path / "src", tmp_path / "out/train", quality=0)


def write_lfw(tmp_path):
    written = make_identity_tree(tmp_path / "lfw", {"Ann": 2, "Bob": 1})
    (tmp_path / "pairs.txt").write_text("1 1\nAnn 1 2\nAnn 2 Bob 1\n")
    return written


def test_pairs_to_bin_to_folder(tmp_path):
    written = write_lfw(tmp_path)
    out_bin = tmp_path / "lfw.bin"
    lfw, pairs = str(tmp_path / "lfw"), str(tmp_path / "pairs.txt")
    assert run(["convert", "pairs2bin", lfw, pairs, str(out_bin)]) == 0
    ann1, ann2, bob1 = (tmp_path / "lfw/Ann/Ann_0001.png", tmp_path / "lfw/Ann/Ann_0002.png",
                        tmp_path / "lfw/Bob/Bob_0001.png")
    loaded = load_verification_bin(out_bin)
    assert loaded.issame.tolist() == [True, False]
    expected = np.stack([written[p] for p in (ann1, ann2, ann2, bob1)]).transpose(0, 3, 1, 2)
    assert np.array_equal(loaded.images.numpy(), expected)

    out = tmp_path / "pairs_out"
    assert run(["convert", "bin2folder", str(out_bin), str(out)]) == 0
    assert listing(out) == ["issame.txt", "pair_00000", "pair_00000/0.png", "pair_00000/1.png",
                            "pair_00001", "pair_00001/0.png", "pair_00001/1.png"]
    assert (out / "issame.txt").read_text() == "1\n0\n"
    assert (out / "pair_00001/1.png").read_bytes() == bob1.read_bytes()
    assert (out / "pair_00000/0.png").read_bytes() == ann1.read_bytes()


def test_jpeg_bins_keep_their_bytes_and_extension(tmp_path):
    jpegs = [encode(face_like_image(seed), "JPEG", quality=80) for seed in range(2)]
    (tmp_path / "x.bin").write_bytes(pickle.dumps((jpegs, [True]), protocol=2))
    summary = bin_to_folder(tmp_path / "x.bin", tmp_path / "out")
    assert (summary.images, summary.pairs) == (2, 1)
    assert [(tmp_path / f"out/pair_00000/{side}.jpg").read_bytes() for side in (0, 1)] == jpegs


class _Payload:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return open, (self.path, "w")


def test_bin2folder_refuses_a_crafted_file_and_writes_nothing(tmp_path):
    marker = tmp_path / "created_by_payload"
    (tmp_path / "evil.bin").write_bytes(pickle.dumps(([_Payload(str(marker)), b""], [True])))
    before = listing(tmp_path)
    assert run(["convert", "bin2folder", str(tmp_path / "evil.bin"), str(tmp_path / "out")]) == 2
    with pytest.raises(UnsafePickleError, match=r"evil\.bin: refused to load global 'io\.open'"):
        bin_to_folder(tmp_path / "evil.bin", tmp_path / "out")
    assert listing(tmp_path) == before and not marker.exists()


def test_bin2folder_with_a_corrupt_image_writes_nothing(tmp_path):
    good = encode(face_like_image(0))
    (tmp_path / "bad.bin").write_bytes(pickle.dumps(([good, good, good, good[:50]], [True, False])))
    with pytest.raises(DataFormatError, match=r"bad\.bin \(image 3, pair 1\)"):
        bin_to_folder(tmp_path / "bad.bin", tmp_path / "out")
    assert listing(tmp_path) == ["bad.bin"]


def test_outputs_refuse_non_empty_folders_but_accept_empty_ones(tmp_path):
    write_lfw(tmp_path)
    lfw, pairs = str(tmp_path / "lfw"), str(tmp_path / "pairs.txt")
    assert run(["convert", "pairs2bin", lfw, pairs, str(tmp_path / "a.bin")]) == 0
    (tmp_path / "full").mkdir()
    (tmp_path / "full/keep.txt").write_text("mine")
    with pytest.raises(ConfigError, match=r"full: the output folder already exists and is not"):
        bin_to_folder(tmp_path / "a.bin", tmp_path / "full")
    assert listing(tmp_path / "full") == ["keep.txt"]
    (tmp_path / "empty").mkdir()
    assert bin_to_folder(tmp_path / "a.bin", tmp_path / "empty").pairs == 2


def test_rec2folder_failure_leaves_no_partial_output(tmp_path):
    make_identity_tree(tmp_path / "src", {"a": 2, "b": 1})
    folder_to_rec(tmp_path / "src", tmp_path / "rec/train")
    rec = tmp_path / "rec/train.rec"
    data = bytearray(rec.read_bytes())
    second_image = int((tmp_path / "rec/train.idx").read_text().splitlines()[2].split("\t")[1])
    data[second_image : second_image + 4] = b"XXXX"  # break the magic of record 2
    rec.write_bytes(bytes(data))
    with pytest.raises(DataFormatError, match=r"record 2\): expected the RecordIO magic"):
        rec_to_folder(tmp_path / "rec", tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_fkd_main_reports_a_refused_file_on_one_line(tmp_path, capsys):
    pytest.importorskip("fkdlib.data.synthface.cli")  # fkd's parser also registers `fkd synth`
    from fkdlib.cli import main

    evil = pickle.dumps(([_Payload(str(tmp_path / "x")), b""], [True]))
    (tmp_path / "evil.bin").write_bytes(evil)
    assert main(["convert", "bin2folder", str(tmp_path / "evil.bin"), str(tmp_path / "out")]) == 2
    error = capsys.readouterr().err
    assert error.startswith("fkd: error: ") and error.count("\n") == 1 and "io.open" in error
    assert sorted(p.name for p in tmp_path.iterdir()) == ["evil.bin"]


def _one_line_error(capsys) -> str:
    """The error `fkd` printed: exactly one line, no traceback, no Python object repr."""
    captured = capsys.readouterr()
    error = captured.err
    assert error.startswith("fkd: error: ") and error.count("\n") == 1, error
    assert "Traceback" not in error and " object at 0x" not in error
    return error


@pytest.fixture
def convert_inputs(tmp_path):
    """Valid inputs for every conversion, and a plain file to write "through"."""
    from fkdlib.cli import main

    write_lfw(tmp_path)
    assert main(["convert", "folder2rec", str(tmp_path / "lfw"), str(tmp_path / "rec/train")]) == 0
    assert main(["convert", "pairs2bin", str(tmp_path / "lfw"), str(tmp_path / "pairs.txt"),
                 str(tmp_path / "lfw.bin")]) == 0
    (tmp_path / "somefile.txt").write_text("not a folder")
    return tmp_path


@pytest.mark.parametrize("conversion, inputs, output", [
    ("folder2rec", ["lfw"], "somefile.txt/sub/train"),
    ("rec2folder", ["rec"], "somefile.txt/sub/out"),
    ("pairs2bin", ["lfw", "pairs.txt"], "somefile.txt/sub/out.bin"),
    ("bin2folder", ["lfw.bin"], "somefile.txt/sub/out"),
])
def test_an_output_path_through_a_file_is_one_line(convert_inputs, capsys, conversion, inputs,
                                                    output):
    from fkdlib.cli import main

    root = convert_inputs
    capsys.readouterr()
    before = listing(root)
    argv = ["convert", conversion, *[str(root / name) for name in inputs], str(root / output)]
    assert main(argv) == 2
    error = _one_line_error(capsys)
    written = root / output if conversion != "folder2rec" else root / (output + ".rec")
    assert error == (f"fkd: error: cannot write {written}: {root / 'somefile.txt'} is a file, "
                     "not a folder; choose another output path or move that file\n")
    assert listing(root) == before


def test_a_failed_conversion_removes_only_the_folders_it_made(tmp_path, capsys):
    from fkdlib.cli import main

    make_identity_tree(tmp_path / "src", {"a": 2})
    (tmp_path / "src/b").mkdir()
    (tmp_path / "src/b/big.png").write_bytes(encode(face_like_image(0, 40, 32)))
    (tmp_path / "mine").mkdir()  # an output folder that was there before stays
    assert main(["convert", "folder2rec", str(tmp_path / "src"),
                 str(tmp_path / "mine/new/deeper/train")]) == 2
    assert "big.png: expected 20x16 pixels" in _one_line_error(capsys)
    assert listing(tmp_path / "mine") == []
    for conversion in ("bin2folder", "rec2folder"):  # a refused input makes no folder either
        (tmp_path / "in.bin").write_bytes(b"\x80\x04garbage")
        assert main(["convert", conversion, str(tmp_path / "in.bin"),
                     str(tmp_path / "mine/new/out")]) == 2
        _one_line_error(capsys)
        assert listing(tmp_path / "mine") == []


@pytest.mark.parametrize("content, words", [
    (pickle.dumps(([b"a", b"b"], [True]), protocol=4)[:-7], "the file ends in the middle of it"),
    (b"\x80\x02h\x05.", "the data is not valid near byte"),  # BINGET of a memo never stored
    (b"", "found an empty file"),
])
def test_an_unreadable_bin_says_why_in_words(tmp_path, capsys, content, words):
    from fkdlib.cli import main

    (tmp_path / "bad.bin").write_bytes(content)
    assert main(["convert", "bin2folder", str(tmp_path / "bad.bin"), str(tmp_path / "out")]) == 2
    error = _one_line_error(capsys)
    assert error.startswith(f"fkd: error: {tmp_path / 'bad.bin'}: expected ")
    assert words in error
    for jargon in ("Memo", "UnpicklingError", "EOFError", "BytesIO"):
        assert jargon not in error


def test_an_undecodable_image_is_named_without_a_buffer_repr(tmp_path, capsys):
    from fkdlib.cli import main

    good = encode(face_like_image(0))
    (tmp_path / "x.bin").write_bytes(pickle.dumps(([good, b"not an image at all"], [True])))
    assert main(["convert", "bin2folder", str(tmp_path / "x.bin"), str(tmp_path / "out")]) == 2
    error = _one_line_error(capsys)
    assert f"{tmp_path / 'x.bin'} (image 1, pair 0): expected an encoded image" in error
    assert "no known image format starts with these bytes" in error


def test_a_folder_where_a_file_is_expected_is_called_a_folder(tmp_path, capsys):
    from fkdlib.cli import main

    (tmp_path / "lfw.bin").mkdir()
    assert main(["convert", "bin2folder", str(tmp_path / "lfw.bin"), str(tmp_path / "out")]) == 2
    error = _one_line_error(capsys)
    assert f"{tmp_path / 'lfw.bin'}: expected the verification file here, found a folder" in error
    assert "not found" not in error
    (tmp_path / "src").write_text("a file")
    assert main(["convert", "folder2rec", str(tmp_path / "src"), str(tmp_path / "t")]) == 2
    assert "src: expected the image folder here, found a file" in _one_line_error(capsys)


def test_a_crafted_dtype_state_is_refused_before_numpy_sees_it(tmp_path):
    """A BUILD that would flag a uint8 dtype as holding object pointers (numpy would then read
    raw bytes as pointers) is refused; so is setting a state on anything but numpy's types."""
    array = pickle.dumps([np.frombuffer(b"abc", dtype=np.uint8)], protocol=2)
    state = b"J\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00t"  # ..., -1, -1, 0) closing the dtype
    assert array.count(state) == 1
    crafted = array.replace(state, state[:-2] + b"\x3ft")  # flags 0 -> 63
    (tmp_path / "evil.bin").write_bytes(crafted)
    with pytest.raises(UnsafePickleError, match=r"evil\.bin: refused the state .* for numpy "
                                                r"dtype uint8"):
        bin_to_folder(tmp_path / "evil.bin", tmp_path / "out")
    assert not (tmp_path / "out").exists()
