"""Notebook 01 — ArcFace (Deng et al., CVPR 2019): the margin-loss family on one backbone.

Every loss of the combined-margin family ``s·(cos(m1·θ_y + m2) − m3)`` (ArcFace Eq. 4) is
trained with the same IResNet-18 and recipe on the benchmark's training data, then evaluated on
the LFW-, CFP-FP-, AgeDB- and IJB-like protocols. The notebook calls the functions here; the
tests call them on the smoke profile.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.patheffects import withStroke
from matplotlib.ticker import MaxNLocator

from ..evaluation import project
from ..evaluation.projection import METHOD_NAMES
from ..evaluation.similarity import mean_positive_similarity
from ..evaluation.uncertainty import hierarchical_bootstrap
from ..heads import target_logit_curve
from ..report.claims import Claim, ClaimTest, Evidence, evaluate_claims
from ..report import figures as figs
from ..report.evidence import face_tests
from ..report.references import load_reference, reference_table
from ..training.callbacks import angles_from_history, target_angles
from ..errors import DataUnavailable
from ..evaluation.benchmark import (
    PROTOCOL_LABELS, Evaluation, FaceBenchmark, evaluate_seeds, identity_sample_rows,
    summary_table, synthface_data_spec)
from ..zoo import (DEFAULT_CACHE_DIR, ModelSpec, TrainedModel, get_or_train, recipes,
                   train_seeds, training_spec)

Runs = Sequence[Evaluation]

BACKBONE = "iresnet18"

# name -> (head, kwargs); s = 64 and the margins of the insightface combined-margin table.
LOSSES: dict[str, tuple[str, dict]] = {
    "Softmax": ("softmax", {}),
    "Norm-Softmax": ("norm_softmax", {"s": 64.0}),
    "SphereFace": ("sphereface", {"s": 64.0, "m": 1.5}),
    "CosFace": ("cosface", {"s": 64.0, "m": 0.35}),
    "ArcFace": ("arcface", {"s": 64.0, "m": 0.5}),
    "CM (1,0.3,0.2)": ("combined", {"s": 64.0, "m1": 1.0, "m2": 0.3, "m3": 0.2}),
}
MARGINS = ("SphereFace", "CosFace", "ArcFace", "CM (1,0.3,0.2)")
# Paper rows of the insightface combined-margin table, keyed by our method names.
PAPER_ROW = {"Norm-Softmax": "Norm-Softmax", "SphereFace": "SphereFace (1.5,0,0)",
             "CosFace": "CosFace (1,0,0.35)", "ArcFace": "ArcFace (1,0.5,0)",
             "CM (1,0.3,0.2)": "CM (1,0.3,0.2)"}
TOY_IDENTITIES = 8
# characters per line of the toy panels' captions (a panel is 5 inches wide at 9.5 pt)
CAPTION_WIDTH = 60
ANGLES_UNAVAILABLE = ("θ_y is recorded during training only on SynthFace (the monitor samples "
                      "its in-memory training images); not recorded on this data")


# Every loss, Softmax included, trains by the margin recipe of fkdlib.zoo.recipes: the
# profile's full Softmax schedule (at 24 epochs Softmax fits 97% of its training images), then
# half as many epochs again from it at a tenth of the learning rate, so all six share one start
# and one budget (the measurements behind the recipe are beside FINE_TUNE_FRACTION there).
SCRATCH = "ArcFace from scratch"
PRETRAIN_NAME = "01_arcface/softmax pre-training"
# The toy set (8 identities, 80 images each at the default profile) makes 5 steps an epoch:
# at the profile's 24 epochs Softmax had not separated its classes (three centres within
# 22.5° of each other) and ArcFace from scratch collapsed (every centre in one direction, the
# points 153° from theirs). Five times the epochs, with the notebook's pre-training recipe,
# converges (measured at the default profile: Softmax points 2° from their centre (median),
# ArcFace 1.5°, the closest two ArcFace centres 36° apart).
TOY_EPOCH_FACTOR = 5


def pretrain_spec(bench: FaceBenchmark) -> ModelSpec:
    """The Softmax pre-training every loss starts from (one per training seed):
    :func:`~fkdlib.zoo.recipes.pretrain_spec` of the notebook's backbone."""
    return recipes.pretrain_spec(bench, BACKBONE, name=PRETRAIN_NAME)


