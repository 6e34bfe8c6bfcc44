"""``fkd profile-model``: labelled parameter, MAC and FLOP counts."""

import argparse
import re

import pytest

from fkdlib.errors import ConfigError
from fkdlib.evaluation.cli import add_profile_model_parser


def run(argv):
    parser = argparse.ArgumentParser(prog="fkd")
    add_profile_model_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["profile-model", *argv])
    return args.handler(args)


def exact_count(output, label):
    line = next(line for line in output.splitlines() if line.startswith(label))
    return int(re.search(r"\(([\d,]+)\)", line).group(1).replace(",", ""))


def test_prints_params_macs_and_flops_labelled(capsys):
    assert run(["iresnet18"]) == 0
    output = capsys.readouterr().out
    assert "24.026 M" in output  # insightface_model_sizes: 24.03M
    assert "2.610 GMACs" in output  # insightface_model_sizes: 2.61 GMACs
    macs, flops = exact_count(output, "multiply-adds"), exact_count(output, "FLOPs (2 x MACs)")
    assert flops == 2 * macs
    assert "GFLOPs" in output


def test_options_change_the_model(capsys):
    run(["mobilefacenet", "--input-size", "32", "--width", "0.25", "--embedding-size", "64"])
    small = capsys.readouterr().out
    assert "3x32x32" in small and "embedding size    64" in small
    run(["mobilefacenet", "--input-size", "32", "--width", "0.25", "--embedding-size", "128"])
    larger = capsys.readouterr().out
    # A 64 -> 128 embedding adds one Linear (head x 64, no bias) and one BN1d (2 x 64).
    head = 128  # 512 channels x width 0.25
    assert exact_count(larger, "parameters") - exact_count(small, "parameters") == 64 * head + 128


def test_unknown_model_is_a_config_error():
    with pytest.raises(ConfigError, match="unknown model .resnet50.; known: "):
        run(["resnet50"])
