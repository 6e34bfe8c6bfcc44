"""``fkd synth ...``: commands for the embedded SynthFace dataset."""

from __future__ import annotations

import argparse

from .export import LAYOUT_GROUPS, export_synthface
from .params import DIFFICULTIES
from .preview import save_preview


def _preview(args: argparse.Namespace) -> int:
    path = save_preview(args.out, n=args.n, resolution=args.resolution, seed=args.seed,
                        difficulty=args.difficulty, aligned=args.aligned)
    print(f"wrote {path}")
    return 0


def _export(args: argparse.Namespace) -> int:
    print(export_synthface(args.out_dir, profile=args.profile, seed=args.seed,
                           layout=args.layout, overwrite=args.overwrite))
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

    export = commands.add_parser(
        "export", help="write SynthFace as real face datasets come (folders, .rec, .bin)",
        description="Write the profile's SynthFace training and test splits in real datasets' "
                    "layouts, an offline stand-in for CASIA/MS1M-style training data and the "
                    "LFW/CFP-FP/AgeDB verification files: OUT_DIR/train/<identity>/*.png, "
                    "OUT_DIR/test/<identity>/*.png, train.rec/.idx + property, lfw.bin, "
                    "cfp_fp.bin, agedb_30.bin (the benchmark's pair lists) and LFW's "
                    "pairs.txt over test/. Use it as data='rec:OUT_DIR' in a notebook.")
    export.add_argument("out_dir", metavar="OUT_DIR",
                        help="output folder (created; must not exist or be empty)")
    export.add_argument("--profile", default="smoke",
                        help="profile sizing the export: smoke, default or paper (default smoke)")
    export.add_argument("--seed", type=int, default=0,
                        help="dataset and protocol seed (default 0)")
    export.add_argument("--layout", default=",".join(LAYOUT_GROUPS),
                        help="comma-separated groups to write, of folder (train/ and test/), "
                             "rec (train.rec), bins (the .bin files) and pairs (pairs.txt with "
                             "test/); default all")
    export.add_argument("--overwrite", action="store_true",
                        help="replace OUT_DIR if it holds an earlier export")
    export.set_defaults(handler=_export)
    return synth
