"""insightface RecordIO: framing (dmlc-core), IRHeader (mxnet), identity layout, errors."""

from __future__ import annotations

import pickle
import struct

import numpy as np
import pytest
import torch
from test_formats_fixtures import encode, face_like_image

from fkdlib.data.formats.recordio import (
    RECORD_MAGIC,
    IRHeader,
    RecordIODataset,
    RecordIOFile,
    RecordIOWriter,
    frame_record,
    pack_record,
    read_framed_record,
    read_index,
    record_paths,
    unpack_record,
    write_identity_records,
)
from fkdlib.errors import ConfigError, DataFormatError, MissingDataError

MAGIC = struct.pack("<I", RECORD_MAGIC)
assert MAGIC == b"\x0a\x23\xd7\xce"  # little-endian bytes of 0xced7230a


def frame(cflag: int, data: bytes) -> bytes:
    """One frame written by hand from the dmlc-core spec: magic, lrec, data, zero padding."""
    return MAGIC + struct.pack("<I", (cflag << 29) | len(data)) + data + b"\0" * (-len(data) % 4)


# --- framing -------------------------------------------------------------------------------


def test_single_frame_layout_and_padding():
    assert frame_record(b"abcde") == MAGIC + struct.pack("<I", 5) + b"abcde\0\0\0"
    assert frame_record(b"abcd") == MAGIC + struct.pack("<I", 4) + b"abcd"
    assert frame_record(b"") == MAGIC + struct.pack("<I", 0)


def test_magic_at_aligned_offsets_splits_the_record():
    data = b"ABCD" + MAGIC + b"EFGH" + MAGIC + b"xy"
    expected = frame(1, b"ABCD") + frame(2, b"EFGH") + frame(3, b"xy")
    assert frame_record(data) == expected
    assert read_framed_record(expected, 0, "test") == (data, len(expected))


def test_magic_at_unaligned_offset_is_left_alone():
    data = b"A" + MAGIC + b"BCD"
    assert frame_record(data) == frame(0, data)


@pytest.mark.parametrize(
    "data, parts",
    [
        (MAGIC, [(1, b""), (3, b"")]),
        (MAGIC + MAGIC, [(1, b""), (2, b""), (3, b"")]),
        (MAGIC + b"tail!", [(1, b""), (3, b"tail!")]),
        (b"head" + MAGIC, [(1, b"head"), (3, b"")]),
    ],
)
def test_split_edge_cases(data, parts):
    expected = b"".join(frame(cflag, chunk) for cflag, chunk in parts)
    assert frame_record(data) == expected
    assert read_framed_record(expected, 0, "test")[0] == data


def test_random_payloads_with_planted_magic_round_trip():
    rng = np.random.default_rng(0)
    buffer, offsets, payloads = b"", [], []
    for length in (0, 1, 7, 64, 301):
        payload = bytearray(rng.integers(0, 256, length, dtype=np.uint8).tobytes())
        for position in range(0, length - 3, 12):
            payload[position : position + 4] = MAGIC
        offsets.append(len(buffer))
        payloads.append(bytes(payload))
        buffer += frame_record(bytes(payload))
    for offset, payload in zip(offsets, payloads):
        assert read_framed_record(buffer, offset, "test")[0] == payload


# --- IRHeader ------------------------------------------------------------------------------


def test_pack_scalar_label_matches_mxnet_struct():
    record = pack_record(3.0, b"IMG", record_id=7)
    assert record == struct.pack("<IfQQ", 0, 3.0, 7, 0) + b"IMG"
    assert unpack_record(record) == (IRHeader(0, 3.0, 7, 0), b"IMG")


def test_pack_label_array_puts_float32_labels_after_the_header():
    record = pack_record((490624, 501196), b"", record_id=0)
    assert record == struct.pack("<IfQQ", 2, 0.0, 0, 0) + struct.pack("<2f", 490624, 501196)
    header, payload = unpack_record(record)
    assert header == IRHeader(2, (490624.0, 501196.0), 0, 0) and payload == b""


def test_unpack_rejects_short_records():
    with pytest.raises(DataFormatError, match="at least 24 bytes"):
        unpack_record(b"short", "rec (record 3)")
    with pytest.raises(DataFormatError, match="announces 5 float32 labels"):
        unpack_record(struct.pack("<IfQQ", 5, 0.0, 0, 0) + b"\0" * 8, "rec")


# --- writer + dataset ----------------------------------------------------------------------


