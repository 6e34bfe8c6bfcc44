"""Images/s of one training step at the default profile's sizes, as ratios to a bare loop.

The default profile trains IResNet-18/34/50, MobileFaceNet and VarGFaceNet at width 0.125 on
32 x 32 px RGB images, 128-d embeddings, a margin head over 250 identities, batch 128, SGD
(momentum 0.9, weight decay 5e-4), gradient clipping at 5, with the profile's 2 intra-op
threads. Every model is trained with several seeds, so this step is the cost of a
reproduction. For each model the script times, interleaved round by round (variant A, B, C, A,
B, C, ... so a busy spell of a shared machine slows them alike):

- ``bare``: model + ArcFace head + cross-entropy + SGD on float32 batches prepared in advance
  (no clipping, no flip, no schedule): the reference of every ratio;
- ``Trainer.fit``: fkdlib's trainer as configured today (``TrainConfig`` of the profile, its
  ``amp=True`` default included; on the CPU it trains nets with grouped convolutions in
  ``channels_last``), timed per step by a callback (first step of each fit left out: it carries
  the fit's set-up), and the same with that layout choice flipped;
- options, each the bare loop with one change: bf16 autocast on the CPU (what ``amp`` would do
  if it applied on the CPU; one timed step a round, it is slow), batch 64 / 256,
  ``channels_last``, ``torch.compile`` of the backbone (``--compile``; its compile time is
  printed apart), the data as an in-memory uint8 tensor converted per batch or as a float32
  tensor converted once, gradient clipping at 5, 1 intra-op thread instead of the profile's;
  and, in worker processes (a process sets them once, before any parallel work), 1 inter-op
  thread and ``OMP_WAIT_POLICY=PASSIVE``, beside a worker with default settings as their own
  reference.

Every variant runs one untimed warm-up step, then ``--steps`` timed steps per round. Printed
per variant: ``img/s``, the median step's images/s over all rounds; ``vs bare``, the speed
ratio to ``bare``, the median over the *quiet* rounds of (variant images/s / bare images/s of
the same round), with its range; ``all``, the same median over every round; ``best``, the
ratio of the fastest steps. A round is quiet when the bare loop ran at >= 70% of its fastest
round in it and in the next round (the variants run between the two): with other processes
busy on a 2-core machine, the profile's 2 OpenMP threads wait on each other and a step can be
10-20x slower, which drowns every option's effect, so ratios are read where the machine was
quiet (the number of quiet rounds is printed: rerun with more ``--repeats`` if it is small).
Ratios > 1 are faster. Batch size changes the optimisation (fewer, larger steps): it is a
recipe choice, never a free speed-up. Compare ratios across machines, not images/s.

Measured on a 2-core AVX2 CPU (AMD EPYC, torch 2.13, quiet rounds): bf16 autocast ~0.1x (the
trainer enters it only on CUDA); ``channels_last`` ~1.4x for MobileFaceNet, ~1.05x for
VarGFaceNet, 0.75-0.9x for IResNet-18/50 (so the trainer uses it only for nets with grouped
convolutions); ``torch.compile`` ~1.6x for IResNet-18 after ~45 s of compilation, about one
training's worth of saved time and not bit-identical to eager; 1 thread ~0.6x; data path,
clipping and inter-op threads within noise. With other processes busy, 1 thread or
``OMP_WAIT_POLICY=PASSIVE`` is several times faster than the default 2 spinning threads.

Usage: python benchmarks/training_step.py [--steps 3] [--repeats 5]
    [--models iresnet18 [iresnet50 mobilefacenet vargfacenet ...]] [--variants NAME ...]
    [--compile] [--no-workers] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

import numpy as np
import pandas as pd
import torch
import torch.nn as nn

from fkdlib.data.transforms import to_float_image
from fkdlib.heads import create_head
from fkdlib.models import create_model
from fkdlib.profiles import get_profile
from fkdlib.training.trainer import (
    ClassificationTask, TrainConfig, Trainer, prefers_channels_last)

PROFILE = get_profile("default")
RESOLUTION, WIDTH = PROFILE.resolution, PROFILE.backbone_width
EMBEDDING, CLASSES, BATCH = PROFILE.embedding_size, PROFILE.train_identities, PROFILE.batch_size
# 5,000 images: the training set the trainer keeps in memory
IMAGES = PROFILE.train_identities * PROFILE.train_images_per_identity
HEAD = "arcface"
CLIP = 5.0
# per-process settings, each in a worker process (name -> (environment, inter-op threads))
WORKERS: dict[str, tuple[dict[str, str], int | None]] = {
    "worker, default settings": ({}, None),
    "worker, 1 inter-op thread": ({}, 1),
    "worker, OMP_WAIT_POLICY=PASSIVE": ({"OMP_WAIT_POLICY": "PASSIVE"}, None),
}
TRAINING_STEPS = PROFILE.epochs * (IMAGES // BATCH)  # steps of one default-profile training
QUIET = 0.7
FREE = "free"  # options that leave the optimisation unchanged
RECIPE = "changes the recipe"


def make_task(model: str, seed: int = 0) -> ClassificationTask:
    torch.manual_seed(seed)
    backbone = create_model(model, input_size=RESOLUTION, width=WIDTH, embedding_size=EMBEDDING)
    return ClassificationTask(backbone, create_head(HEAD, embedding_size=EMBEDDING,
                                                    num_classes=CLASSES))


def make_images(count: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(count, 3, RESOLUTION, RESOLUTION), dtype=np.uint8)
    return torch.from_numpy(images), torch.from_numpy(rng.integers(0, CLASSES, size=count))


class BareLoop:
    """The bare step on one model, with one option changed; ``run(n)`` returns n step times."""

    def __init__(self, model: str, *, batch: int = BATCH, autocast_bf16: bool = False,
                 channels_last: bool = False, compile_backbone: bool = False,
                 data: str = "prepared", clip: bool = False, threads: int | None = None,
                 max_steps: int | None = None):
        self.task = make_task(model)
        self.max_steps = max_steps
        self.batch, self.autocast_bf16 = batch, autocast_bf16
        self.clip, self.threads = clip, threads
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.task.to(memory_format=self.memory_format)
        if compile_backbone:
            self.task.backbone = torch.compile(self.task.backbone)
        self.params = [p for p in self.task.parameters() if p.requires_grad]
        self.optimizer = torch.optim.SGD(self.params, lr=0.1, momentum=0.9, weight_decay=5e-4)
        self.data = data
        self.generator = torch.Generator().manual_seed(0)
        images, self.labels = make_images(IMAGES)
        if data == "prepared":  # float32 batches made in advance: no data work in the step
            self.prepared = [(to_float_image(images[i * batch:(i + 1) * batch])
                              .contiguous(memory_format=self.memory_format),
                              self.labels[i * batch:(i + 1) * batch])
                             for i in range(len(images) // batch)]
        elif data == "uint8":  # as the trainer: uint8 in memory, converted per batch
            self.images = images
        elif data == "float32":  # converted once, 4x the memory
            self.images = to_float_image(images)
        else:
            raise ValueError(data)
        self.cursor = 0
        self.task.train()

    def _next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self.data == "prepared":
            batch = self.prepared[self.cursor % len(self.prepared)]
            self.cursor += 1
            return batch
        index = torch.randperm(len(self.labels), generator=self.generator)[:self.batch]
        images = self.images[index]
        if self.data == "uint8":
            images = to_float_image(images)
        return images.contiguous(memory_format=self.memory_format), self.labels[index]

    def step(self) -> None:
        images, labels = self._next_batch()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.autocast_bf16):
            loss = self.task(images, labels)["ce"]
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.clip:
            nn.utils.clip_grad_norm_(self.params, CLIP)
        self.optimizer.step()

    def run(self, steps: int) -> list[float]:
        threads = torch.get_num_threads()
        if self.threads is not None:
            torch.set_num_threads(self.threads)
        try:
            self.step()  # warm-up: caches and thread pool after the previous variant
            durations = []
            for _ in range(min(steps, self.max_steps or steps)):
                start = time.perf_counter()
                self.step()
                durations.append(time.perf_counter() - start)
            return durations
        finally:
            torch.set_num_threads(threads)


class _ArrayData(torch.utils.data.Dataset):
    """A dataset on the trainer's in-memory uint8 path."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor):
        self._images = images.numpy()
        self.metadata = pd.DataFrame({"identity": labels.numpy()})

    def __len__(self) -> int:
        return len(self._images)

    def images_u8(self) -> np.ndarray:
        return self._images


