"""``fkd synth ...``: commands for the embedded SynthFace dataset."""

from __future__ import annotations

import argparse

from .params import DIFFICULTIES
from .preview import save_preview


def _preview(args: argparse.Namespace) -> int:
    path = save_preview(args.out, n=args.n, resolution=args.resolution, seed=args.seed,
                        difficulty=args.difficulty, aligned=args.aligned)
    print(f"wrote {path}")
    return 0


def add_synth_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``fkd synth`` and its sub-commands on the top-level ``subparsers``."""
    synth = subparsers.add_parser("synth", help="the embedded SynthFace dataset",
                                  description="Commands for the embedded SynthFace dataset.")
    commands = synth.add_subparsers(dest="synth_command", metavar="SUBCOMMAND", required=True)
    preview = commands.add_parser(
        "preview", help="write a labelled grid of samples as a PNG",
        description="Render samples and write a grid: one row per identity (labelled with "
                    "its attributes), one column per image (captioned with its yaw).")
    preview.add_argument("--out", required=True, help="output PNG file")
    preview.add_argument("--n", type=int, default=64, help="number of images (default 64)")
    preview.add_argument("--resolution", type=int, default=64,
                         help="image size in pixels, 16 to 128 (default 64)")
    preview.add_argument("--seed", type=int, default=0, help="dataset seed (default 0)")
    preview.add_argument("--difficulty", choices=list(DIFFICULTIES), default="medium",
                         help="nuisance preset (default medium)")
    framing = preview.add_mutually_exclusive_group()
    framing.add_argument("--aligned", dest="aligned", action="store_true", default=True,
                         help="five-point aligned crops (default)")
    framing.add_argument("--unaligned", dest="aligned", action="store_false",
                         help="unaligned crops with scale and shift jitter")
    preview.set_defaults(handler=_preview)
    return synth
