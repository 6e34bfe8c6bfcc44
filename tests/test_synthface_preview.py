"""``fkd synth preview`` and save_preview: grid layout, labels, argument handling."""

from __future__ import annotations

import argparse

import numpy as np
import pytest
from PIL import Image

from fkdlib.data.synthface import preview as V
from fkdlib.data.synthface.cli import add_synth_parser
from fkdlib.data.synthface.dataset import SynthFace
from fkdlib.errors import ConfigError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fkd")
    add_synth_parser(parser.add_subparsers(dest="command", required=True))
    return parser


@pytest.mark.parametrize("n, grid", [(64, (8, 8)), (10, (3, 4)), (1, (1, 1)), (12, (3, 4))])
def test_preview_grid_is_near_square(n, grid):
    rows, columns = V.preview_grid(n)
    assert (rows, columns) == grid and rows * columns >= n > (rows - 1) * columns


def test_save_preview_writes_the_labelled_grid(tmp_path):
    out = V.save_preview(tmp_path / "sheet.png", n=6, resolution=16, seed=3, difficulty="easy")
    sheet = Image.open(out)
    zoom = -(-V.CELL_MIN_PIXELS // 16)
    cell = 16 * zoom
    assert sheet.size == (V.LABEL_WIDTH + 3 * cell, 2 * (cell + V.CAPTION_HEIGHT))
    pixels = np.asarray(sheet.convert("RGB"))
    # The first cell is the first sample enlarged by nearest neighbour.
    first = SynthFace("train", 2, 3, 16, seed=3, difficulty="easy", use_cache=False)
    expected = first.images_u8()[0].transpose(1, 2, 0)
    tile = pixels[:cell, V.LABEL_WIDTH:V.LABEL_WIDTH + cell]
    assert np.array_equal(tile[::zoom, ::zoom], expected)
    # Labels and captions are drawn in black on the white margins.
    assert (pixels[:cell, :V.LABEL_WIDTH] < 100).any()
    assert (pixels[cell:cell + V.CAPTION_HEIGHT, V.LABEL_WIDTH:] < 100).any()


def test_cli_runs_the_preview(tmp_path, capsys):
    args = _parser().parse_args(["synth", "preview", "--out", str(tmp_path / "p.png"), "--n",
                                 "4", "--resolution", "16", "--unaligned", "--difficulty",
                                 "hard", "--seed", "2"])
    assert (args.n, args.resolution, args.aligned, args.difficulty, args.seed) == (
        4, 16, False, "hard", 2)
    assert args.handler(args) == 0
    assert "wrote" in capsys.readouterr().out and (tmp_path / "p.png").exists()
    defaults = _parser().parse_args(["synth", "preview", "--out", "x.png"])
    assert (defaults.n, defaults.resolution, defaults.aligned, defaults.difficulty) == (
        64, 64, True, "medium")


def test_cli_refuses_bad_arguments(tmp_path):
    with pytest.raises(SystemExit):
        _parser().parse_args(["synth", "preview", "--out", "x.png", "--difficulty", "mild"])
    with pytest.raises(SystemExit):
        _parser().parse_args(["synth", "preview", "--out", "x.png", "--aligned",
                              "--unaligned"])
    args = _parser().parse_args(["synth", "preview", "--out", str(tmp_path / "p.jpg")])
    with pytest.raises(ConfigError, match="must end in .png"):
        args.handler(args)
    args = _parser().parse_args(["synth", "preview", "--out", str(tmp_path / "p.png"),
                                 "--resolution", "8"])
    with pytest.raises(ConfigError, match="between 16 and 128"):
        args.handler(args)
    with pytest.raises(ConfigError, match="from 1 to 1024"):
        V.save_preview(tmp_path / "p.png", n=0)
    assert not list(tmp_path.iterdir())