def write_faces(prefix, counts=(2, 3, 1), seed=0, property_=True):
    """insightface layout with PNG faces; returns (pixels, png bytes, labels) in key order."""
    labels = [label for label, count in enumerate(counts) for _ in range(count)]
    pixels = [face_like_image(seed + index) for index in range(len(labels))]
    pngs = [encode(image) for image in pixels]
    with RecordIOWriter(prefix) as writer:
        write_identity_records(writer, labels, iter(pngs))
        if property_:
            writer.set_property(len(counts), *pixels[0].shape[:2])
    return pixels, pngs, labels


def test_identity_layout_round_trip(tmp_path):
    prefix = tmp_path / "train"
    pixels, pngs, labels = write_faces(prefix)
    dataset = RecordIODataset(prefix)
    assert (tmp_path / "property").read_text() == "3,20,16\n"
    assert dataset.num_classes == 3 and dataset.image_size == (20, 16)
    assert dataset.identity_ranges == [(1, 3), (3, 6), (6, 7)]
    assert len(dataset) == 6
    # Record 0: insightface's header, labels (first identity key, end identity key), no image.
    assert dataset.read_record(0) == (IRHeader(2, (7.0, 10.0), 0, 0), b"")
    assert dataset.read_record(8) == (IRHeader(2, (3.0, 6.0), 8, 0), b"")
    for index in range(len(dataset)):
        item = dataset[index]
        assert item["identity"] == labels[index]
        header, payload = dataset.read_record(index + 1)
        assert payload == pngs[index] and header == IRHeader(0, float(labels[index]), index + 1, 0)
        image = item["image"]
        assert image.dtype == torch.float32 and image.shape == (3, 20, 16)
        assert image.min() >= -1 and image.max() <= 1
        back = torch.round((image * 0.5 + 0.5) * 255).to(torch.uint8).permute(1, 2, 0).numpy()
        assert np.array_equal(back, pixels[index])


def test_index_file_offsets_follow_frame_lengths(tmp_path):
    write_faces(tmp_path / "train")
    rec = (tmp_path / "train.rec").read_bytes()
    lines = (tmp_path / "train.idx").read_text().splitlines()
    keys = [int(line.split("\t")[0]) for line in lines]
    offsets = [int(line.split("\t")[1]) for line in lines]
    assert keys == list(range(10))  # header, 6 images, 3 identities
    position = 0
    for offset in offsets:
        assert offset == position
        _, length = struct.unpack_from("<II", rec, position)
        position += 8 + length + (-length % 4)
    assert position == len(rec)


def test_dataset_accepts_rec_path_and_folder(tmp_path):
    write_faces(tmp_path / "train")
    for spelling in (tmp_path / "train.rec", tmp_path, str(tmp_path / "train")):
        assert len(RecordIODataset(spelling)) == 6
    assert record_paths(tmp_path) == (
        tmp_path / "train.rec", tmp_path / "train.idx", tmp_path / "property"
    )


def test_multi_part_image_record_is_split_on_write_and_joined_on_read(tmp_path):
    pixels = face_like_image(11)
    png = encode(pixels)
    with RecordIOWriter(tmp_path / "train") as writer:
        # The header's id field sits at byte 8 of the record: the magic number lands on a
        # 4-byte boundary and forces the dmlc writer to split the record.
        writer.write_image(0, png, 0, record_id=RECORD_MAGIC)
        writer.write_image(1, png, 0)
        writer.set_property(1, 20, 16)
    assert writer.split_records == 1
    rec = (tmp_path / "train.rec").read_bytes()
    _, first_lrec = struct.unpack_from("<II", rec, 0)
    assert first_lrec >> 29 == 1 and first_lrec & (2**29 - 1) == 8
    dataset = RecordIODataset(tmp_path / "train")
    header, payload = dataset.read_record(0)
    assert header.id == RECORD_MAGIC and payload == png
    back = torch.round((dataset[0]["image"] * 0.5 + 0.5) * 255).to(torch.uint8)
    assert np.array_equal(back.permute(1, 2, 0).numpy(), pixels)


def test_plain_layout_without_header_iterates_all_keys_in_file_order(tmp_path):
    pngs = [encode(face_like_image(seed)) for seed in range(3)]
    with RecordIOWriter(tmp_path / "plain") as writer:
        for key, label in ((5, 2), (0, 1), (9, 0)):
            writer.write_image(key, pngs[label], (label, 0.5))  # flag 2 label arrays
        writer.set_property(3, 20, 16)
    dataset = RecordIODataset(tmp_path / "plain.rec")
    assert dataset.identity_ranges is None
    assert [dataset.image_key(i) for i in range(3)] == [5, 0, 9]
    assert [dataset[i]["identity"] for i in range(3)] == [2, 1, 0]


