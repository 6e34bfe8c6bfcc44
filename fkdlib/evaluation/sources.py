"""The evaluation protocols real face data provides, read from the files a user has.

A real dataset brings whatever protocols its files define, and the notebooks run on those
(a table or claim needing one the data lacks says so):

- insightface verification files (``lfw.bin``, ``cfp_fp.bin``, ``agedb_30.bin``,
  ``calfw.bin``, ``cplfw.bin``; :func:`bin_protocols`): 10-fold pair lists, identities
  unknown (each pair is its own resampling unit);
- an LFW-format ``pairs.txt`` with its images in ``test/`` or ``lfw/``
  (:func:`pairs_txt_protocol`): the same, with the identities named;
- a ``test/<identity>/<images>`` folder of identities never seen in training
  (:func:`identity_folder_protocols`): the IJB-like template list, MegaFace-like
  identification (identities with one image become distractors) and, where no other LFW list
  exists, LFW-like pairs drawn from them, as on SynthFace;
- the official LFW pairs through scikit-learn's loader (:func:`sklearn_lfw_protocol`), an
  evaluation-only real benchmark any training data can be tested on.

Every list is scaled to the profile's ``protocol_scale`` like SynthFace's, and every image is
resized to the profile's resolution.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from ..data.synthface.protocols import (
    IdentificationSplit, PairProtocol, identification_split, ijb_template_pairs, lfw_pairs)
from ..errors import ConfigError, DataFormatError
from ..profiles import Profile

# insightface's verification files, by protocol key (the ``.bin`` names of faces_emore).
REAL_BINS = {"lfw": "lfw.bin", "cfp_fp": "cfp_fp.bin", "agedb": "agedb_30.bin",
             "calfw": "calfw.bin", "cplfw": "cplfw.bin"}
# The key of the official LFW pairs read through scikit-learn (``--eval lfw``).
SKLEARN_LFW = "lfw_real"
EVAL_SETS = ("lfw",)


def _scaled_pairs(issame: np.ndarray, folds: int, half: int) -> np.ndarray:
    """Pairs of a real fold-ordered list kept at the profile's ``protocol_scale``: within each
    of the ``folds`` contiguous blocks (the insightface folds), the first ``half`` positive and
    the first ``half`` negative pairs, in the file's order; all pairs when no fold has more."""
    n = issame.size
    fold = (np.arange(n) * folds) // n
    keep = np.zeros(n, dtype=bool)
    for f in range(folds):
        block = fold == f
        for label in (True, False):
            keep[np.flatnonzero(block & (issame == label))[:half]] = True
    return np.flatnonzero(keep)


def fold_ordered_protocol(name: str, images: torch.Tensor, issame: np.ndarray,
                          labels: np.ndarray, profile: Profile,
                          real_size: int | None) -> tuple[torch.Tensor, PairProtocol]:
    """A pair list stored pair by pair (images ``2k`` and ``2k + 1``), in insightface's
    contiguous fold order, kept at the profile's scale (``real_size`` pairs in the full list;
    ``None``: keep every pair): the pool of its images and its :class:`PairProtocol`."""
    from .benchmark import pairs_per_fold_of

    folds = profile.verification_folds
    issame = np.asarray(issame, bool)
    if issame.size < folds:
        raise DataFormatError(f"the {name} list has {issame.size} pairs, fewer than the "
                              f"profile's {folds} folds")
    half = issame.size if real_size is None else pairs_per_fold_of(real_size, profile) // 2
    keep = _scaled_pairs(issame, folds, half)
    n = keep.size
    rows = np.stack([2 * keep, 2 * keep + 1], axis=1).reshape(-1)
    pool = images if n == issame.size else images[torch.from_numpy(rows)]
    fold = (np.arange(n) * folds) // n
    protocol = PairProtocol(name, np.arange(2 * n), issame[keep],
                            np.asarray(labels)[rows].astype(np.int64), fold)
    return pool, protocol


def bin_protocols(folder: Path, profile: Profile) -> dict[str, tuple[torch.Tensor, PairProtocol,
                                                                     str]]:
    """Every insightface ``.bin`` of :data:`REAL_BINS` in ``folder``: key -> (pool, protocol,
    source file name)."""
    from ..data.formats import load_verification_bin
    from .benchmark import REAL_PAIRS

    found = {}
    for key, filename in REAL_BINS.items():
        path = folder / filename
        if not path.exists():
            continue
        loaded = load_verification_bin(path, image_size=profile.resolution)
        unknown = np.full(2 * len(loaded.issame), -1)
        pool, protocol = fold_ordered_protocol(key, loaded.images, loaded.issame, unknown,
                                               profile, REAL_PAIRS.get(key))
        found[key] = (pool, protocol, filename)
    return found


def _codes(names: list[str] | np.ndarray) -> np.ndarray:
    return np.unique(np.asarray(names), return_inverse=True)[1].astype(np.int64)


