"""CPU forward latency of the face backbones of notebook 02, as ratios to IResNet-50.

All backbones are timed in one run, interleaved round by round (so a busy spell of a shared
machine slows all of them alike), and each latency is the median of the rounds; the ratio to
IResNet-50 at the same batch size is what to compare across machines. Multiply-adds are printed
beside it: FLOPs predict CPU latency only roughly (VarGFaceNet, Yan et al. ICCVW 2019, counts
1.02 GFLOPs = 0.51 G multiply-adds at 112 px against IResNet-50's 6.3 G multiply-adds).

    python benchmarks/backbone_latency.py [--threads 2] [--input-size 112] [--width 1.0]
        [--embedding-size 512] [--batches 1 32] [--repeats 5]
"""

from __future__ import annotations

import argparse

import torch

from fkdlib.evaluation.latency import measure_latency
from fkdlib.experiments.vargfacenet import BACKBONES, TEACHER, model_cost
from fkdlib.models import create_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--input-size", type=int, default=112)
    parser.add_argument("--width", type=float, default=1.0)
    parser.add_argument("--embedding-size", type=int, default=512)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    options = {"input_size": args.input_size, "width": args.width,
               "embedding_size": args.embedding_size}
    models = {label: create_model(name, **options) for label, name in BACKBONES.items()}
    table = measure_latency(models, args.input_size, args.batches, args.repeats,
                            reference=TEACHER)
    print(f"{args.input_size} px, width {args.width}, {args.embedding_size}-d, "
          f"{torch.get_num_threads()} threads, median of {args.repeats} interleaved rounds")
    print(f"{'backbone':<20} {'M mult-adds':>11} {'batch':>5} {'ms':>9} {'ms/img':>8} "
          f"{'/ ' + TEACHER:>14}")
    for _, row in table.iterrows():
        macs = model_cost(BACKBONES[row["backbone"]], **options).macs / 1e6
        print(f"{row['backbone']:<20} {macs:>11.1f} {row['batch']:>5} {row['latency (ms)']:>9.1f} "
              f"{row['per image (ms)']:>8.2f} {row[f'ratio to {TEACHER}']:>14.3f}")


if __name__ == "__main__":
    main()