def test_transform_is_applied_to_the_normalised_tensor(tmp_path):
    write_faces(tmp_path / "train")
    plain = RecordIODataset(tmp_path / "train")
    flipped = RecordIODataset(tmp_path / "train", transform=lambda image: image.flip(-1))
    assert torch.equal(flipped[2]["image"], plain[2]["image"].flip(-1))


def test_dataset_survives_pickling_for_dataloader_workers(tmp_path):
    write_faces(tmp_path / "train")
    dataset = RecordIODataset(tmp_path / "train")
    first = dataset[0]["image"]
    clone = pickle.loads(pickle.dumps(dataset))
    assert torch.equal(clone[0]["image"], first)
    batch = next(iter(torch.utils.data.DataLoader(dataset, batch_size=4)))
    assert batch["image"].shape == (4, 3, 20, 16) and batch["identity"].tolist() == [0, 0, 1, 1]


# --- writer atomicity and input checks -----------------------------------------------------


def test_failed_write_leaves_nothing_and_keeps_old_files(tmp_path):
    (tmp_path / "train.rec").write_bytes(b"old rec")
    with pytest.raises(RuntimeError, match="boom"):
        with RecordIOWriter(tmp_path / "train") as writer:
            writer.write_image(0, b"x", 0)
            writer.set_property(1, 2, 2)
            raise RuntimeError("boom")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["train.rec"]
    assert (tmp_path / "train.rec").read_bytes() == b"old rec"


def test_writer_rejects_duplicate_keys_and_ungrouped_labels(tmp_path):
    with pytest.raises(ValueError, match="unique"):
        with RecordIOWriter(tmp_path / "a") as writer:
            writer.write(1, b"x")
            writer.write(1, b"y")
    with pytest.raises(ConfigError, match="grouped by identity"):
        with RecordIOWriter(tmp_path / "b") as writer:
            write_identity_records(writer, [0, 1, 0], [b"a", b"b", b"c"])
    with pytest.raises(ConfigError, match="only 1 images"):
        with RecordIOWriter(tmp_path / "c") as writer:
            write_identity_records(writer, [0, 1], [b"a"])
    assert list(tmp_path.iterdir()) == []


# --- bad input -----------------------------------------------------------------------------


def test_missing_files_are_named(tmp_path):
    with pytest.raises(MissingDataError, match=r"train\.rec: RecordIO file not found"):
        RecordIODataset(tmp_path / "train")
    write_faces(tmp_path / "train")
    (tmp_path / "train.idx").unlink()
    with pytest.raises(MissingDataError, match=r"train\.idx: RecordIO index not found"):
        RecordIODataset(tmp_path / "train")


def test_missing_or_malformed_property(tmp_path):
    write_faces(tmp_path / "train", property_=False)
    with pytest.raises(MissingDataError, match=r"property.*num_classes,height,width"):
        RecordIODataset(tmp_path / "train")
    (tmp_path / "property").write_text("3;112;112\n")
    with pytest.raises(DataFormatError, match=r"found '3;112;112'"):
        RecordIODataset(tmp_path / "train")
    (tmp_path / "property").write_text("4,20,16\n")
    with pytest.raises(DataFormatError, match=r"lists 3 identities.*num_classes=4"):
        RecordIODataset(tmp_path / "train")


def test_truncated_rec_is_detected(tmp_path):
    write_faces(tmp_path / "train")
    rec = tmp_path / "train.rec"
    rec.write_bytes(rec.read_bytes()[:-6])  # cuts into the last identity record
    with pytest.raises(DataFormatError, match=r"train\.rec \(record 9\).*truncated"):
        RecordIODataset(tmp_path / "train")
    rec.write_bytes(rec.read_bytes()[:40])
    with pytest.raises(DataFormatError, match=r"points at byte \d+, but the \.rec has 40 bytes"):
        RecordIODataset(tmp_path / "train")


def test_truncated_plain_rec_is_detected_when_opened(tmp_path):
    with RecordIOWriter(tmp_path / "plain") as writer:
        for key in range(3):
            writer.write_image(key, encode(face_like_image(key)), 0)
        writer.set_property(1, 20, 16)
    rec = tmp_path / "plain.rec"
    rec.write_bytes(rec.read_bytes()[:-1])
    with pytest.raises(DataFormatError, match=r"plain\.rec \(record 2\).*truncated"):
        RecordIODataset(tmp_path / "plain")


