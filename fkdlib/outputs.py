"""Where a run writes, so that only the committed configuration touches the committed results.

The repository's ``results/`` and ``figures/`` hold one run: the ``default`` profile, seed 0,
on SynthFace, with no extra evaluation set and no profile override (:data:`COMMITTED`). Any
other run — another profile, seed or data, ``--eval lfw``, ``--set epochs=1``, and a notebook
opened in JupyterLab with its parameters changed — writes under
``build/<profile>/<data>-seed<k>/`` instead (:func:`output_root`), ``<data>`` naming the
data source (``synthface``, ``rec-faces_emore``, ``folder-MY_FACES``, ``+lfw`` for the extra
LFW set) and the profile suffixed ``-custom`` when fields are overridden.
"""

from __future__ import annotations

import re
from pathlib import Path

COMMITTED = {"profile": "default", "seed": 0, "data": "synthface", "eval_sets": "",
             "overrides": ""}


def _normalised(value: str | None) -> str:
    return ",".join(part.strip() for part in str(value or "").split(",") if part.strip())


def is_committed_run(profile: str, seed: int, data: str, eval_sets: str = "",
                     overrides: str = "") -> bool:
    """Whether these are the settings of the committed ``results/`` and ``figures/``."""
    return (profile == COMMITTED["profile"] and int(seed) == COMMITTED["seed"]
            and (str(data).strip() or "synthface") == COMMITTED["data"]
            and not _normalised(eval_sets) and not _normalised(overrides))


def data_slug(data: str, eval_sets: str = "") -> str:
    """A folder name for a data source: ``"rec:/data/faces_emore"`` -> ``"rec-faces_emore"``,
    with ``+<set>`` per extra evaluation set."""
    data = str(data).strip() or "synthface"
    kind, _, path = data.partition(":")
    slug = kind if not path else f"{kind}-{Path(path.rstrip('/')).name or 'root'}"
    slug += "".join(f"+{name}" for name in _normalised(eval_sets).split(",") if name)
    return re.sub(r"[^A-Za-z0-9_.+=-]", "_", slug)


def output_root(profile: str, seed: int, data: str, eval_sets: str = "", overrides: str = "",
                root: str | Path = ".") -> Path:
    """``root`` for the committed configuration, else
    ``root/build/<profile>[-custom]/<data>-seed<k>`` (module docstring)."""
    root = Path(root)
    if is_committed_run(profile, seed, data, eval_sets, overrides):
        return root
    folder = profile + ("-custom" if _normalised(overrides) else "")
    return root / "build" / folder / f"{data_slug(data, eval_sets)}-seed{int(seed)}"


def output_dirs(profile: str, seed: int, data: str, eval_sets: str = "", overrides: str = "",
                root: str | Path = ".") -> tuple[Path, Path]:
    """``(results folder, figures folder)`` of a run (:func:`output_root`)."""
    base = output_root(profile, seed, data, eval_sets, overrides, root)
    return base / "results", base / "figures"