def pairs_txt_protocol(root: Path, profile: Profile
                       ) -> tuple[torch.Tensor, PairProtocol, str] | None:
    """``root/pairs.txt`` (LFW format) over the images of ``root/test/`` or ``root/lfw/``
    (``<name>/<name>_<NNNN>.<ext>``): (pool, protocol, source), or ``None`` when there is no
    ``pairs.txt``."""
    from ..data.formats import parse_lfw_pairs, resolve_lfw_pairs
    from .benchmark import REAL_PAIRS

    pairs_file = root / "pairs.txt"
    if not pairs_file.exists():
        return None
    images_root = next((root / sub for sub in ("test", "lfw") if (root / sub).is_dir()), None)
    if images_root is None:
        raise DataFormatError(f"{pairs_file} needs its images in {root / 'test'} or "
                              f"{root / 'lfw'} (<name>/<name>_0001.jpg, LFW's layout)")
    pairs = parse_lfw_pairs(pairs_file)
    paths = [path for both in resolve_lfw_pairs(pairs, images_root) for path in both]
    names = [name for pair in pairs for name in (pair.name1, pair.name2)]
    issame = np.array([pair.same for pair in pairs], bool)
    order = np.argsort([pair.fold for pair in pairs], kind="stable")
    rows = np.stack([2 * order, 2 * order + 1], axis=1).reshape(-1)
    pool = _read_images(paths, profile)[torch.from_numpy(rows)]
    pool, protocol = fold_ordered_protocol("lfw", pool, issame[order],
                                           _codes(names)[rows], profile, REAL_PAIRS["lfw"])
    return pool, protocol, f"pairs.txt over {images_root.name}/"


def _read_images(paths: list[Path], profile: Profile) -> torch.Tensor:
    """uint8 ``(N, 3, r, r)`` images at the profile's resolution ``r``."""
    from ..data.formats.images import decode_rgb, hwc_to_chw_tensor, resize_rgb

    size = (profile.resolution, profile.resolution)
    return torch.stack([hwc_to_chw_tensor(resize_rgb(decode_rgb(path.read_bytes(), str(path)),
                                                     size)) for path in paths])


def _folder_images(root: Path, profile: Profile) -> tuple[torch.Tensor, np.ndarray]:
    from ..data.formats import ImageFolderDataset

    dataset = ImageFolderDataset(root)
    return (_read_images([path for path, _ in dataset.samples], profile),
            np.asarray(dataset.targets, dtype=np.int64))


def identity_folder_protocols(root: Path, profile: Profile, seed: int,
                              with_lfw: bool) -> dict[str, Any]:
    """The protocols drawn from a folder of test identities, as on SynthFace's test split:
    ``{"pools": {...}, "verification": {key: PairProtocol}, "identification": split or None,
    "metadata": DataFrame, "notes": [...]}``. Identities with two or more images form the
    IJB-like templates and the identification gallery and probes; those with one image are
    the distractors. ``with_lfw`` also draws LFW-like 10-fold pairs from them."""
    from .benchmark import IJB_MAX_NEGATIVES, IJB_TEMPLATES_PER_IDENTITY, pairs_per_fold_of

    images, labels = _folder_images(root, profile)
    counts = np.bincount(labels)
    multi = counts[labels] >= 2
    test_rows, single_rows = np.flatnonzero(multi), np.flatnonzero(~multi)
    meta = pd.DataFrame({"identity": labels[test_rows]})
    pools = {"test": images[torch.from_numpy(test_rows)]}
    verification: dict[str, PairProtocol] = {}
    notes: list[str] = []
    identification: IdentificationSplit | None = None
    if meta["identity"].nunique() < 2:
        notes.append(f"{root} has fewer than two identities with two or more images: no "
                     "IJB-like, identification or LFW-like protocol from it")
        return {"pools": pools, "verification": verification, "identification": None,
                "metadata": meta, "notes": notes}
    verification["ijb"] = ijb_template_pairs(meta, templates_per_identity=IJB_TEMPLATES_PER_IDENTITY,
                                             max_negatives=IJB_MAX_NEGATIVES, seed=seed)
    distractors = None
    if single_rows.size:
        pools["distractors"] = images[torch.from_numpy(single_rows)]
        distractors = pd.DataFrame({"identity": labels[single_rows]})
    identification = identification_split(meta, distractors, seed=seed)
    if with_lfw:
        from .benchmark import REAL_PAIRS

        try:
            verification["lfw"] = lfw_pairs(meta, folds=profile.verification_folds,
                                            pairs_per_fold=pairs_per_fold_of(REAL_PAIRS["lfw"],
                                                                             profile),
                                            seed=seed)
        except ConfigError as error:
            notes.append(f"no LFW-like pairs from {root}: {error}")
    return {"pools": pools, "verification": verification, "identification": identification,
            "metadata": meta, "notes": notes}


def sklearn_lfw_protocol(profile: Profile, data_home: str | None = None
                         ) -> tuple[torch.Tensor, PairProtocol, str]:
    """The official 6,000 LFW pairs (View 2) through scikit-learn's loader, at the profile's
    resolution and scale: (pool, protocol, source). Raises
    :class:`~fkdlib.errors.MissingDataError` offline without a cached copy, saying how to get
    one."""
    from ..data.formats.sklearn_lfw import load_sklearn_lfw_pairs
    from .benchmark import REAL_PAIRS

    loaded = load_sklearn_lfw_pairs(profile.resolution, data_home=data_home)
    order = np.argsort(loaded.fold, kind="stable")
    rows = np.stack([2 * order, 2 * order + 1], axis=1).reshape(-1)
    pool, protocol = fold_ordered_protocol(
        SKLEARN_LFW, loaded.images[torch.from_numpy(rows)], loaded.issame[order],
        _codes(loaded.identities)[rows], profile, REAL_PAIRS["lfw"])
    return pool, protocol, "scikit-learn's LFW pairs (View 2)"


def parse_eval_sets(eval_sets: str | None) -> tuple[str, ...]:
    """The ``eval_sets`` argument (``""`` or comma-separated names of :data:`EVAL_SETS`)."""
    names = tuple(dict.fromkeys(part.strip() for part in str(eval_sets or "").split(",")
                                if part.strip()))
    unknown = [name for name in names if name not in EVAL_SETS]
    if unknown:
        raise ConfigError(f"unknown evaluation set(s) {unknown}; expected a comma-separated "
                          f"list of {', '.join(EVAL_SETS)} (e.g. --eval lfw), or nothing")
    return names
