"""SynthFace -> real faces: real LFW accuracy of models trained only on SynthFace.

Trains (or reuses from the zoo) notebook 01's Softmax IResNet-18 at a profile's scale on
SynthFace, once per seed and renderer variant, and verifies LFW's 6,000 real pairs (View 2).
Prints each run, then per variant the mean over seeds and the paired difference to the
standard renderer with its 95% t interval: the variants switch one cue off (hair fixed per
identity, identity geometry halved, directional shading off), so a cue that carries identity
to real faces costs accuracy when switched off. Target at the default profile: >= 70%
(goal 75%). Needs LFW in scikit-learn's cache (``fkd convert lfw2sklearn``, data/README.md).

    python benchmarks/synthface_transfer.py [--profile default] [--seeds 3]
        [--variants standard,hair_fixed,half_geometry,flat_shading] [--data-home DIR]
"""

from __future__ import annotations

import argparse

import pandas as pd

from fkdlib.data.synthface.params import VARIANTS
from fkdlib.synthface_transfer import measure_transfer, transfer_summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="default")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--data-home", default=None,
                        help="scikit-learn data folder holding lfw_home/ (default: its own)")
    args = parser.parse_args()
    runs = measure_transfer(args.profile, args.variants.split(","), args.seeds,
                            data_home=args.data_home)
    with pd.option_context("display.float_format", "{:.2f}".format, "display.width", 120):
        print(runs.to_string(index=False))
        print()
        print(transfer_summary(runs).to_string())


if __name__ == "__main__":
    main()