class _StepClock:
    def __init__(self) -> None:
        self.durations: list[float] = []
        self._last = 0.0

    def on_step_end(self, trainer, epoch, step, losses) -> None:
        now = time.perf_counter()
        if step:  # the first step of a fit carries its set-up
            self.durations.append(now - self._last)
        self._last = now


class TrainerLoop:
    """``Trainer.fit`` as the zoo runs it for the default profile, one epoch of steps + 1."""

    def __init__(self, model: str, channels_last: bool | None = None):
        self.model, self.channels_last = model, channels_last
        self.train = {"epochs": 1, "batch_size": BATCH, "lr": PROFILE.lr,
                      "weight_decay": PROFILE.weight_decay, "milestones": [0.5, 0.75]}
        self.config = TrainConfig(**self.train)

    def run(self, steps: int) -> list[float]:
        clock = _StepClock()
        data = _ArrayData(*make_images((steps + 1) * BATCH))
        Trainer(make_task(self.model), self.config, callbacks=[clock],
                channels_last=self.channels_last).fit(data)
        return clock.durations


class WorkerLoop:
    """A bare loop in a child process started with per-process settings; runs on demand, so
    it takes its turn in the interleaving and never runs beside the parent."""

    def __init__(self, model: str, env: dict[str, str], interop: int | None, threads: int):
        spec = json.dumps({"model": model, "interop": interop, "threads": threads})
        self.process = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "--worker", spec],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
            env={**os.environ, **env})
        self._read()  # "ready": imports and model built before the first round

    def _read(self):
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError("benchmark worker process exited early")
        return json.loads(line)

    def run(self, steps: int) -> list[float]:
        self.process.stdin.write(f"{steps}\n")
        self.process.stdin.flush()
        return self._read()

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait(timeout=60)


