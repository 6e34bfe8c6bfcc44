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
    assert list((tmp_path / "out").iterdir()) == []
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
