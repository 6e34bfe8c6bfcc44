"""Notebook 05 — FAN-Face (thesis ch. 3; Yang, Bulat and Tzimiropoulos, "FAN-Face: a Simple
Orthogonal Improvement to Deep Face Recognition", AAAI 2020).

A face-alignment network (FAN, :mod:`fkdlib.models.fan`) is trained on SynthFace's landmarks,
frozen, and made to feed a recognition network (FRN) on unaligned crops: its heatmaps as extra
input channels (H2, H2+) and the maps of its last hourglass joined to the FRN's at each stage
end through an integration layer (:mod:`fkdlib.models.fan_face`). The notebook reproduces the
thesis's ablation (Table 3.1) on the IJB-like template protocol, the gain per pose bucket on
the CFP-FP-like list, and Fig. 3.1's frontal/profile t-SNE.

Our choices, each applied to every variant alike:

- **FRN**: IResNet-18 at the profile's width and resolution, as notebook 01 (the thesis:
  ResNet-34 at 112 px).
- **Margin**: CosFace (s = 64, m = 0.35), the thesis's ArcFace's close relative: at this scale
  ArcFace (s = 64, m = 0.5) trained from scratch collapses (notebook 01 measures it and needs a
  Softmax pre-training), while CosFace converged in every run we made (the shared teacher of
  notebooks 02-04 uses it for that reason). The thesis's AS5 rows (Softmax) stay Softmax.
- **FAN**: two stacks of the published depth at twice the FRN's width, looking at the faces
  up-sampled to twice the FRN's resolution (:func:`fan_input_size`), trained once on
  SynthFace's unaligned training faces and shared by every FAN-Face run of every seed; AdamW
  (lr 1e-3, weight decay 1e-4, cosine decay), the optimiser of current heatmap regressors
  (HRNet's pose recipe), and Gaussians of σ = 1 heatmap pixel, the FAN's own training
  target. Its outputs for every training image are computed once and banked
  (:class:`~fkdlib.training.fan_guided.FanGuidedTask`).
- **Premise**: the integration claims need a FAN that localises landmarks: its mean NME on
  the test faces must stay under :data:`NME_GATE` (10% of the inter-ocular distance, the usual
  failure threshold of face alignment); otherwise every model that uses the FAN is marked
  unhealthy and its claims are not assessed, with the FAN's NME as the reason.

Size and cost (thesis Table 3.2): the integration layers are the claim's whole cost, so the
table prints, for IResNet-34 and -50, the recognition network's parameters and multiply-adds
with each integration variant, the FAN left out as the thesis's numbers evidently do, beside
the thesis's values and the increments over each baseline. Our IResNets are insightface's,
whose counts differ from the thesis's ResNets (34.1M against 31.8M for the 34-layer network),
so the increments are what compare.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from ..data import build_dataset
from ..data.synthface.sizes import synthface_data_spec
from ..data.transforms import to_float_image
from ..errors import ConfigError
from ..evaluation import project
from ..evaluation.benchmark import Evaluation, FaceBenchmark, evaluate_seeds
from ..evaluation.complexity import count_flops, count_parameters
from ..evaluation.landmarks import nme_by_pose, normalised_mean_error, predict_landmarks
from ..models import create_model
from ..models.fan import STEM_STRIDE
from ..profiles import Profile
from ..report import figures as figs
from ..evaluation.comparisons import as_runs, count_identities, pair_identities
from ..evaluation.similarity import best_threshold_accuracy
from ..evaluation.uncertainty import hierarchical_bootstrap
from ..report.claims import Claim, Evidence, evaluate_claims
from ..report.evidence import face_tests
from ..report.references import reference_table
from ..training.landmarks import FIRST_INTERNAL_POINT, dataset_landmarks
from ..zoo import (
    DEFAULT_CACHE_DIR, ModelSpec, TrainedModel, get_or_train, train_seeds, training_spec)

Runs = Sequence[Evaluation]

FAN_FACE_VARIANTS: dict[str, dict[str, str]] = {
    "H2, 1-1, BL": {"heatmaps": "h2", "integration": "basic", "connectivity": "1-1"},
    "H2, 1-M, BL": {"heatmaps": "h2", "integration": "basic", "connectivity": "1-M"},
    "H2, 1-1, SL": {"heatmaps": "h2", "integration": "simple", "connectivity": "1-1"},
    "H2, 1-1, AL": {"heatmaps": "h2", "integration": "advanced", "connectivity": "1-1"},
}
COMPLEXITY_BASELINE = "ArcFace (baseline)"
THESIS_NETWORKS = {34: "ResNet34", 50: "ResNet50"}


def _frn_cost(name: str, input_size: int, **options) -> tuple[int, int]:
    """(parameters, multiply-adds) of a recognition network, its FAN (if any) left out."""
    with torch.device("meta"):
        model = create_model(name, input_size=input_size, **options)
    report = count_flops(model, input_size)
    params, macs = report.params, report.macs
    fan = getattr(model, "fan", None)
    if fan is not None:
        side = -(-input_size // fan.input_multiple) * fan.input_multiple
        params -= count_parameters(fan)
        macs -= count_flops(fan, side).macs
    return params, macs


def complexity_table(input_size: int = 112) -> pd.DataFrame:
    """Thesis Table 3.2 beside ours: one row per network and variant with our parameters (M)
    and multiply-adds (G) at ``input_size`` and their increments over the baseline, and the
    thesis's parameters (M), flops (G) and increments."""
    rows = []
    for depth, network in THESIS_NETWORKS.items():
        published = reference_table("fanface_table_3_2", setting=network).set_index("method")
        base_params, base_macs = _frn_cost(f"iresnet{depth}", input_size)
        variants = {COMPLEXITY_BASELINE: (base_params, base_macs)}
        variants.update({name: _frn_cost("fan_face", input_size, depth=depth, **options)
                         for name, options in FAN_FACE_VARIANTS.items()})
        for name, (params, macs) in variants.items():
            rows.append({
                "network": network, "variant": name,
                "params_M": params / 1e6, "params_added_M": (params - base_params) / 1e6,
                "GMACs": macs / 1e9, "GMACs_added": (macs - base_macs) / 1e9,
                "thesis_params_M": published.loc[name, "Parameters"],
                "thesis_params_added_M": (published.loc[name, "Parameters"]
                                          - published.loc[COMPLEXITY_BASELINE, "Parameters"]),
                "thesis_GFLOPs": published.loc[name, "FLOPs"],
                "thesis_GFLOPs_added": (published.loc[name, "FLOPs"]
                                        - published.loc[COMPLEXITY_BASELINE, "FLOPs"]),
            })
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- the models