def worker_main(spec: str) -> None:
    options = json.loads(spec)
    if options["interop"] is not None:
        torch.set_num_interop_threads(options["interop"])
    torch.set_num_threads(options["threads"])
    loop = BareLoop(options["model"])
    print(json.dumps("ready"), flush=True)
    for line in sys.stdin:
        print(json.dumps(loop.run(int(line))), flush=True)


def variants(model: str, args: argparse.Namespace) -> dict[str, tuple[str, Callable]]:
    """name -> (kind, factory of a loop); built lazily so that --variants skips the others."""
    threads_other = 1 if args.threads != 1 else 2
    table: dict[str, tuple[str, Callable]] = {
        "bare": ("reference", lambda: BareLoop(model)),
        "Trainer.fit (today)": ("fkdlib", lambda: TrainerLoop(model)),
        "Trainer.fit, layout flipped": (
            "fkdlib", lambda: TrainerLoop(model, channels_last=not prefers_channels_last(
                make_task(model), "cpu"))),
        # several times slower without native bf16: 1 timed step a round is enough
        "bf16 autocast (amp on CPU)": (
            FREE, lambda: BareLoop(model, autocast_bf16=True, max_steps=1)),
        "channels_last": (FREE, lambda: BareLoop(model, channels_last=True)),
        "data: uint8 in memory": (FREE, lambda: BareLoop(model, data="uint8")),
        "data: float32 in memory": (FREE, lambda: BareLoop(model, data="float32")),
        "grad clip 5 (cost)": (RECIPE, lambda: BareLoop(model, clip=True)),
        f"{threads_other} intra-op thread(s)": (
            FREE, lambda: BareLoop(model, threads=threads_other)),
        "batch 64": (RECIPE, lambda: BareLoop(model, batch=64)),
        "batch 256": (RECIPE, lambda: BareLoop(model, batch=256)),
    }
    if args.compile:
        table["torch.compile (backbone)"] = (
            "costs a compile", lambda: BareLoop(model, compile_backbone=True))
    if args.workers:
        for name, (env, interop) in WORKERS.items():
            table[name] = (FREE, lambda env=env, interop=interop:
                           WorkerLoop(model, env, interop, args.threads))
    if args.variants:
        unknown = [v for v in args.variants if v not in table]
        if unknown:
            raise SystemExit(f"unknown variant(s) {unknown}; choose among {list(table)}")
        table = {k: v for k, v in table.items() if k == "bare" or k in args.variants}
    return table