def specs(bench: FaceBenchmark) -> dict[str, ModelSpec]:
    """One :class:`~fkdlib.zoo.ModelSpec` per loss, identical but for the head: each trains
    from the shared Softmax pre-training (:func:`pretrain_spec`; a margin head starts from its
    learnt class centres) by :func:`~fkdlib.zoo.recipes.margin_spec`: half as many epochs
    again at a tenth of the profile's learning rate. On SynthFace each records θ_y of a fixed
    sample of training images every epoch (the ``target_angles`` monitor, which samples the
    in-memory SynthFace images; not on real data)."""
    monitors = ("target_angles",) if bench.synthetic else ()
    return {name: recipes.margin_spec(bench, BACKBONE, head, head_kwargs=kwargs,
                                      name=f"01_arcface/{name}", pretrain_name=PRETRAIN_NAME,
                                      monitors=monitors)
            for name, (head, kwargs) in LOSSES.items()}


def scratch_spec(bench: FaceBenchmark) -> ModelSpec:
    """ArcFace (s = 64, m = 0.5) trained from scratch for the profile's epochs: the
    collapse the pre-training avoids, kept as a teaching example (first seed only)."""
    head, kwargs = LOSSES["ArcFace"]
    monitors = ("target_angles",) if bench.synthetic else ()
    return training_spec(bench, BACKBONE, head, head_kwargs=kwargs,
                         name="01_arcface/ArcFace", monitors=monitors)


def train(bench: FaceBenchmark, device: str | torch.device = "cpu",
          cache_dir=DEFAULT_CACHE_DIR, names: Sequence[str] | None = None,
          log=print, seeds: int | None = None) -> dict[str, list[TrainedModel]]:
    """Train (or load from the model zoo) one model per loss (or the losses ``names``) and
    training seed (the profile's ``seeds`` unless given): ``{loss: [seed 0, seed 1, ...]}``."""
    return train_seeds(specs(bench), seeds or bench.profile.seeds, cache_dir=cache_dir,
                       device=device, log=log, names=names)


def train_scratch(bench: FaceBenchmark, device: str | torch.device = "cpu",
                  cache_dir=DEFAULT_CACHE_DIR, log=print) -> dict[str, list[TrainedModel]]:
    """``{"ArcFace from scratch": [seed 0]}`` (:func:`scratch_spec`)."""
    return {SCRATCH: [get_or_train(scratch_spec(bench), cache_dir=cache_dir, device=device,
                                   log=log)]}


# every protocol of the benchmark for every run of every model: evaluate(models, bench, device)
evaluate = evaluate_seeds


def paper_comparison(evaluations: Mapping[str, Runs]) -> pd.DataFrame:
    """Our LFW-/CFP-FP-/AgeDB-like accuracies (mean over seeds) beside the insightface
    combined-margin table."""
    paper = reference_table("arcface_combined_margin").set_index("method")
    summary = summary_table(evaluations)
    rows = []
    for name in evaluations:
        ours = summary.loc[name]
        row = {"method": name,
               "LFW-like (ours)": ours.get("LFW-like acc"),
               "CFP-FP-like (ours)": ours.get("CFP-FP-like acc"),
               "AgeDB-like (ours)": ours.get("AgeDB-like acc")}
        key = PAPER_ROW.get(name)
        if key in paper.index:
            row.update({"LFW (paper)": paper.loc[key, "LFW"],
                        "CFP-FP (paper)": paper.loc[key, "CFP-FP"],
                        "AgeDB-30 (paper)": paper.loc[key, "AgeDB-30"]})
        rows.append(row)
    return pd.DataFrame(rows)


