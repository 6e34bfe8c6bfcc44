"""SynthFace rendering speed (no cache) at several resolutions.

Prints images per second for the renderer alone (parameters sampled beforehand; one worker,
then ``--threads`` workers kept across calls as a dataset build keeps them, and their ratio)
and for a whole ``SynthFace`` dataset built without cache (sampling + rendering). Target on a
2-core laptop CPU: >= 1000 images/s at 64 px (renderer).

    python benchmarks/synthface_speed.py [--threads 2] [--images 2048] [--repeats 3]
"""

from __future__ import annotations

import argparse
import time

import torch

from fkdlib.data.synthface import params as P
from fkdlib.data.synthface import render as R
from fkdlib.data.synthface.dataset import SynthFace

IMAGES_PER_IDENTITY = 8


def _samples(count: int, difficulty: str) -> tuple[list, list]:
    identities, nuisances = [], []
    for g in range(-(-count // IMAGES_PER_IDENTITY)):
        identity = P.sample_identity(0, g)
        for i in range(IMAGES_PER_IDENTITY):
            identities.append(identity)
            nuisances.append(P.sample_nuisance(0, "train", g, i, difficulty))
    return identities[:count], nuisances[:count]


def _best_rate(run, count: int, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return count / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--images", type=int, default=2048)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--difficulty", default="medium", choices=list(P.DIFFICULTIES))
    parser.add_argument("--resolutions", type=int, nargs="+", default=[32, 64, 112])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    identities, nuisances = _samples(args.images, args.difficulty)
    print(f"SynthFace rendering, {args.images} images, difficulty {args.difficulty}, "
          f"torch threads {torch.get_num_threads()}, best of {args.repeats}")
    print(f"{'resolution':>10}  {'1 worker img/s':>14}  {'renderer img/s':>14}  {'ratio':>5}  "
          f"{'dataset img/s':>13}")
    for resolution in args.resolutions:
        def render_all() -> None:
            R.render(identities, nuisances, resolution)

        torch.set_num_threads(1)
        R.render(identities[:64], nuisances[:64], resolution)  # warm-up
        single_rate = _best_rate(render_all, args.images, args.repeats)
        torch.set_num_threads(args.threads)
        with R.kept_workers():
            R.render(identities, nuisances, resolution)  # warm-up of the workers
            render_rate = _best_rate(render_all, args.images, args.repeats)
        identities_needed = -(-args.images // IMAGES_PER_IDENTITY)
        dataset_rate = _best_rate(
            lambda: SynthFace("train", identities_needed, IMAGES_PER_IDENTITY, resolution,
                              difficulty=args.difficulty, use_cache=False).images_u8(),
            identities_needed * IMAGES_PER_IDENTITY, args.repeats)
        print(f"{resolution:>10}  {single_rate:>14.0f}  {render_rate:>14.0f}  "
              f"{render_rate / single_rate:>5.2f}  {dataset_rate:>13.0f}")


if __name__ == "__main__":
    main()