def measure(model: str, args: argparse.Namespace) -> list[dict]:
    table = variants(model, args)
    loops, notes, compile_s = {}, {}, {}
    for name, (_, factory) in table.items():
        loops[name] = factory()
        if name.startswith("torch.compile"):
            first = time.perf_counter()
            loops[name].step()  # compiles forward and backward
            compile_s[name] = time.perf_counter() - first
            notes[name] = f"compile {compile_s[name]:.0f} s (first step)"
        elif isinstance(loops[name], TrainerLoop):
            loops[name].run(1)  # warm-up fit
    batch = {name: getattr(loop, "batch", BATCH) for name, loop in loops.items()}
    steps: dict[str, list[float]] = {name: [] for name in loops}
    rounds: dict[str, list[float]] = {name: [] for name in loops}  # images/s per round
    try:
        for repeat in range(args.repeats):
            for name, loop in loops.items():
                durations = loop.run(args.steps)
                steps[name] += durations
                rounds[name].append(batch[name] / statistics.median(durations))
            print(f"  {model} round {repeat + 1}/{args.repeats}: bare "
                  f"{rounds['bare'][-1]:.0f} img/s", flush=True)
    finally:
        for loop in loops.values():
            if isinstance(loop, WorkerLoop):
                loop.close()
    # a round is quiet when the bare loop ran at >= QUIET of its fastest round in it and in the
    # next round (the round's other variants run between the two)
    fastest = max(rounds["bare"])
    fast = [b >= QUIET * fastest for b in rounds["bare"]]
    quiet = [i for i in range(len(fast)) if fast[i] and fast[min(i + 1, len(fast) - 1)]]
    quiet = quiet or list(range(len(fast)))  # never quiet: read every round
    print(f"  {model}: {len(quiet)}/{args.repeats} quiet rounds", flush=True)
    rows = []
    for name, (kind, _) in table.items():
        ratios = [v / b for v, b in zip(rounds[name], rounds["bare"])]
        kept = [ratios[i] for i in quiet]
        best = batch[name] / min(steps[name]) / (batch["bare"] / min(steps["bare"]))
        rows.append({"model": model, "variant": name, "kind": kind,
                     "img_s": batch[name] / statistics.median(steps[name]), "best": best,
                     "ratio": statistics.median(kept), "low": min(kept), "high": max(kept),
                     "all": statistics.median(ratios), "kept": kept,
                     "note": notes.get(name, ""), "compile_s": compile_s.get(name)})
    return rows


# options judged against another variant than ``bare`` (same process kind / the trainer's data)
AGAINST = {"worker, 1 inter-op thread": "worker, default settings",
           "worker, OMP_WAIT_POLICY=PASSIVE": "worker, default settings",
           "data: float32 in memory": "data: uint8 in memory",
           "Trainer.fit (today)": "Trainer.fit, layout flipped"}


