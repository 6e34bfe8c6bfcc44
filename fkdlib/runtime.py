"""Reproducibility plumbing: seeding, determinism, threads, device choice and provenance."""

from __future__ import annotations

import datetime as _dt
import os
import platform
import random
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .errors import ConfigError

PROVENANCE_PACKAGES = (
    "fkdlib", "torch", "numpy", "pandas", "scikit-learn", "umap-learn", "matplotlib",
    "seaborn", "papermill",
)


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and PyTorch's generators (all devices)."""
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ConfigError(f"seed must be a non-negative integer, got {seed!r}")
    random.seed(int(seed))
    np.random.seed(int(seed) % 2**32)
    torch.manual_seed(int(seed))


def set_determinism(enabled: bool = True) -> None:
    """Ask PyTorch for deterministic kernels where they exist (warn, not fail, elsewhere)."""
    torch.use_deterministic_algorithms(enabled, warn_only=True)
    if torch.backends.cudnn.is_available():
        torch.backends.cudnn.deterministic = enabled
        torch.backends.cudnn.benchmark = not enabled
    if enabled:
        # cuBLAS needs this workspace setting for deterministic GEMMs on CUDA >= 10.2.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")


def set_threads(num_threads: int | None) -> int:
    """Set PyTorch's intra-op thread count; ``None`` keeps the current one. Returns it."""
    if num_threads is not None:
        if int(num_threads) < 1:
            raise ConfigError(f"num_threads must be >= 1, got {num_threads!r}")
        torch.set_num_threads(int(num_threads))
    return torch.get_num_threads()


def resolve_device(spec: str | torch.device = "auto") -> torch.device:
    """Turn ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"`` into a usable device.

    ``"auto"`` picks CUDA when available. Asking for CUDA on a machine without it is an error
    that says so, rather than a silent fall-back to the CPU.
    """
    if isinstance(spec, torch.device):
        spec = str(spec)
    spec = str(spec).strip().lower()
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if spec == "cpu":
        return torch.device("cpu")
    if spec == "cuda" or spec.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise ConfigError(
                f"device {spec!r} was requested but CUDA is not available on this machine; "
                "use device='cpu' or device='auto'"
            )
        device = torch.device(spec)
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(
                f"device {spec!r} does not exist: this machine has "
                f"{torch.cuda.device_count()} CUDA device(s)"
            )
        return device
    raise ConfigError(f"unknown device {spec!r}; expected 'auto', 'cpu', 'cuda' or 'cuda:N'")


def _git(*args: str, cwd: Path) -> str | None:
    try:
        out = subprocess.run(
            ["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip()


# Outputs that a reproduction rewrites while it runs: changes there do not make code dirty.
OUTPUT_DIRS = ("results", "figures")


def git_state(path: str | os.PathLike | None = None) -> dict[str, Any]:
    """Commit sha and dirty flag of the repository holding ``path`` (default: this package).

    Dirty means tracked files differ from the commit outside :data:`OUTPUT_DIRS`."""
    where = Path(path) if path is not None else Path(__file__).resolve().parent
    sha = _git("rev-parse", "HEAD", cwd=where)
    outputs = [f":(top,exclude){name}" for name in OUTPUT_DIRS]
    status = _git("status", "--porcelain", "--untracked-files=no", "--", ":(top)", *outputs,
                  cwd=where)
    return {"git_sha": sha, "git_dirty": bool(status) if status is not None else None}


def package_versions(names: tuple[str, ...] = PROVENANCE_PACKAGES) -> dict[str, str | None]:
    """Installed versions of the packages that determine a result."""
    versions: dict[str, str | None] = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def device_description(device: torch.device | str = "cpu") -> str:
    """Human-readable name of the compute device."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)"


def provenance(device: torch.device | str = "cpu", **extra: Any) -> dict[str, Any]:
    """Everything needed to say where a result came from: code, packages, machine, time."""
    record: dict[str, Any] = {
        "time_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "device": device_description(device),
        "torch_threads": torch.get_num_threads(),
        "packages": package_versions(),
        **git_state(),
    }
    record.update(extra)
    return record


def configure(seed: int = 0, device: str = "auto", num_threads: int | None = None,
              deterministic: bool = True) -> torch.device:
    """One call for a notebook's first cell: seed, determinism, threads; returns the device."""
    seed_everything(seed)
    set_determinism(deterministic)
    set_threads(num_threads)
    return resolve_device(device)