def test_wrong_magic_is_reported_with_both_values(tmp_path):
    write_faces(tmp_path / "train")
    rec = tmp_path / "train.rec"
    data = bytearray(rec.read_bytes())
    data[0:4] = b"\x89PNG"
    rec.write_bytes(bytes(data))
    with pytest.raises(DataFormatError, match=r"expected the RecordIO magic number 0xced7230a "
                       r"at byte 0, found 0x474e5089"):
        RecordIODataset(tmp_path / "train")


def test_offset_into_the_middle_of_a_multi_part_record(tmp_path):
    with RecordIOWriter(tmp_path / "x") as writer:
        writer.write(0, b"head" + MAGIC + b"tail")
    (tmp_path / "x.idx").write_text("0\t12\n")  # the second part (cflag 3)
    with pytest.raises(DataFormatError, match="continuation flag 3"):
        RecordIOFile(tmp_path / "x.rec", tmp_path / "x.idx")


def test_malformed_index_line(tmp_path):
    write_faces(tmp_path / "train")
    idx = tmp_path / "train.idx"
    idx.write_text(idx.read_text().replace("3\t", "3 ", 1))
    with pytest.raises(DataFormatError, match=r"train\.idx: line 4: expected 'key<TAB>offset'"):
        RecordIODataset(tmp_path / "train")


@pytest.mark.parametrize(
    "text",
    ["0\t0\n7\t16\n3\t40\n", "0\t0\r\n7\t16\r\n3\t40", "\n0\t0\n\n7\t16\n3\t40\n\n"],
)
def test_index_parsing_with_line_ending_variants(tmp_path, text):
    (tmp_path / "x.idx").write_text(text)
    keys, offsets = read_index(tmp_path / "x.idx", rec_size=100)
    assert keys.tolist() == [0, 7, 3] and offsets.tolist() == [0, 16, 40]


@pytest.mark.parametrize(
    "text, message",
    [
        ("0\t0\n1\t1.5\n", r"line 2: expected 'key<TAB>offset' \(two integers\), found '1\\t1.5'"),
        ("0\t0\n\n1\t8\t9\n", r"line 3: expected 'key<TAB>offset'"),
        ("0\t0\n0\t8\n", r"key 0 appears more than once"),
        ("0\t-8\n", r"key 0 points at byte -8"),
        ("\n\n", r"found an empty file"),
    ],
)
def test_index_errors(tmp_path, text, message):
    (tmp_path / "x.idx").write_text(text)
    with pytest.raises(DataFormatError, match=message):
        read_index(tmp_path / "x.idx", rec_size=100)


def test_undecodable_image_raise_and_skip(tmp_path):
    good = [encode(face_like_image(seed)) for seed in range(2)]
    with RecordIOWriter(tmp_path / "train") as writer:
        broken = b"\xff\xd8\xffnot really a jpeg"
        write_identity_records(writer, [0, 0, 1], [good[0], broken, good[1]])
        writer.set_property(2, 20, 16)
    strict = RecordIODataset(tmp_path / "train")
    with pytest.raises(DataFormatError, match=r"train\.rec \(record 2\): expected an encoded"):
        strict[1]
    lenient = RecordIODataset(tmp_path / "train", on_error="skip")
    with pytest.warns(UserWarning, match="undecodable image skipped"):
        item = lenient[1]
    assert item["identity"] == 1 and torch.equal(item["image"], strict[2]["image"])
    assert lenient.skipped == 1
    lenient[1]
    assert lenient.skipped == 1  # counted once per bad record
    with pytest.raises(ConfigError, match="on_error"):
        RecordIODataset(tmp_path / "train", on_error="ignore")


def test_label_outside_property_range(tmp_path):
    with RecordIOWriter(tmp_path / "train") as writer:
        writer.write_image(0, encode(face_like_image(0)), 5)
        writer.set_property(3, 20, 16)
    with pytest.raises(DataFormatError, match=r"identity label in \[0, 3\).*found 5"):
        RecordIODataset(tmp_path / "train")[0]


def test_dataset_resizes_to_image_size(tmp_path):
    from PIL import Image

    pixels, _, labels = write_faces(tmp_path / "train")
    dataset = RecordIODataset(tmp_path / "train", image_size=12)
    assert dataset.stored_size == (20, 16) and dataset.image_size == (12, 12)
    for index in range(len(dataset)):
        item = dataset[index]
        expected = np.asarray(Image.fromarray(pixels[index]).resize((12, 12), Image.BILINEAR))
        got = torch.round((item["image"] * 0.5 + 0.5) * 255).to(torch.uint8).permute(1, 2, 0)
        assert item["identity"] == labels[index] and np.array_equal(got.numpy(), expected)
    with pytest.raises(ConfigError, match="image_size"):
        RecordIODataset(tmp_path / "train", image_size=0)