def recommend(rows: list[dict], threshold: float) -> list[str]:
    """One line per option: adopt only free options >= threshold faster in the median quiet
    round and faster in at least 3/4 of the quiet rounds."""
    lines = []
    found = {(row["model"], row["variant"]): row for row in rows}
    for row in rows:
        name, ratio, low, high = row["variant"], row["ratio"], row["low"], row["high"]
        against = found.get((row["model"], AGAINST.get(name)))
        if against is not None:  # paired, round by round
            paired = [a / b for a, b in zip(row["kept"], against["kept"])]
            ratio, low, high = statistics.median(paired), min(paired), max(paired)
        else:
            paired = row["kept"]
        versus = f" vs {against['variant']}" if against is not None else ""
        tag = f"{row['model']}: {name}{versus} x{ratio:.2f} (quiet rounds {low:.2f}-{high:.2f})"
        if name == "Trainer.fit (today)" and against is not None:
            layout = ("channels_last" if prefers_channels_last(make_task(row["model"]), "cpu")
                      else "contiguous")
            verdict = ("its layout choice holds" if ratio >= 1 / threshold else
                       "the other layout is faster here: revisit prefers_channels_last")
            lines.append(f"  {tag}: Trainer trains this net {layout}; {verdict}")
            continue
        if row["kind"] in ("reference", "fkdlib") or name.startswith(("worker, default",
                                                                      "data: uint8")):
            continue
        if row["kind"] == RECIPE:
            verdict = "recipe choice, not a free speed-up: keep the profile's value"
        elif ratio >= threshold and sum(r > 1.0 for r in paired) >= 0.75 * len(paired):
            verdict = "RECOMMENDED (free, faster in >= 3/4 of the quiet rounds)"
        elif ratio >= threshold:
            verdict = "faster in the median round only: rerun before adopting"
        elif ratio <= 1 / threshold:
            verdict = "slower: keep it off"
        else:
            verdict = f"within +-{(threshold - 1) * 100:.0f}%: not worth a change"
        if row["compile_s"] is not None and ratio > 1:
            # the compile is paid again by every training process; eval (monitors) recompiles
            bare = found[(row["model"], "bare")]["img_s"]
            saved = BATCH / bare - BATCH / (bare * ratio)
            even, steps = row["compile_s"] / saved, TRAINING_STEPS
            verdict = (f"pays back its {row['compile_s']:.0f} s compile after {even:.0f} steps; "
                       f"a default-profile training has {steps}: "
                       + ("worth it" if even < 0.5 * steps else "not worth it") + "; also not "
                       "bit-identical to eager, so a change of results, not a free switch")
        if name.startswith("bf16"):
            verdict += ("; Trainer already enters autocast only on CUDA" if ratio < 1 else
                        "; Trainer enters autocast only on CUDA today")
        if name == "channels_last":
            uses = prefers_channels_last(make_task(row["model"]), "cpu")
            verdict += f"; Trainer {'uses' if uses else 'does not use'} it for this net"
        if name.startswith("data: float32"):
            verdict += " (the trainer keeps uint8: 4x less memory)"
        if "intra-op" in name or "WAIT_POLICY" in name or "inter-op" in name:
            verdict += " (a profile / environment setting, not the trainer's)"
        lines.append(f"  {tag}: {verdict}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3, help="timed steps per variant and round")
    parser.add_argument("--repeats", type=int, default=5, help="interleaved rounds")
    parser.add_argument("--models", nargs="+", default=["iresnet18"],
                        help="e.g. iresnet18 iresnet34 iresnet50 mobilefacenet vargfacenet")
    parser.add_argument("--variants", nargs="+", default=None,
                        help="time only these variants (and bare)")
    parser.add_argument("--threads", type=int, default=PROFILE.num_threads)
    parser.add_argument("--compile", action="store_true",
                        help="also torch.compile the backbone (minutes of compilation)")
    parser.add_argument("--no-workers", dest="workers", action="store_false",
                        help="skip the per-process settings (inter-op threads, OMP wait policy)")
    parser.add_argument("--threshold", type=float, default=1.05)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    os.environ.setdefault("FKD_PROGRESS", "0")  # no bars, as ``fkd reproduce`` runs notebooks
    if args.worker:
        worker_main(args.worker)
        return
    torch.set_num_threads(args.threads)
    load = os.getloadavg()
    print(f"default profile: {RESOLUTION} px, width {WIDTH}, {EMBEDDING}-d, {HEAD} over "
          f"{CLASSES} classes, batch {BATCH}; torch {torch.__version__}, CPU "
          f"{torch.backends.cpu.get_cpu_capability()}, {os.cpu_count()} CPUs, "
          f"{torch.get_num_threads()} intra-op / {torch.get_num_interop_threads()} inter-op "
          f"threads; {args.repeats} interleaved rounds x {args.steps} steps; load average "
          f"{load[0]:.1f}", flush=True)
    rows = []
    for model in args.models:
        rows += measure(model, args)
    print(f"\nload average at the end {os.getloadavg()[0]:.1f} (a shared machine: trust ratios, "
          "not images/s)")
    print(f"{'model':<14} {'variant':<34} {'img/s':>7} {'vs bare':>8} {'quiet range':>11} "
          f"{'all':>5} {'best':>5}  note")
    for row in rows:
        print(f"{row['model']:<14} {row['variant']:<34} {row['img_s']:>7.0f} "
              f"{row['ratio']:>8.2f} {row['low']:>5.2f}-{row['high']:<5.2f} {row['all']:>5.2f} "
              f"{row['best']:>5.2f}  "
              f"{row['kind']}{'; ' + row['note'] if row['note'] else ''}")
    print(f"\nrecommendations (free options adopted only if >= {args.threshold:.2f}x):")
    print("\n".join(recommend(rows, args.threshold)))


if __name__ == "__main__":
    main()