FRN_DEPTH = 18
MARGIN = ("cosface", {"s": 64.0, "m": 0.35})
SOFTMAX = ("softmax", {})
FAN_STACKS = 2
FAN_WIDTH_FACTOR = 2.0
FAN_DEPTH = 4  # the published hourglass
# AdamW at 1e-3 with cosine decay for the FAN (module docstring)
FAN_TRAIN = {"optimizer": "adamw", "lr": 1e-3, "weight_decay": 1e-4, "schedule": "cosine"}
FAN_SIGMA = 1.0
NME_GATE = 10.0  # percent of the inter-ocular distance: face alignment's failure threshold
NUM_LANDMARKS = 51

BASELINE, H2, H2_PLUS = "Baseline", "H2", "H2+"
BL_L2H, FAN_FACE = "H2, 1-1, BL, l2h", "H2, 1-1, BL, h2l"
AL, SL, ONE_TO_MANY = "H2, 1-1, AL, h2l", "H2, 1-1, SL, h2l", "H2, 1-M, BL, h2l"
SOFTMAX_BASELINE, SOFTMAX_FAN_FACE = "Softmax", "H2, 1-1, BL, h2l, Softmax"
MULTITASK = "Multi-task"

_H2 = {"heatmaps": "h2", "integration": None}
_BL = {"heatmaps": "h2", "integration": "basic", "connectivity": "1-1", "fan_half": "h2l"}
# name -> (fan_face options, or None for the plain IResNet; margin head)
VARIANTS: dict[str, tuple[dict[str, Any] | None, tuple[str, dict]]] = {
    BASELINE: (None, MARGIN),
    H2: (_H2, MARGIN),
    H2_PLUS: ({**_H2, "heatmaps": "h2+"}, MARGIN),
    BL_L2H: ({**_BL, "fan_half": "l2h"}, MARGIN),
    FAN_FACE: (_BL, MARGIN),
    AL: ({**_BL, "integration": "advanced"}, MARGIN),
    SL: ({**_BL, "integration": "simple"}, MARGIN),
    ONE_TO_MANY: ({**_BL, "connectivity": "1-M"}, MARGIN),
    SOFTMAX_BASELINE: (None, SOFTMAX),
    SOFTMAX_FAN_FACE: (_BL, SOFTMAX),
    MULTITASK: ({"heatmaps": "none", "integration": None, "multitask": True}, MARGIN),
}
# One colour per variant in every figure (FAN-Face itself in the companion's colour for "ours")
COLORS = {BASELINE: "#7F7F7F", H2: "#E69F00", H2_PLUS: "#F0E442", BL_L2H: "#56B4E9",
          FAN_FACE: "#D55E00", AL: "#009E73", SL: "#0072B2", ONE_TO_MANY: "#CC79A7",
          SOFTMAX_BASELINE: "#000000", SOFTMAX_FAN_FACE: "#8C564B", MULTITASK: "#7B3294"}