def tar_comparison(evaluations: Mapping[str, Runs], protocol: str = "ijb") -> pd.DataFrame:
    """TAR at FAR on the ``protocol`` list (the IJB-like one on SynthFace; mean over seeds;
    NaN where the list has too few negatives to report it) beside thesis Table 3.1's AS5 rows
    (ResNet-34, IJB-B)."""
    table = load_reference("fanface_table_3_1")
    fars = (1e-5, 1e-4, 1e-3, 1e-2)
    label = PROTOCOL_LABELS.get(protocol, protocol)
    rows = []
    for name, runs in evaluations.items():
        rows.append({"method": f"{name} (ours, {label})",
                     **{f"TAR@{far:g}": float(np.mean([ev.tar[protocol][far] for ev in runs]))
                        for far in fars}})
    for paper_name in ("AS5 ResNet34-Softmax", "Baseline ArcFace (ResNet34)"):
        paper = table[table.method == paper_name].set_index("metric")["value"]
        rows.append({"method": f"{paper_name} (thesis Table 3.1, IJB-B)",
                     **{f"TAR@{far:g}": paper.get(f"TAR@FAR={far:.0e}".replace("e-0", "e-"),
                                                  np.nan) for far in fars}})
    return pd.DataFrame(rows)


def target_logit_curves(num_points: int = 361) -> pd.DataFrame:
    """Target logit / s as a function of θ_y for every loss (exact, analytic; Fig. 3)."""
    theta = torch.linspace(0.0, torch.pi, num_points, dtype=torch.float64)
    frame = {"theta_deg": torch.rad2deg(theta).numpy()}
    for name, (head, kwargs) in LOSSES.items():
        options = {k: v for k, v in kwargs.items() if k != "s"}
        frame[name] = target_logit_curve(head, theta, **options).numpy()
    return pd.DataFrame(frame)


@dataclass
class ToyEmbedding:
    """2-D features of a few identities (Fig. 1/5 of the paper)."""

    name: str
    features: np.ndarray
    labels: np.ndarray
    class_weights: np.ndarray


def toy_embeddings(bench: FaceBenchmark, device: str | torch.device = "cpu",
                   cache_dir=DEFAULT_CACHE_DIR, log=print) -> dict[str, ToyEmbedding]:
    """Train Softmax and ArcFace with a 2-D embedding on 8 identities; return their features.

    The notebook's recipe at :data:`TOY_EPOCH_FACTOR` times the profile's epochs (the toy set
    is small): Softmax for the full toy schedule, then ArcFace fine-tuned from it
    (:func:`~fkdlib.zoo.recipes.fine_tune_schedule`,
    :data:`~fkdlib.zoo.recipes.FINE_TUNE_LR_FACTOR`). The margin needs room on a circle shared
    by 8 classes (45° apart), so the toy ArcFace uses the paper's m = 0.5 with s = 16 (s = 64
    saturates in 2-D).
    """
    profile = bench.profile
    # a didactic figure: always SynthFace, whatever data the notebook runs on
    data = synthface_data_spec(profile, "train", bench.seed, num_identities=TOY_IDENTITIES,
                               images_per_identity=max(16, 4 * profile.train_images_per_identity))
    pretrain, own = recipes.fine_tune_schedule(TOY_EPOCH_FACTOR * profile.epochs)
    softmax = training_spec(bench, BACKBONE, "softmax", backbone_kwargs={"embedding_size": 2},
                            train_overrides={"epochs": pretrain},
                            name="01_arcface/toy-Softmax").replace(data=data)
    arcface = training_spec(bench, BACKBONE, "arcface", head_kwargs={"s": 16.0, "m": 0.5},
                            backbone_kwargs={"embedding_size": 2},
                            train_overrides={"epochs": own,
                                             "lr": recipes.FINE_TUNE_LR_FACTOR * profile.lr},
                            init_from=softmax, name="01_arcface/toy-ArcFace").replace(data=data)
    from ..data import build_dataset
    from ..data.transforms import to_float_image

    dataset = build_dataset(data)
    images = to_float_image(torch.from_numpy(np.ascontiguousarray(dataset.images_u8())))
    toy = {}
    for name, spec in (("Softmax", softmax), ("ArcFace", arcface)):
        model = get_or_train(spec, cache_dir=cache_dir, device=device, log=log)
        with torch.no_grad():
            model.backbone.eval()
            features = model.backbone(images).numpy()
        toy[name] = ToyEmbedding(name, features, dataset.metadata["identity"].to_numpy(),
                                 model.head.normalized_weight().detach().numpy())
    return toy


