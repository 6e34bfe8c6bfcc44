"""The benchmark's verification lists at a profile's size: shared by the SynthFace benchmark
(:mod:`fkdlib.evaluation.benchmark`) and the export of SynthFace in real formats
(:mod:`.export`), so both draw exactly the same lists.

Each list has the size of the real benchmark it stands for (:data:`REAL_PAIRS`) times the
profile's ``protocol_scale``, over its ``verification_folds`` identity-disjoint folds.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ...errors import ConfigError
from ...profiles import Profile
from .params import get_difficulty
from .protocols import PairProtocol, agedb_pairs, cfp_fp_pairs, lfw_pairs

# Pairs in the real benchmarks, 10 identity-disjoint folds of half positive, half negative
# pairs each: LFW View 2 (pairs.txt: 10 x (300 + 300), Huang et al. 2007), CFP's
# frontal-profile protocol (Protocol/Split/FP: 10 x (350 + 350), Sengupta et al. 2016) and
# AgeDB-30 (10 x (300 + 300), Moschoglou et al. 2017), CALFW and CPLFW (10 x (300 + 300),
# Zheng et al. 2017, 2018). A profile's ``protocol_scale`` takes a fraction of them.
REAL_PAIRS = {"lfw": 6000, "cfp_fp": 7000, "agedb": 6000, "calfw": 6000, "cplfw": 6000}
# SynthFace draws yaw uniformly in [-max_yaw, max_yaw] and an age drift uniformly in
# [-max_drift, max_drift] years per image. The CFP-FP-like "profile" side takes the top quarter
# of the pose range (|yaw| >= 60 only at hard difficulty, as in CFP) and the "frontal" side the
# bottom quarter (at most 15 degrees, as in CFP), and AgeDB-like positives
# need an age gap of at least 75% of the largest drift: large enough to matter, common enough
# to fill the folds.
PROFILE_FRACTION = 0.75
AGE_GAP_FRACTION = 0.75
# The lists SynthFace draws on its test split (the others exist only as real files).
SYNTHFACE_LISTS = ("lfw", "cfp_fp", "agedb")


def pairs_per_fold_of(real_pairs: int, profile: Profile) -> int:
    """Pairs per fold of a list of ``real_pairs`` pairs at the profile: ``real_pairs`` times
    ``protocol_scale``, over ``verification_folds`` folds, each half positive and half
    negative, rounded down, and at least one of each per fold."""
    scale = profile.protocol_scale
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not scale > 0:
        raise ConfigError(f"profile {profile.name!r}: protocol_scale must be a positive "
                          f"number (fraction of the real benchmarks' sizes), got {scale!r}")
    folds = profile.verification_folds
    if isinstance(folds, bool) or not isinstance(folds, (int, np.integer)) or folds < 1:
        raise ConfigError(f"profile {profile.name!r}: verification_folds must be a positive "
                          f"integer, got {folds!r}")
    half = int(np.floor(scale * real_pairs / (2 * folds) + 1e-9))
    return 2 * max(1, half)


def protocol_pairs_per_fold(name: str, profile: Profile) -> int:
    """Pairs per fold of the ``name`` list (a key of :data:`REAL_PAIRS`) at the profile
    (:func:`pairs_per_fold_of` the real benchmark's size)."""
    if name not in REAL_PAIRS:
        raise ConfigError(f"no real size for protocol {name!r}; known: {sorted(REAL_PAIRS)}")
    return pairs_per_fold_of(REAL_PAIRS[name], profile)


def synthface_data_spec(profile: Profile, split: str, seed: int, **overrides: Any) -> dict:
    """The dataset spec of a SynthFace split sized by the profile."""
    sizes = {"train": (profile.train_identities, profile.train_images_per_identity),
             "test": (profile.test_identities, profile.test_images_per_identity)}
    if split not in sizes:
        raise ConfigError(f"split must be 'train' or 'test', got {split!r}")
    identities, per_identity = sizes[split]
    spec = {"kind": "synthface", "split": split, "num_identities": identities,
            "images_per_identity": per_identity, "resolution": profile.resolution,
            "seed": seed, "difficulty": profile.difficulty}
    spec.update(overrides)
    return spec


def verification_lists(profile: Profile, test_metadata: pd.DataFrame,
                       seed: int) -> dict[str, PairProtocol]:
    """The LFW-, CFP-FP- and AgeDB-like lists (:data:`SYNTHFACE_LISTS`) drawn on SynthFace's
    test split at the profile's size, with the CFP-FP-like yaw limits and the AgeDB-like age
    gap above."""
    folds = profile.verification_folds
    per_fold = {name: protocol_pairs_per_fold(name, profile) for name in SYNTHFACE_LISTS}
    difficulty = get_difficulty(profile.difficulty)
    return {
        "lfw": lfw_pairs(test_metadata, folds=folds, pairs_per_fold=per_fold["lfw"], seed=seed),
        "cfp_fp": cfp_fp_pairs(
            test_metadata, folds=folds, pairs_per_fold=per_fold["cfp_fp"], seed=seed,
            frontal_max_yaw=min(15.0, (1 - PROFILE_FRACTION) * difficulty.max_yaw),
            profile_min_yaw=min(60.0, PROFILE_FRACTION * difficulty.max_yaw)),
        "agedb": agedb_pairs(test_metadata,
                             min_age_gap=AGE_GAP_FRACTION * difficulty.max_age_drift,
                             folds=folds, pairs_per_fold=per_fold["agedb"], seed=seed),
    }
