"""What SynthFace teaches about real faces: train on SynthFace only, verify real faces.

Every verdict of the companion is measured on SynthFace, so its lessons are only as good as
SynthFace's resemblance to real faces. This experiment measures that resemblance the way the
synthetic-data papers do (DigiFace-1M, Bae et al., WACV 2023; SynFace, Qiu et al., ICCV 2021):
a model trained only on synthetic faces verifies the 6,000 real LFW pairs (View 2, 10-fold
accuracy; Huang et al., UMass tech. report 07-49, 2007). The model is notebook 01's Softmax
IResNet-18 at the profile's scale and recipe, one per seed; seed ``k`` draws both the SynthFace
training identities and the training seed, so the spread over seeds covers the draw of the
synthetic data too (seed 0 is notebook 01's own zoo entry; its seeds 1 and 2 keep seed 0's
data, so they are other models).

The renderer's ablations (:data:`~fkdlib.data.synthface.params.VARIANTS`) each switch one cue
off - hair fixed per identity, identity geometry halved, directional shading off - and are
trained and tested alike, so the table says which cues carry identity from SynthFace to real
faces: a cue that matters costs real-face accuracy when it is switched off. Seeds pair the
variants (same seed, same identities and photos but for the switched cue), so each difference
gets a paired t interval over the seeds.

LFW comes through scikit-learn's cache (:mod:`fkdlib.data.formats.sklearn_lfw`); offline, install
a copy with ``fkd convert lfw2sklearn`` (``data/README.md``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from .data.synthface.params import get_variant
from .data.synthface.sizes import synthface_data_spec
from .evaluation.benchmark import FaceBenchmark, VerificationSet, evaluate
from .evaluation.sources import SKLEARN_LFW, sklearn_lfw_protocol
from .profiles import Profile, get_profile
from .zoo.cache import DEFAULT_CACHE_DIR, ModelSpec, get_or_train
from .zoo.recipes import training_spec

BACKBONE = "iresnet18"
HEAD = "softmax"
STANDARD = "standard"


def transfer_spec(profile: Profile, seed: int, variant: str = STANDARD) -> ModelSpec:
    """The Softmax IResNet-18 trained on the profile's SynthFace training split (rendered with
    ``variant``) with the profile's recipe; at seed 0 the standard variant is notebook 01's
    pre-training."""
    data = synthface_data_spec(profile, "train", seed)
    if get_variant(variant).name != STANDARD:
        data["variant"] = get_variant(variant).name
    bench = FaceBenchmark(profile, seed, data, pools={}, verification={})
    return training_spec(bench, BACKBONE, HEAD, name=f"synthface transfer/{variant}")


def real_lfw_benchmark(profile: Profile, seed: int, data_home: str | None = None
                       ) -> FaceBenchmark:
    """A benchmark holding only the real LFW View 2 pairs at the profile's resolution."""
    pool, protocol, source = sklearn_lfw_protocol(profile, data_home)
    return FaceBenchmark(profile, seed, synthface_data_spec(profile, "train", seed),
                         pools={SKLEARN_LFW: pool},
                         verification={SKLEARN_LFW: VerificationSet(SKLEARN_LFW, SKLEARN_LFW,
                                                                    protocol, source)})


def measure_transfer(profile: str | Profile = "default", variants: Sequence[str] = (STANDARD,),
                     seeds: int = 3, cache_dir: str | Path = DEFAULT_CACHE_DIR,
                     data_home: str | None = None) -> pd.DataFrame:
    """Real LFW accuracy of SynthFace-trained models: one row per variant and seed, with
    ``accuracy`` and ``fold_std`` (the 10 folds' standard deviation) in percent. Models come
    from (and go to) the zoo at ``cache_dir``."""
    profile = get_profile(profile)
    names = [get_variant(variant).name for variant in variants]
    rows = []
    for seed in range(seeds):
        bench = real_lfw_benchmark(profile, seed, data_home)
        for name in names:
            model = get_or_train(transfer_spec(profile, seed, name), cache_dir=cache_dir)
            result = evaluate(model.backbone, bench, name).verification[SKLEARN_LFW]
            rows.append({"variant": name, "seed": seed,
                         "accuracy": 100 * result.accuracy_mean,
                         "fold_std": 100 * result.accuracy_std})
    return pd.DataFrame(rows)


def transfer_summary(runs: pd.DataFrame, confidence: float = 0.95) -> pd.DataFrame:
    """Per variant: mean and standard deviation over seeds, and the difference to the
    standard variant with a paired t interval over the seeds (NaN with fewer than two)."""
    wide = runs.pivot(index="seed", columns="variant", values="accuracy")
    rows = []
    for name in dict.fromkeys(runs["variant"]):
        values = wide[name].dropna()
        row = {"variant": name, "seeds": len(values), "accuracy": values.mean(),
               "seed_sd": values.std(ddof=1) if len(values) > 1 else np.nan}
        if name != STANDARD and STANDARD in wide:
            diff = (wide[name] - wide[STANDARD]).dropna()
            row["vs standard"] = diff.mean()
            if len(diff) > 1:
                half = stats.t.ppf(0.5 + confidence / 2, len(diff) - 1) * diff.std(ddof=1) \
                    / np.sqrt(len(diff))
                row["ci low"], row["ci high"] = diff.mean() - half, diff.mean() + half
        rows.append(row)
    return pd.DataFrame(rows).set_index("variant")