def angle_statistics(models: Mapping[str, Sequence[TrainedModel]]) -> pd.DataFrame:
    """θ_y (degrees) of the monitored training images after the first and the last epoch,
    mean over the seeds' runs."""
    rows = []
    for name, runs in models.items():
        early = np.mean([angles_from_history(m.history, 1).mean() for m in runs])
        late = np.mean([angles_from_history(m.history, -1).mean() for m in runs])
        rows.append({"method": name, "early mean θ_y": early, "late mean θ_y": late,
                     "late − early": late - early, "seeds": len(runs)})
    return pd.DataFrame(rows)


def _paper_difference(table: str, rows: tuple[str, str], metric: str,
                      scale: float = 1.0) -> float:
    """``value(rows[0]) − value(rows[1])`` in one stored reference table, times ``scale``."""
    frame = load_reference(table).set_index(["method", "metric"])["value"]
    return scale * float(frame[(rows[0], metric)] - frame[(rows[1], metric)])


def claims() -> list[Claim]:
    """The paper's claims, declared once: what each compares, on which protocol, how it is
    measured, and the paper's own effect where its tables give one (accuracies as fractions,
    as our metric measures them)."""
    table = "ArcFace (Deng et al., CVPR 2019), Table 8 and the insightface combined-margin table"
    thesis = "thesis ch. 3, Table 3.1 (ResNet-34 Softmax vs ArcFace, IJB-B)"
    figure = "ArcFace (Deng et al., CVPR 2019), Fig. 7"
    declared = []
    for margin in MARGINS:
        paper_tar = (_paper_difference("fanface_table_3_1", (
            "Baseline ArcFace (ResNet34)", "AS5 ResNet34-Softmax"), "TAR@FAR=1e-3")
            if margin == "ArcFace" else None)
        declared += [
            Claim(f"{margin}>Softmax:LFW", f"{margin} beats Softmax on LFW-like verification "
                  "accuracy", table, "accuracy", "pairs:accuracy", (margin, "Softmax"), "lfw"),
            Claim(f"{margin}>Softmax:TAR", f"{margin} beats Softmax on IJB-like TAR@FAR=1e-3",
                  thesis, "tar@1e-3", "pairs:tar@1e-3", (margin, "Softmax"), "ijb",
                  paper_effect=paper_tar),
        ]
    declared += [
        Claim("ArcFace>Norm-Softmax:LFW", "ArcFace beats Norm-Softmax on LFW-like verification "
              "accuracy", table, "accuracy", "pairs:accuracy", ("ArcFace", "Norm-Softmax"),
              "lfw", paper_effect=_paper_difference(
                  "arcface_combined_margin", (PAPER_ROW["ArcFace"], "Norm-Softmax"), "LFW",
                  scale=0.01)),
        Claim("ArcFace>Norm-Softmax:TAR", "ArcFace beats Norm-Softmax on IJB-like TAR@FAR=1e-3",
              table, "tar@1e-3", "pairs:tar@1e-3", ("ArcFace", "Norm-Softmax"), "ijb"),
        Claim("ArcFace:pos-higher", "ArcFace's positive-pair similarities sit higher than "
              "Softmax's", figure, "mean_positive", "pairs:mean_positive",
              ("ArcFace", "Softmax"), "ijb"),
        Claim("ArcFace:neg-lower", "ArcFace's negative-pair similarities sit lower than "
              "Softmax's", figure, "mean_negative", "pairs:mean_negative",
              ("ArcFace", "Softmax"), "ijb", direction="less"),
        Claim("ArcFace:d-prime", "ArcFace separates positive and negative pairs better than "
              "Softmax (larger d')", figure, "d_prime", "pairs:d_prime", ("ArcFace", "Softmax"),
              "ijb"),
        Claim("ArcFace:theta-shrinks", "the margin shrinks the target angle θ_y during training "
              "(ArcFace, last vs first epoch, same images)",
              "ArcFace (Deng et al., CVPR 2019), Fig. 4", "theta_mean", "theta",
              ("ArcFace",), direction="less"),
    ]
    return declared


