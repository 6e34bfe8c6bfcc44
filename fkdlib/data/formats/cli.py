"""``fkd convert``: move face datasets between folders, insightface RecordIO and ``.bin``."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from .convert import (
    ConversionSummary,
    bin_to_folder,
    folder_to_rec,
    lfw_to_sklearn_cache,
    pairs_to_bin,
    rec_to_folder,
)


def add_convert_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``fkd convert {folder2rec,rec2folder,pairs2bin,bin2folder,lfw2sklearn}``."""
    parser = subparsers.add_parser(
        "convert",
        help="convert between image folders, insightface .rec and verification .bin files",
        description="Convert face datasets between plain folders (one sub-folder per "
        "identity), insightface RecordIO (.rec/.idx/property) and verification .bin files. "
        "JPEG/PNG bytes are copied unchanged; outputs are written atomically. "
        "See data/README.md.",
    )
    conversions = parser.add_subparsers(dest="conversion", metavar="CONVERSION", required=True)

    folder2rec = conversions.add_parser(
        "folder2rec", help="pack SRC_DIR/<identity>/<image> into OUT_PREFIX.rec/.idx + property"
    )
    folder2rec.add_argument("src_dir", help="folder with one sub-folder per identity")
    folder2rec.add_argument("out_prefix", help="output prefix, e.g. data/webface/train")
    folder2rec.add_argument(
        "--quality", type=int, default=95,
        help="JPEG quality for images that are not already JPEG/PNG (default 95)",
    )
    folder2rec.set_defaults(
        handler=_reporting(lambda args: folder_to_rec(args.src_dir, args.out_prefix, args.quality))
    )

    rec2folder = conversions.add_parser(
        "rec2folder", help="unpack PREFIX.rec into OUT_DIR/<label>/<key>.<ext>"
    )
    rec2folder.add_argument("prefix", help="RecordIO prefix, .rec path, or folder with train.rec")
    rec2folder.add_argument("out_dir", help="new (or empty) output folder")
    rec2folder.set_defaults(
        handler=_reporting(lambda args: rec_to_folder(args.prefix, args.out_dir))
    )

    pairs2bin = conversions.add_parser(
        "pairs2bin", help="build a verification .bin from an LFW-style folder and pairs file"
    )
    pairs2bin.add_argument("folder", help="LFW-style folder: FOLDER/NAME/NAME_0001.jpg")
    pairs2bin.add_argument("pairs_file", help="pairs file in LFW pairs.txt format")
    pairs2bin.add_argument("out_bin", help="output .bin file")
    pairs2bin.set_defaults(
        handler=_reporting(lambda args: pairs_to_bin(args.folder, args.pairs_file, args.out_bin))
    )

    bin2folder = conversions.add_parser(
        "bin2folder", help="unpack a .bin into OUT_DIR/pair_XXXXX/{0,1}.<ext> + issame.txt"
    )
    bin2folder.add_argument("bin_file", help="verification .bin (lfw.bin, cfp_fp.bin, ...)")
    bin2folder.add_argument("out_dir", help="new (or empty) output folder")
    bin2folder.set_defaults(
        handler=_reporting(lambda args: bin_to_folder(args.bin_file, args.out_dir))
    )

    lfw2sklearn = conversions.add_parser(
        "lfw2sklearn", help="install LFW images and pairs.txt as scikit-learn's LFW cache "
        "(offline --eval lfw)"
    )
    lfw2sklearn.add_argument("folder", help="LFW funneled or deep-funneled images: "
                             "FOLDER/NAME/NAME_0001.jpg, 250 x 250")
    lfw2sklearn.add_argument("pairs_file", help="LFW's pairs.txt (View 2, 10 folds)")
    lfw2sklearn.add_argument("data_home", help="scikit-learn data folder to write lfw_home/ "
                             "into (then set SCIKIT_LEARN_DATA to it)")
    lfw2sklearn.add_argument("--dev-pairs-dir", default=None,
                             help="folder with LFW's pairsDevTrain.txt and pairsDevTest.txt "
                             "(default: written from the first and last fold of pairs.txt)")
    lfw2sklearn.set_defaults(handler=_reporting(lambda args: lfw_to_sklearn_cache(
        args.folder, args.pairs_file, args.data_home, args.dev_pairs_dir)))
    return parser


def _reporting(
    convert: Callable[[argparse.Namespace], ConversionSummary],
) -> Callable[[argparse.Namespace], int]:
    """Wrap a conversion as a handler that prints its summary and returns exit status 0."""

    def handler(args: argparse.Namespace) -> int:
        print(convert(args).describe())
        return 0

    return handler
