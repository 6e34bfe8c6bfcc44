"""FAN-Face training steps at the default profile's sizes: the frozen FAN run at every step
against its outputs taken from a bank (:class:`~fkdlib.training.fan_guided.FanGuidedTask`),
as ratios to the plain IResNet-18 step of the baseline.

Notebook 05 trains eight FAN-Face variants three times each; each step of each runs the
two-stack FAN on 64 px faces unless its outputs are banked. The bank is built once per
training (the FAN over every training image and its mirror image); its build time is printed
beside the per-step times, with the number of steps after which it has paid for itself. The
three steps are timed interleaved, round by round (a busy spell of a shared machine slows all
alike); each time is the median over rounds. Ratios > 1: slower than the baseline's step.

    python benchmarks/fan_face_step.py [--steps 5] [--repeats 5] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import pandas as pd
import torch

from fkdlib.data.transforms import to_float_image
from fkdlib.experiments import fan_face as exp
from fkdlib.heads import create_head
from fkdlib.models import create_model
from fkdlib.profiles import get_profile
from fkdlib.training.fan_guided import FanGuidedTask, bank_bytes
from fkdlib.training.trainer import ClassificationTask

PROFILE = get_profile("default")
IMAGES = PROFILE.train_identities * PROFILE.train_images_per_identity


class _Images(torch.utils.data.Dataset):
    """Random uint8 faces with identities, in the trainer's in-memory form."""

    def __init__(self, count: int, side: int) -> None:
        generator = torch.Generator().manual_seed(0)
        self._images = torch.randint(0, 256, (count, 3, side, side), dtype=torch.uint8,
                                     generator=generator).numpy()
        self.metadata = pd.DataFrame({"identity": np.arange(count) % PROFILE.train_identities})

    def __len__(self) -> int:
        return len(self._images)

    def images_u8(self):
        return self._images


def _fan_face() -> torch.nn.Module:
    options, _ = exp.VARIANTS[exp.FAN_FACE]
    fan = exp.fan_options(PROFILE)
    return create_model("fan_face", depth=exp.FRN_DEPTH, input_size=PROFILE.resolution,
                        width=PROFILE.backbone_width, embedding_size=PROFILE.embedding_size,
                        fan_stacks=fan["stacks"], fan_width=fan["width"], fan_depth=fan["depth"],
                        fan_input_size=fan["input_size"], **options)


def _head() -> torch.nn.Module:
    head, kwargs = exp.MARGIN
    return create_head(head, embedding_size=PROFILE.embedding_size,
                       num_classes=PROFILE.train_identities, **kwargs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=PROFILE.num_threads)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    data = _Images(IMAGES, PROFILE.resolution)
    online = FanGuidedTask(_fan_face(), _head())
    banked = FanGuidedTask(_fan_face(), _head())
    started = time.perf_counter()
    rows = banked.training_targets(data)
    build_s = time.perf_counter() - started
    baseline = ClassificationTask(
        create_model(f"iresnet{exp.FRN_DEPTH}", input_size=PROFILE.resolution,
                     width=PROFILE.backbone_width, embedding_size=PROFILE.embedding_size),
        _head())
    images = to_float_image(torch.from_numpy(data.images_u8()[:PROFILE.batch_size]))
    labels = torch.tensor(data.metadata["identity"].to_numpy()[:PROFILE.batch_size])
    tasks = {"IResNet-18 (baseline)": (baseline, labels),
             "FAN-Face, FAN at every step": (online, labels),
             "FAN-Face, FAN outputs banked": (banked, rows[:PROFILE.batch_size])}
    optimisers = {name: torch.optim.SGD([p for p in task.parameters() if p.requires_grad],
                                        lr=0.01, momentum=0.9)
                  for name, (task, _) in tasks.items()}
    times: dict[str, list[float]] = {name: [] for name in tasks}
    for _ in range(args.repeats):
        for name, (task, targets) in tasks.items():
            task.train()
            for step in range(args.steps + 1):
                started = time.perf_counter()
                loss = sum(task(images, targets).values())
                optimisers[name].zero_grad()
                loss.backward()
                optimisers[name].step()
                if step:  # the first step of a round warms up
                    times[name].append(time.perf_counter() - started)
    base = statistics.median(times["IResNet-18 (baseline)"])
    print(f"default profile: {PROFILE.resolution} px, width {PROFILE.backbone_width}, batch "
          f"{PROFILE.batch_size}, FAN {exp.fan_options(PROFILE)}, {args.threads} threads; "
          f"median of {args.repeats} x {args.steps} steps")
    print(f"{'step':<30} {'ms':>8} {'/ baseline':>11}")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"{name:<30} {1000 * median:>8.1f} {median / base:>11.2f}")
    saved = (statistics.median(times["FAN-Face, FAN at every step"])
             - statistics.median(times["FAN-Face, FAN outputs banked"]))
    steps = IMAGES // PROFILE.batch_size * PROFILE.epochs
    print(f"bank: {bank_bytes(banked.backbone, IMAGES) / 2**20:.0f} MiB for {IMAGES} images "
          f"and their mirrors, built in {build_s:.1f} s, repaid after "
          f"{build_s / saved if saved > 0 else float('inf'):.0f} steps "
          f"(a default-profile training has {steps})")


if __name__ == "__main__":
    main()