# Rows of thesis Table 3.1 that no claim compares: trained on the first seed only.
TABLE_ONLY = (H2_PLUS, SOFTMAX_BASELINE, SOFTMAX_FAN_FACE)
THESIS_ROWS = {
    BASELINE: "Baseline ArcFace (ResNet34)", H2: "AS1 H2", H2_PLUS: "AS1 H2+",
    BL_L2H: "AS2 H2,1-1,BL,l2h-2", FAN_FACE: "AS2 H2,1-1,BL,h2l-2",
    AL: "AS3 H2,1-1,AL,h2l-2", SL: "AS3 H2,1-1,SL,h2l-2", ONE_TO_MANY: "AS4 H2,1-M,BL,h2l-2",
    SOFTMAX_BASELINE: "AS5 ResNet34-Softmax", SOFTMAX_FAN_FACE: "AS5 H2,1-1,BL,h2l-2-Softmax",
    MULTITASK: "AS7 Multi-task",
}


def fan_input_size(resolution: int) -> int:
    """The side the FAN sees faces of ``resolution`` pixels at: twice it, rounded up to the
    hourglass's input multiple of 64 (112 px faces: the published FAN's 256). The FAN's
    heatmaps are a quarter of its input, so at the recognition network's own 32 px one heatmap
    pixel would span a third of the distance between the eyes; the thesis too runs the FAN at
    its own resolution and re-samples what it gives to the FRN's."""
    if isinstance(resolution, bool) or not isinstance(resolution, int) or resolution < 1:
        raise ConfigError(f"resolution must be a positive integer, got {resolution!r}")
    multiple = STEM_STRIDE * 2 ** FAN_DEPTH
    return -(-2 * resolution // multiple) * multiple


def fan_options(profile: Profile) -> dict[str, Any]:
    """The FAN's size at a profile: :data:`FAN_STACKS` stacks, :data:`FAN_WIDTH_FACTOR`
    times the FRN's width (at most 1), the published hourglass depth, input side
    :func:`fan_input_size`, 51 internal landmarks."""
    return {"stacks": FAN_STACKS, "width": min(1.0, FAN_WIDTH_FACTOR * profile.backbone_width),
            "depth": FAN_DEPTH, "input_size": fan_input_size(profile.resolution),
            "num_landmarks": NUM_LANDMARKS}


def fan_spec(bench: FaceBenchmark) -> ModelSpec:
    """The FAN, trained on SynthFace's unaligned training faces and landmarks at the profile's
    size and seed for the profile's epochs with :data:`FAN_TRAIN` (shared by every FAN-Face
    run of every training seed)."""
    spec = training_spec(bench, "fan", "", name="05_fan_face/FAN", train_overrides=FAN_TRAIN)
    # the FAN's own size (not the FRN's width and embedding size of the profile), and always
    # SynthFace's unaligned training faces: real data has no landmarks, and a FAN trained on
    # SynthFace is used as is there
    return spec.replace(backbone_kwargs=fan_options(bench.profile), method="landmarks",
                        method_kwargs={"sigma": FAN_SIGMA},
                        data=synthface_data_spec(bench.profile, "train", bench.seed,
                                                 aligned=False))


def variant_spec(bench: FaceBenchmark, name: str, fan: ModelSpec | None = None) -> ModelSpec:
    """The :class:`ModelSpec` of one row of :data:`VARIANTS` on the benchmark's (unaligned)
    training data with the profile's recipe; a FAN-using row takes ``fan`` (by default
    :func:`fan_spec` of the SynthFace benchmark of the same profile and seed)."""
    if name not in VARIANTS:
        raise ConfigError(f"unknown FAN-Face variant {name!r}; variants: {', '.join(VARIANTS)}")
    options, (head, head_kwargs) = VARIANTS[name]
    label = f"05_fan_face/{name}"
    if options is None:
        return training_spec(bench, f"iresnet{FRN_DEPTH}", head, head_kwargs=head_kwargs,
                             name=label)
    fan_size = fan_options(bench.profile)
    backbone_kwargs = {"depth": FRN_DEPTH, **options, "fan_stacks": fan_size["stacks"],
                       "fan_width": fan_size["width"], "fan_depth": fan_size["depth"],
                       "fan_input_size": fan_size["input_size"], "num_landmarks": NUM_LANDMARKS}
    spec = training_spec(bench, "fan_face", head, head_kwargs=head_kwargs, name=label,
                         backbone_kwargs=backbone_kwargs)
    # the multi-task network learns the data's landmarks, or where it has none (real faces)
    # those the FAN finds
    method = "landmark_multitask" if options.get("multitask") else "fan_guided"
    return spec.replace(method=method, method_kwargs={"fan": (fan or fan_spec(bench)).to_dict()})


def specs(bench: FaceBenchmark, fan: ModelSpec | None = None) -> dict[str, ModelSpec]:
    """Every row of :data:`VARIANTS` (see :func:`variant_spec`)."""
    fan = fan or fan_spec(bench)
    return {name: variant_spec(bench, name, fan) for name in VARIANTS}


def train_fan(bench: FaceBenchmark, device: str | torch.device = "cpu",
              cache_dir=DEFAULT_CACHE_DIR, log: Callable[[str], None] = print
              ) -> TrainedModel:
    """Train (or load from the model zoo) the FAN of :func:`fan_spec`."""
    return get_or_train(fan_spec(bench), cache_dir, device, log=log)


def train(bench: FaceBenchmark, device: str | torch.device = "cpu",
          cache_dir=DEFAULT_CACHE_DIR, names: Sequence[str] | None = None,
          log: Callable[[str], None] = print,
          seeds: int | None = None) -> dict[str, list[TrainedModel]]:
    """Train (or load) the variants of :func:`specs` (or those ``names``): each once per
    training seed (the profile's ``seeds`` unless given), the :data:`TABLE_ONLY` rows once
    (first seed): ``{name: [seed 0, seed 1, ...]}``. One FAN serves every seed."""
    chosen = list(names or VARIANTS)
    all_specs = specs(bench)
    unknown = [name for name in chosen if name not in all_specs]
    if unknown:
        raise ConfigError(f"unknown FAN-Face variants {unknown}; variants: {', '.join(VARIANTS)}")
    seeds = seeds or bench.profile.seeds
    claimed = [name for name in chosen if name not in TABLE_ONLY]
    out = {}
    if claimed:
        out.update(train_seeds(all_specs, seeds, cache_dir=cache_dir, device=device, log=log,
                               names=claimed))
    table_only = [name for name in chosen if name in TABLE_ONLY]
    if table_only:
        out.update(train_seeds(all_specs, 1, cache_dir=cache_dir, device=device, log=log,
                               names=table_only))
    return {name: out[name] for name in chosen}


# every protocol of the benchmark for every run of every model: evaluate(models, bench, device)
evaluate = evaluate_seeds


# ----------------------------------------------------------------------------- FAN quality


def _test_landmarks(bench: FaceBenchmark) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    """uint8 images, 51 internal landmarks (pixels) and yaws (degrees) of SynthFace's unaligned
    test faces at the profile's size (the benchmark's own test pool on SynthFace; on real
    data, which has no landmarks, the SynthFace faces the FAN is measured on)."""
    spec = synthface_data_spec(bench.profile, "test", bench.seed, aligned=False)
    pool = build_dataset(spec)
    images = torch.from_numpy(np.ascontiguousarray(pool.images_u8()))
    points = torch.as_tensor(pool.landmarks68()[:, FIRST_INTERNAL_POINT:], dtype=torch.float32)
    return images, points, pool.metadata["yaw"].to_numpy(dtype=float)


def fan_quality(fan: torch.nn.Module, bench: FaceBenchmark
                ) -> tuple[pd.DataFrame, torch.Tensor]:
    """The FAN's NME (% of the inter-ocular distance) per absolute-yaw bin on SynthFace's test
    faces (:func:`_test_landmarks`), beside the NME of the FAN's mean training shape predicted
    for every face (what a network that localises nothing achieves), and the landmarks it
    found (pixels)."""
    images, target, yaw = _test_landmarks(bench)
    found = predict_landmarks(fan, to_float_image(images))
    mean_shape = dataset_landmarks(build_dataset(fan_spec(bench).data), NUM_LANDMARKS).mean(0)
    table = nme_by_pose(found, target, yaw)
    guess = nme_by_pose(mean_shape.expand_as(target), target, yaw)
    table["mean-shape nme_percent"] = guess["nme_percent"].to_numpy()
    return table, found


def fan_gate(quality: pd.DataFrame, gate: float = NME_GATE) -> str:
    """The empty string when the FAN's mean NME over all test faces is under ``gate`` percent,
    else the reason every claim on a FAN-using model is not assessed."""
    nme = float(quality.set_index("pose").loc["all", "nme_percent"])
    if nme < gate:
        return ""
    return (f"the FAN does not localise landmarks at this resolution: mean NME {nme:.1f}% of "
            f"the inter-ocular distance, not under the {gate:g}% failure threshold")


def fan_unhealthy(reason: str, synthetic: bool = True,
                  names: Sequence[str] = tuple(VARIANTS)) -> dict[str, str]:
    """``{model: reason}`` for every model of ``names`` that uses the FAN, when ``reason``
    (:func:`fan_gate`) is not empty: the ``unhealthy`` entries of :func:`check_claims`. The
    multi-task network uses it only where the data has no landmarks (not ``synthetic``)."""
    if not reason:
        return {}
    return {name: reason for name in names if VARIANTS[name][0] is not None
            and (not synthetic or not VARIANTS[name][0].get("multitask"))}


def fan_figure(bench: FaceBenchmark, found: torch.Tensor, count: int = 12) -> Figure:
    """Test faces at increasing |yaw| (``count`` of them, evenly spread over the sorted yaws)
    with the landmarks the FAN found over the true ones, each titled with its yaw and NME."""
    images, target, yaw = _test_landmarks(bench)
    order = np.argsort(np.abs(yaw))
    rows = order[np.linspace(0, len(order) - 1, min(count, len(order))).round().astype(int)]
    nme = normalised_mean_error(found[rows], target[rows]).numpy() * 100
    titles = [f"yaw {round(yaw[r]):+d}°, NME {e:.0f}%" for r, e in zip(rows, nme)]
    return figs.landmark_figure(images[rows].numpy(), found[rows].numpy(),
                                target[rows].numpy(), titles=titles)


# ----------------------------------------------------------------------------- tables

TABLE_FARS = (1e-5, 1e-4, 1e-3, 1e-2)


def ablation_table(evaluations: Mapping[str, Runs], protocol: str = "ijb",
                   fars: Sequence[float] = TABLE_FARS) -> pd.DataFrame:
    """Thesis Table 3.1 beside ours: one row per variant with our TAR at each FAR on
    ``protocol`` (mean over the variant's runs; NaN where too few negatives lie above the
    threshold), the number of runs, and the thesis's TAR at the same FARs (IJB-B)."""
    published = reference_table("fanface_table_3_1").set_index("method")
    rows = []
    for name, runs in evaluations.items():
        runs = as_runs(runs)
        row: dict[str, Any] = {"variant": name, "runs": len(runs)}
        for far in fars:
            values = [ev.tar[protocol].get(far, math.nan) for ev in runs]
            row[f"TAR@{far:g}"] = float(np.mean(values))
        thesis = THESIS_ROWS.get(name)
        for far in fars:
            row[f"thesis TAR@{far:g}"] = (published.loc[thesis, _thesis_column(far)]
                                          if thesis in published.index else math.nan)
        rows.append(row)
    return pd.DataFrame(rows)


LARGE_POSE = 45.0  # degrees of |yaw|: half of a profile, the CFP-FP-like list's divide
FRONTAL_POSE = 15.0  # degrees of |yaw|: the CFP-FP-like list's frontal faces


def pair_yaw(bench: FaceBenchmark, protocol: str) -> np.ndarray:
    """The larger absolute yaw (degrees) of the two images of each pair of an image-pair
    list of the SynthFace benchmark."""
    vset = bench.verification[protocol]
    if bench.test_metadata is None or vset.protocol.templates is not None \
            or vset.pool != "test":
        raise ConfigError(f"pose per pair needs an image-pair list of SynthFace's test faces; "
                          f"{protocol!r} is not one")
    yaw = np.abs(bench.test_metadata["yaw"].to_numpy(dtype=float))
    rows = vset.protocol.rows.reshape(-1, 2)
    return np.maximum(yaw[rows[:, 0]], yaw[rows[:, 1]])


def pose_codes(issame: np.ndarray, yaw: np.ndarray, large: float = LARGE_POSE) -> np.ndarray:
    """One integer per pair: bit 0 same identity, bit 1 large pose (max |yaw| >= ``large``);
    the labels :func:`pose_gain_metric` reads."""
    return np.asarray(issame, dtype=np.int64) + 2 * (np.asarray(yaw) >= large)


def pose_gain_metric(scores: np.ndarray, codes: np.ndarray,
                     weights: np.ndarray | None = None) -> np.ndarray | float:
    """Best-threshold accuracy on the large-pose pairs minus that on the others (each with its
    own threshold), from the labels of :func:`pose_codes`; ``weights`` as the bootstrap gives
    them. The difference of this metric between two models is how much more one gains over
    the other at large pose than at small."""
    codes = np.asarray(codes)
    issame = (codes & 1).astype(bool)
    large = (codes >= 2).astype(float)
    base = np.ones((1, codes.size)) if weights is None else np.asarray(weights, dtype=float)
    gain = (best_threshold_accuracy(scores, issame, base * large)
            - best_threshold_accuracy(scores, issame, base * (1.0 - large)))
    return float(gain[0]) if weights is None else gain


POSE_EDGES = (0.0, 15.0, 30.0, LARGE_POSE, 60.0, math.inf)


def pose_table(evaluations: Mapping[str, Runs], bench: FaceBenchmark, protocol: str = "lfw",
               edges: Sequence[float] = POSE_EDGES) -> pd.DataFrame:
    """Best-threshold accuracy (%) of each model per bucket of the pairs' larger |yaw| on an
    image-pair list (mean over the model's runs; NaN where a bucket lacks positives or
    negatives), with the number of pairs per bucket; empty buckets are left out (the
    CFP-FP-like list has only frontal-profile pairs, all in the large-pose buckets)."""
    yaw = pair_yaw(bench, protocol)
    rows = []
    for low, high in zip(edges[:-1], edges[1:]):
        chosen = (yaw >= low) & (yaw < high)
        if not chosen.any():
            continue
        label = f"{low:g}-{high:g}°" if math.isfinite(high) else f"≥{low:g}°"
        row: dict[str, Any] = {"max |yaw|": label, "pairs": int(chosen.sum())}
        for name, runs in evaluations.items():
            accuracies = [best_threshold_accuracy(ev.scores[protocol][chosen],
                                                  ev.issame[protocol][chosen])
                          for ev in as_runs(runs)
                          if ev.issame[protocol][chosen].any()
                          and not ev.issame[protocol][chosen].all()]
            row[name] = 100 * float(np.mean(accuracies)) if accuracies else math.nan
        rows.append(row)
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- claims

SOURCE = "FAN-Face (thesis ch. 3; Yang, Bulat and Tzimiropoulos, AAAI 2020)"
CLAIM_FAR = 1e-3
NOT_CLEARLY_BETTER = 0.01  # TAR: the thesis's largest ablation gap at FAR 1e-3 (BL − SL, 0.009)


def _thesis_column(far: float) -> str:
    """The stored table's column of a FAR: ``"TAR@FAR=1e-5"``."""
    return "TAR@FAR=" + f"{far:.0e}".replace("e-0", "e-")


def _thesis_tar(name: str, far: float = CLAIM_FAR) -> float:
    table = reference_table("fanface_table_3_1").set_index("method")
    return float(table.loc[THESIS_ROWS[name], _thesis_column(far)])


def _thesis_gap(a: str, b: str, far: float = CLAIM_FAR) -> float:
    return round(_thesis_tar(a, far) - _thesis_tar(b, far), 6)


def claims(protocol: str = "ijb", pose_protocol: str | None = "lfw") -> list[Claim]:
    """The thesis's ablation claims on TAR at FAR 1e-3 of ``protocol`` (the lowest FAR our
    IJB-like list reports; the thesis's gaps at that FAR as paper effects), and, where an
    image-pair list with poses is given, the large-pose claims."""
    tar = f"pairs:tar@{CLAIM_FAR:g}"
    metric = f"TAR@{CLAIM_FAR:g}"
    table = f"{SOURCE}, Table 3.1 (IJB-B)"
    out = [
        Claim("H2>Baseline", "Stacking the FAN's heatmaps with the image (H2) beats the "
              "baseline", table, f"{metric} H2 − baseline", tar, (H2, BASELINE), protocol,
              paper_effect=_thesis_gap(H2, BASELINE),
              paper_says="AS1: H2 0.864 vs 0.859 at FAR 1e-4 (0.928 vs 0.929 at 1e-3)"),
        Claim("FAN-Face>Baseline", "FAN-Face (H2, 1-1, BL, h2l) beats the baseline", table,
              f"{metric} FAN-Face − baseline", tar, (FAN_FACE, BASELINE), protocol,
              paper_effect=_thesis_gap(FAN_FACE, BASELINE),
              paper_says="AS2: 0.876 vs 0.859 at FAR 1e-4 (0.933 vs 0.929 at 1e-3)"),
        Claim("h2l>l2h", "Features from the hourglass's high-to-low half integrate better "
              "than from its low-to-high half", table, f"{metric} h2l − l2h", tar,
              (FAN_FACE, BL_L2H), protocol, paper_effect=_thesis_gap(FAN_FACE, BL_L2H),
              paper_says="AS2: h2l 0.876 vs l2h 0.871 at FAR 1e-4 (0.933 both at 1e-3)"),
        Claim("BL>SL", "The Basic Layer beats the Simple Layer", table, f"{metric} BL − SL",
              tar, (FAN_FACE, SL), protocol, paper_effect=_thesis_gap(FAN_FACE, SL),
              paper_says="AS3: BL 0.876 vs SL 0.857 at FAR 1e-4 (0.933 vs 0.924 at 1e-3)"),
        Claim("AL-not-better", "The Advanced Layer is not clearly better than the Basic Layer: "
              f"its TAR gain under {NOT_CLEARLY_BETTER:g}", table,
              f"{metric} AL − BL − {NOT_CLEARLY_BETTER:g}", tar, (AL, FAN_FACE), protocol,
              direction="less", bound=NOT_CLEARLY_BETTER, paper_effect=_thesis_gap(AL, FAN_FACE),
              paper_says="AS3: AL 0.873 vs BL 0.876 at FAR 1e-4 (0.933 both at 1e-3): the "
              "bottleneck adds parameters and cost for no gain"),
        Claim("1-M-not-better", "Integrating into every block (1-M) is not clearly better than "
              f"once per stage (1-1): its TAR gain under {NOT_CLEARLY_BETTER:g}", table,
              f"{metric} 1-M − 1-1 − {NOT_CLEARLY_BETTER:g}", tar, (ONE_TO_MANY, FAN_FACE),
              protocol, direction="less", bound=NOT_CLEARLY_BETTER,
              paper_effect=_thesis_gap(ONE_TO_MANY, FAN_FACE),
              paper_says="AS4: 1-M 0.874 vs 1-1 0.876 at FAR 1e-4 (0.934 vs 0.933 at 1e-3)"),
        Claim("Multi-task<Baseline", "The multi-task baseline (landmarks as a second output) "
              "is worse than the baseline", table, f"{metric} multi-task − baseline", tar,
              (MULTITASK, BASELINE), protocol, direction="less",
              paper_effect=_thesis_gap(MULTITASK, BASELINE),
              paper_says="AS7: 0.731 vs 0.859 at FAR 1e-4 (0.843 vs 0.929 at 1e-3), the worst "
              "row of the table"),
    ]
    if pose_protocol is not None:
        out += [
            Claim("gain-at-large-pose", "FAN-Face's gain over the baseline is larger on "
                  f"large-pose pairs (larger |yaw| >= {LARGE_POSE:g}°) than on the others",
                  f"{SOURCE}, Sec. 3.5 and Fig. 3.1",
                  "(accuracy large − small pose) FAN-Face − baseline", "pose_gain",
                  (FAN_FACE, BASELINE), pose_protocol,
                  paper_says="landmark features help most where pose varies most (CFP-FP "
                  "and IJB profile pairs); no per-pose numbers published"),
        ]
    out.append(Claim("frontal-profile-closer", "Frontal and profile faces of one identity are "
                     "better separated from other identities by FAN-Face (d′ on frontal-"
                     "profile pairs)", f"{SOURCE}, Fig. 3.1",
                     "d′ on CFP-FP-like pairs, FAN-Face − baseline", "pairs:d_prime",
                     (FAN_FACE, BASELINE), "cfp_fp",
                     paper_says="Fig. 3.1: t-SNE of four identities, frontal and profile "
                     "images of one identity apart under ArcFace, together under FAN-Face"))
    return out


def pose_tests(evaluations: Mapping[str, Runs], bench: FaceBenchmark, n_boot: int,
               seed: int = 0) -> dict[str, Callable[[Claim], Evidence]]:
    """The ``"pose_gain"`` claim test: :func:`pose_gain_metric` of ``a`` minus ``b`` on the
    claim's image-pair list, seeds and test identities resampled."""
    def pose_gain(claim: Claim) -> Evidence:
        a, b = claim.compares
        runs_a, runs_b = as_runs(evaluations[a]), as_runs(evaluations[b])
        codes = pose_codes(runs_a[0].issame[claim.protocol], pair_yaw(bench, claim.protocol))
        identities = pair_identities(runs_a[0], claim.protocol)
        result = hierarchical_bootstrap(
            pose_gain_metric, [r.scores[claim.protocol] for r in runs_a],
            [r.scores[claim.protocol] for r in runs_b], codes, identities, n_boot=n_boot,
            seed=seed)
        return Evidence.from_bootstrap(
            result, f"{a} − {b}, accuracy gain large − small pose on {claim.protocol} pairs",
            n=int(codes.size), seeds=min(len(runs_a), len(runs_b)),
            identities=count_identities(identities))
    return {"pose_gain": pose_gain}


def check_claims(evaluations: Mapping[str, Runs | Evaluation], bench: FaceBenchmark,
                 n_boot: int, assess: bool, seed: int = 0,
                 unhealthy: Mapping[str, str] | None = None) -> pd.DataFrame:
    """Every claim of :func:`claims` on the benchmark's pair protocol (the IJB-like list on
    SynthFace), the pose claims where the data has poses (SynthFace), seeds and test
    identities resampled; claims on ``unhealthy`` models (including every FAN-using model when
    the FAN fails :func:`fan_gate`) are not assessed."""
    needed = [name for name in VARIANTS if name not in TABLE_ONLY]
    missing = [name for name in needed if name not in evaluations]
    if missing:
        raise ConfigError(f"the claims need evaluations of {', '.join(needed)}; missing "
                          f"{', '.join(missing)}")
    pose = "lfw" if bench.synthetic and "lfw" in bench.verification else None
    declared = [claim for claim in claims(bench.pair_protocol, pose)
                if claim.protocol in bench.verification]
    tests = face_tests(evaluations, n_boot, seed)
    if pose is not None:
        tests.update(pose_tests(evaluations, bench, n_boot, seed))
    return evaluate_claims(declared, tests, assess, unhealthy)


# ----------------------------------------------------------------------------- figures


def tsne_pose_figure(evaluations: Mapping[str, Evaluation], metadata: pd.DataFrame,
                     names: Sequence[str] = (BASELINE, FAN_FACE), identities: int = 4,
                     seed: int = 0, projection: str = "tsne") -> Figure:
    """Thesis Fig. 3.1's analogue: ``identities`` test identities with both frontal (|yaw| <
    15°) and profile (|yaw| >= 45°) images, projected from each model's embeddings; colour the
    identity, marker the pose (o frontal, ^ profile, · other), one panel per model, titled with
    the mean frontal-profile cosine distance of the same identity."""
    yaw = np.abs(metadata["yaw"].to_numpy(dtype=float))
    ids = metadata["identity"].to_numpy()
    frontal, profile = yaw < FRONTAL_POSE, yaw >= LARGE_POSE
    both = [i for i in np.unique(ids) if frontal[ids == i].any() and profile[ids == i].any()]
    if len(both) < identities:
        raise ConfigError(f"only {len(both)} test identities have both frontal and profile "
                          f"images; {identities} asked for")
    chosen = np.random.default_rng(seed).choice(both, size=identities, replace=False)
    rows = np.flatnonzero(np.isin(ids, chosen))
    fig, axes = plt.subplots(1, len(names), figsize=(4.6 * len(names), 4.4),
                             layout="constrained", squeeze=False)
    palette = plt.get_cmap("tab10")
    # (which images, marker, marker area)
    poses = ((frontal, "o", 46), (profile, "^", 46), (~frontal & ~profile, ".", 30))
    for ax, name in zip(axes[0], names):
        emb = evaluations[name].embeddings["test"]
        unit = emb / np.linalg.norm(emb, axis=1, keepdims=True)
        points = project(emb[rows], method=projection, random_state=seed)
        distances = []
        for k, identity in enumerate(chosen):
            own = rows[ids[rows] == identity]
            f, pr = own[frontal[own]], own[profile[own]]
            distances.append(float(np.mean(1 - unit[f] @ unit[pr].T)))
            for mask, marker, size in poses:
                pick = (ids[rows] == identity) & mask[rows]
                ax.scatter(points[pick, 0], points[pick, 1], marker=marker, s=size,
                           color=palette(k), edgecolors="white", linewidths=0.5)
        ax.set_title(f"{name}\nfrontal-profile cosine distance {np.mean(distances):.3f}",
                     fontsize=10)
        ax.set_xticks([]), ax.set_yticks([])
    handles = [Line2D([], [], marker=marker, linestyle="", color="0.35", label=label,
                      markersize=np.sqrt(size)) for label, (_, marker, size) in
               zip((f"frontal (|yaw| < {FRONTAL_POSE:g}°)", f"profile (|yaw| ≥ {LARGE_POSE:g}°)",
                    "other"),
                   poses)]
    fig.legend(handles=handles, loc="outside lower center", ncol=3, fontsize=9,
               title="marker: pose; colour: identity", title_fontsize=9)
    return fig


def pose_figure(tables: Mapping[str, pd.DataFrame], names: Sequence[str]) -> Figure:
    """Accuracy per bucket of the pairs' larger |yaw| (:func:`pose_table`), one panel per
    list of ``tables`` (its label -> its table), one line per model of ``names`` in its
    method colour, one legend."""
    fig, axes = plt.subplots(1, len(tables), figsize=(5.2 * len(tables) + 1, 4),
                             layout="constrained", squeeze=False,
                             width_ratios=[max(2, len(t)) for t in tables.values()])
    for ax, (label, table) in zip(axes[0], tables.items()):
        x = np.arange(len(table))
        for name in names:
            ax.plot(x, table[name], marker="o", label=name,
                    color=figs.method_color(name, COLORS))
        ax.set_xticks(x, [f"{b}\n({n} pairs)" for b, n in zip(table["max |yaw|"],
                                                              table["pairs"])])
        ax.set(xlabel="larger |yaw| of the pair", title=label)
    axes[0, 0].set_ylabel("best-threshold accuracy (%), mean over seeds")
    fig.legend(*axes[0, 0].get_legend_handles_labels(), loc="outside lower center",
               ncol=len(names), fontsize=9)
    return fig
