"""``fkd profile-model NAME``: parameters and cost of a registered backbone.

Prints both FLOP conventions, labelled, because the papers mix them: multiply-adds (MACs,
insightface's "GFLOPs") and FLOPs counting a multiply-add as two (VarGFaceNet's "1G FLOPs").
"""

from __future__ import annotations

import argparse

from ..models.registry import list_models
from .complexity import profile_model


def add_profile_model_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register the ``profile-model`` sub-command on the ``fkd`` parser."""
    parser = subparsers.add_parser(
        "profile-model",
        help="print a model's parameters, multiply-adds and FLOPs",
        description=(
            "Count parameters, multiply-accumulates (MACs) and FLOPs (= 2 x MACs) of a "
            f"registered model for one input image. Models: {', '.join(list_models())}."
        ),
    )
    parser.add_argument("name", help="registered model name, e.g. iresnet50")
    parser.add_argument("--input-size", type=int, default=112, help="square input (default 112)")
    parser.add_argument(
        "--embedding-size", type=int, default=None,
        help="embedding length (default: the model's, 512 for face backbones)"
    )
    parser.add_argument("--width", type=float, default=None,
                        help="channel multiplier (default: the model's, 1 for face backbones)")
    parser.set_defaults(handler=run_profile_model)
    return parser


def run_profile_model(args: argparse.Namespace) -> int:
    """Handler of ``fkd profile-model``: print the labelled counts, return 0."""
    options = {key: value for key, value in (("embedding_size", args.embedding_size),
                                             ("width", args.width)) if value is not None}
    report = profile_model(args.name, input_size=args.input_size, **options)
    rows = [
        ("model", args.name),
        ("input", "x".join(map(str, report.input_shape[1:]))),
        *((label, str(options[key])) for key, label in (("embedding_size", "embedding size"),
                                                         ("width", "width")) if key in options),
        ("parameters", f"{_scaled(report.params)} ({report.params:,})"),
        ("multiply-adds", f"{_scaled(report.macs)}MACs ({report.macs:,})"),
        ("FLOPs (2 x MACs)", f"{_scaled(report.flops)}FLOPs ({report.flops:,})"),
    ]
    label_width = max(len(label) for label, _ in rows)
    for label, value in rows:
        print(f"{label:<{label_width}}  {value}")
    return 0


def _scaled(count: int) -> str:
    """``count`` in G or M with three decimals, e.g. ``'6.309 G'`` or ``'2.640 M'``."""
    return f"{count / 1e9:.3f} G" if count >= 1e9 else f"{count / 1e6:.3f} M"
