"""The ``fkd`` command. Each sub-command lives beside the code it drives and registers here."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from . import __version__
from .errors import FkdError, Interrupted, os_error_reason

INTERRUPTED = 130
"""Exit status after Ctrl-C or SIGTERM (128 + SIGINT, as a shell reports it)."""


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser (sub-commands are added by their own modules)."""
    from .data.formats.cli import add_convert_parser
    from .data.synthface.cli import add_synth_parser
    from .evaluation.cli import add_profile_model_parser
    from .reproduce import add_reproduce_parser
    from .site import add_site_parser

    parser = argparse.ArgumentParser(
        prog="fkd", description="fkdlib: face recognition and knowledge distillation, reproduced."
    )
    parser.add_argument("--version", action="version", version=f"fkdlib {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    add_synth_parser(commands)
    add_convert_parser(commands)
    add_profile_model_parser(commands)
    add_reproduce_parser(commands)
    add_site_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: run a sub-command. An fkdlib error, or an output path the system refuses,
    prints one line and exits 2; Ctrl-C or SIGTERM prints one line and exits 130."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except Interrupted as error:
        print(f"fkd {args.command}: {error}", file=sys.stderr)
        return INTERRUPTED
    except FkdError as error:
        print(f"fkd: error: {error}", file=sys.stderr)
        return 2
    except OSError as error:
        print(f"fkd: error: {os_error_line(error)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        # outputs are written atomically: an interrupted command leaves no partial file
        print(f"fkd {args.command}: interrupted; nothing half-written was left", file=sys.stderr)
        return INTERRUPTED


def os_error_line(error: OSError) -> str:
    """An operating-system error as one line naming the path (the output being written, never
    a temporary file or a Python object), with what to do."""
    reason = os_error_reason(error)
    if error.filename is None:
        return f"{reason}; check the output path and the free disk space"
    remedy = "or move that file" if reason.endswith("is a file, not a folder") else ""
    return f"cannot write {error.filename}: {reason}; choose another output path {remedy}".strip()


if __name__ == "__main__":
    sys.exit(main())