def claim_tests(evaluations: Mapping[str, Runs], models: Mapping[str, Sequence[TrainedModel]],
                n_boot: int, seed: int = 0) -> dict[str, ClaimTest]:
    """The face-benchmark tests plus ``"theta"``: θ_y of the model's monitored training images
    after its last epoch minus after its first, paired over the images, seeds resampled (each
    seed monitors its own sample of images; position ``i`` of every seed's sample is resampled
    together, a valid draw since each sample is drawn at random)."""

    def theta(claim: Claim) -> Evidence:
        runs = models[claim.compares[0]]
        if any("theta_deg" not in m.history for m in runs):
            raise DataUnavailable(ANGLES_UNAVAILABLE)
        late = [angles_from_history(m.history, -1) for m in runs]
        early = [angles_from_history(m.history, 1) for m in runs]
        size = late[0].size
        result = hierarchical_bootstrap(mean_positive_similarity, late, early,
                                        np.ones(size, bool), np.arange(size), n_boot=n_boot,
                                        seed=seed)
        return Evidence.from_bootstrap(
            result, f"{claim.compares[0]} θ_y last epoch − first epoch (degrees), paired over "
            f"{size} monitored training images", n=size, seeds=len(runs))

    return {**face_tests(evaluations, n_boot, seed), "theta": theta}


def check_claims(evaluations: Mapping[str, Runs], models: Mapping[str, Sequence[TrainedModel]],
                 n_boot: int, assess: bool, seed: int = 0,
                 unhealthy: Mapping[str, str] | None = None) -> pd.DataFrame:
    """Every claim of :func:`claims` checked by its test (:func:`claim_tests`); a claim
    involving a model of ``unhealthy`` (:func:`~fkdlib.evaluation.health.failed_models`) is
    not assessed."""
    return evaluate_claims(claims(), claim_tests(evaluations, models, n_boot, seed), assess,
                           unhealthy)


# ----------------------------------------------------------------------------- figures


# (line style, marker) of the target-logit curves, one per loss: identical curves (Softmax
# and Norm-Softmax are both cos θ) and near-identical ones (ArcFace and CM between 30° and
# 120°) stay told apart by dashes over a solid line, and by markers.
_CURVE_STYLES = (("-", ""), ("--", ""), ("-.", ""), (":", ""), ("-", "o"), ("--", "s"))


def _target_logit_formula(name: str) -> str | None:
    """The target logit / s of loss ``name`` of :data:`LOSSES` as a formula of θ (None for a
    name that is not there)."""
    if name not in LOSSES:
        return None
    head, kwargs = LOSSES[name]
    if head == "softmax":
        return "cos θ  (‖W‖ = ‖x‖ = 1, b = 0)"
    if head == "norm_softmax":
        return "cos θ"
    if head == "sphereface":
        return f"ψ({kwargs['m']:g}θ)"
    if head == "cosface":
        return f"cos θ − {kwargs['m']:g}"
    if head == "arcface":
        return f"cos(θ + {kwargs['m']:g})"
    m1 = "" if kwargs["m1"] == 1 else f"{kwargs['m1']:g}"
    return f"ψ({m1}θ + {kwargs['m2']:g}) − {kwargs['m3']:g}"


