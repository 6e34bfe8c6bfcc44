"""The ``fkd`` command. Each sub-command lives beside the code it drives and registers here."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from . import __version__
from .errors import FkdError


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser (sub-commands are added by their own modules)."""
    from .data.formats.cli import add_convert_parser
    from .data.synthface.cli import add_synth_parser
    from .evaluation.cli import add_profile_model_parser
    from .reproduce import add_reproduce_parser

    parser = argparse.ArgumentParser(
        prog="fkd", description="fkdlib: face recognition and knowledge distillation, reproduced."
    )
    parser.add_argument("--version", action="version", version=f"fkdlib {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    add_synth_parser(commands)
    add_convert_parser(commands)
    add_profile_model_parser(commands)
    add_reproduce_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: run a sub-command; an fkdlib error prints one clear line and exits 2."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except FkdError as error:
        print(f"fkd: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
