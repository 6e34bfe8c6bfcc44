"""Shared test settings: one torch thread (CI machines have two cores), Agg backend."""

import os

os.environ.setdefault("MPLBACKEND", "Agg")

import torch  # noqa: E402

torch.set_num_threads(1)