def target_logit_figure(curves: pd.DataFrame) -> Figure:
    """Target logit / s against θ_y (degrees) for every loss of ``curves``
    (:func:`target_logit_curves`: a ``theta_deg`` column and one column per loss); mirrors the
    paper's Fig. 3 (target logit curves of the margin family).

    Each loss in its method colour and its own line style, labelled with its formula; a
    curve equal to an earlier one is drawn dashed over it and says so in its label (Softmax,
    at unit norms and zero bias, is Norm-Softmax's cos θ). ArcFace's step at θ = π − m is
    annotated: there :class:`~fkdlib.heads.ArcFace` (``easy_margin=False``, insightface's
    rule) switches from cos(θ + m), which would rise again past π, to cos θ − m·sin m, a
    jump down from −1 to −cos m − m·sin m. A note says what ψ is (SphereFace's monotonic
    extension of the cosine, which SphereFace and CM use past π: continuous, with a flat
    point where their angle reaches π).
    """
    fig, ax = plt.subplots(figsize=(7.5, 4.8), layout="constrained")
    names = list(curves.columns.drop("theta_deg"))
    formulas = {name: _target_logit_formula(name) for name in names}
    for index, name in enumerate(names):
        values = curves[name].to_numpy(dtype=float)
        same = [other for other in names[:index]
                if np.allclose(curves[other].to_numpy(dtype=float), values)]
        label = name + (f": {formulas[name]}" if formulas[name] else "") + \
            (f"  (= {', '.join(same)})" if same else "")
        linestyle, marker = _CURVE_STYLES[index % len(_CURVE_STYLES)]
        # the first curve widest, so a later one drawn over it leaves it visible at the sides
        ax.plot(curves.theta_deg, values, label=label, color=figs.method_color(name),
                linestyle=linestyle, marker=marker, markersize=4.5,
                markevery=max(1, len(values) // 12), linewidth=3.0 if index == 0 else 1.8)
    if "ArcFace" in names and LOSSES["ArcFace"][0] == "arcface":
        m = LOSSES["ArcFace"][1]["m"]
        switch = np.degrees(np.pi - m)
        below = -np.cos(m) - m * np.sin(m)
        ax.annotate(f"ArcFace past θ = π − m = {switch:.0f}°: cos θ − m·sin m\n"
                    f"(insightface's rule, easy_margin=False):\n"
                    f"a step from −1 down to {below:.2f}".replace("-", "−"),
                    xy=(switch, (below - 1) / 2), xytext=(140, -1.75), ha="right",
                    va="center", fontsize=8.5,
                    arrowprops={"arrowstyle": "->", "color": "0.3"})
    if any("ψ" in (formula or "") for formula in formulas.values()):
        ax.text(0.015, 0.03, "ψ(φ) = (−1)ᵏ cos φ − 2k on [kπ, (k+1)π]:\nSphereFace's "
                "monotonic extension of cos φ\npast π (flat where φ reaches π)",
                transform=ax.transAxes, fontsize=8.5, va="bottom")
    ax.set(xlabel="θ_y, angle to the class centre (degrees)", ylabel="target logit / s",
           xlim=(0, 180), xticks=np.arange(0, 181, 30),
           title="Target logit curves of the margin family")
    ax.legend(loc="upper right", fontsize=8.5)
    return fig


def training_curves_figure(histories: Mapping[str, pd.DataFrame]) -> Figure:
    """Training loss and mean θ_y of the monitored training images per epoch, one line per
    loss in its method colour, one legend; the training-time view of the paper's Fig. 4
    (θ_y shrinks as training goes on). Without a θ_y record (real data:
    :data:`ANGLES_UNAVAILABLE`) the loss panel alone. The loss (the epoch's mean
    cross-entropy, in nats) is on a log axis with 1-2-5 labels when it spans a decade or more
    (:func:`~fkdlib.report.figures.readable_y_scale`), else on a linear one.

    Args:
        histories: method -> its training history (``epoch``, ``loss``, ``theta_mean``).
    """
    angles = all("theta_mean" in history for history in histories.values())
    fig, axes = plt.subplots(1, 2 if angles else 1, figsize=(10 if angles else 5.5, 3.5),
                             layout="constrained", squeeze=False)
    axes = axes[0]
    for name, history in histories.items():
        color = figs.method_color(name)
        axes[0].plot(history.epoch, history.loss, label=name, color=color)
        if angles:
            axes[1].plot(history.epoch, history.theta_mean, label=name, color=color)
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    figs.readable_y_scale(axes[0], np.concatenate([h.loss.to_numpy(dtype=float)
                                                   for h in histories.values()]),
                          "training loss (nats, epoch mean)")
    if angles:
        axes[1].set_ylabel("mean θ_y on training images (°)")
    axes[-1].legend(fontsize=8)
    return fig


def angle_histogram_figure(histories: Mapping[str, pd.DataFrame],
                           bins: Sequence[float] | np.ndarray | None = None) -> Figure:
    """Histograms of θ_y (degrees) of the monitored training images after the first epoch
    (black outline) and after the last (filled, in the loss's colour), one panel per loss,
    three per row, on shared axes (every loss monitors as many images), one legend for the
    figure; mirrors the paper's Fig. 4 (θ_y distributions at the start and the end of
    training). The first epoch is an outline, not a grey fill, so it stays distinct from
    Softmax's grey.

    Args:
        histories: method -> its training history with the per-image ``theta_deg`` column
            (:func:`~fkdlib.training.callbacks.angles_from_history`).
        bins: histogram edges (default 0° to 120° in 2° steps).
    """
    bins = np.linspace(0, 120, 61) if bins is None else np.asarray(bins, dtype=float)
    ncols = min(3, len(histories))
    nrows = -(-len(histories) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4 * ncols, 3 * nrows + 0.4), sharex=True,
                             sharey=True, squeeze=False, layout="constrained")
    for ax in axes.flat[len(histories):]:
        ax.set_axis_off()
    for index, (ax, (name, history)) in enumerate(zip(axes.flat, histories.items())):
        last, _ = np.histogram(angles_from_history(history, -1), bins=bins)
        first, _ = np.histogram(angles_from_history(history, 1), bins=bins)
        ax.stairs(last, bins, fill=True, alpha=0.8, color=figs.method_color(name),
                  label="after the last epoch")
        ax.stairs(first, bins, color="black", linewidth=1.3, label="after the first epoch")
        ax.set_title(name)
        if index >= len(histories) - ncols:  # the lowest panel of its column
            ax.set_xlabel("θ_y (°)")
            ax.xaxis.set_tick_params(labelbottom=True)
        if index % ncols == 0:
            ax.set_ylabel("training images")
    fig.legend([Patch(facecolor="none", edgecolor="black", linewidth=1.3),
                Patch(facecolor="0.55", alpha=0.8)],
               ["after the first epoch", "after the last epoch (filled in the loss's colour)"],
               loc="outside lower center", ncol=2, fontsize=10)
    return fig


def toy_angle_summary(features: np.ndarray, labels: np.ndarray,
                      class_weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Angles (degrees) of a toy model: each point's angle to its own class centre (row
    ``labels[i]`` of ``class_weights``), and the ``(classes, classes)`` matrix of angles
    between class centres."""
    directions = features / np.linalg.norm(features, axis=1, keepdims=True)
    centres = class_weights / np.linalg.norm(class_weights, axis=1, keepdims=True)
    own = np.degrees(np.arccos(np.clip(np.sum(directions * centres[labels], axis=1), -1, 1)))
    return own, np.degrees(np.arccos(np.clip(centres @ centres.T, -1, 1)))


def toy_embedding_figure(toy: Mapping[str, ToyEmbedding], raw: Sequence[str] = ("Softmax",)
                         ) -> Figure:
    """The 2-D features of the toy models (:func:`toy_embeddings`) side by side, one colour
    and marker per identity (:func:`~fkdlib.report.figures.label_styles`) and one legend,
    with a line from the origin towards each class centre (the head's normalised weight) in
    its class's colour. Models of ``raw`` are shown as they are (Softmax: radial wedges),
    the others L2-normalised (on the unit circle); mirrors the paper's 2-D toy example of
    8 identities (the idea of its Fig. 1: a margin between classes on the hypersphere).

    Under each panel, what it shows in numbers (:func:`toy_angle_summary`): the median and
    90th percentile of the points' angles to their own class centre, and the pairs of class
    centres closer than half the even spacing (180° / classes): classes that share one
    direction, which no margin separates.
    """
    points = {}
    for name, t in toy.items():
        xy = t.features if name in raw else \
            t.features / np.linalg.norm(t.features, axis=1, keepdims=True)
        kind = "raw" if name in raw else "L2-normalised"
        points[f"{name} (2-D features, {kind})"] = (xy, t.labels)
    fig = figs.projection_grid(points, panel_size=(5, 5.2), legend="identity", ticks=True)
    for ax, t, (xy, _) in zip(fig.axes, toy.values(), points.values()):
        radius = np.abs(xy).max()
        styles = figs.label_styles(len(t.class_weights))
        for (color, _marker), w in zip(styles, t.class_weights):
            w = w / np.linalg.norm(w) * radius
            # a thin dark outline keeps the yellow and sky-blue centres visible on white
            ax.plot([0, w[0]], [0, w[1]], color=color, lw=1.3,
                    path_effects=[withStroke(linewidth=2.1, foreground="0.25")])
        own, between = toy_angle_summary(t.features, t.labels, t.class_weights)
        half = 180.0 / len(between)
        close = [f"{a}–{b}" for a, b in zip(*np.triu_indices(len(between), 1))
                 if between[a, b] < half]
        # wrapped: a long list of pairs would run under the neighbouring panel
        pairs = textwrap.fill(f"centres closer than {half:g}°: {', '.join(close)}",
                              CAPTION_WIDTH) if close else \
            f"every two centres at least {half:g}° apart"
        ax.set_xlabel(f"angle to own class centre: median {np.median(own):.0f}°, "
                      f"90% of points within {np.percentile(own, 90):.0f}°\n{pairs}",
                      fontsize=9.5)
    return fig


def similarity_figure(evaluations: Mapping[str, Evaluation], protocol: str = "ijb") -> Figure:
    """Positive- and negative-pair cosine similarity densities on the ``protocol`` list, one
    panel per loss (three per row) on shared axes (a log density axis, so the sharp positive
    peaks and the broad negatives are both readable:
    :func:`~fkdlib.report.figures.similarity_grid`), means as vertical lines, one legend;
    mirrors the paper's Fig. 7 (ArcFace moves positive pairs up and negative pairs down
    compared with Softmax)."""
    return figs.similarity_grid(
        {name: {name: (ev.positives(protocol), ev.negatives(protocol))}
         for name, ev in evaluations.items()})


def roc_figure(evaluations: Mapping[str, Evaluation], protocol: str = "ijb") -> Figure:
    """ROC (TAR against FAR, log FAR axis) of every loss on the ``protocol`` list (the
    IJB-like one by default); the analogue of the paper's IJB-B / IJB-C ROC curves."""
    return figs.roc_figure({name: ev.roc(protocol) for name, ev in evaluations.items()})


def projection_figure(evaluations: Mapping[str, Evaluation], metadata: pd.DataFrame,
                      names: Sequence[str] = ("Softmax", "ArcFace"),
                      methods: Sequence[str] = ("tsne", "umap"),
                      identities: int = 20, max_points: int | None = None,
                      seed: int = 0) -> Figure:
    """t-SNE and UMAP of the test embeddings of ``identities`` test identities (drawn with
    ``seed``, :func:`~fkdlib.evaluation.benchmark.identity_sample_rows`, one colour each): one
    row per projection method, one column per loss of ``names``, one legend when there are at
    most 12 identities (:func:`~fkdlib.report.figures.projection_grid`). Not a figure of the
    paper: the test-set counterpart of its 2-D toy (:func:`toy_embedding_figure`). ``methods``
    are those of :func:`~fkdlib.evaluation.project`."""
    rows = identity_sample_rows(metadata, identities, max_points, seed)
    labels = metadata["identity"].to_numpy()[rows]
    points = {f"{name} · {METHOD_NAMES[method]}":
              (project(evaluations[name].embeddings["test"][rows], method=method,
                       random_state=seed), labels)
              for method in methods for name in names}
    return figs.projection_grid(points, ncols=len(names), panel_size=(5, 4.5), legend="identity")


__all__ = ["LOSSES", "MARGINS", "angle_histogram_figure",
           "angle_statistics", "check_claims", "claim_tests", "claims", "evaluate",
           "paper_comparison", "projection_figure", "roc_figure", "similarity_figure", "specs",
           "tar_comparison", "target_angles", "target_logit_curves", "target_logit_figure",
           "toy_angle_summary", "toy_embedding_figure", "toy_embeddings", "train",
           "training_curves_figure"]
