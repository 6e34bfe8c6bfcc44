"""Notebook 04 — ICD-Face (Yu et al., ICCV 2023): intra-class compactness distillation.

The paper's observation: a small student distilled with feature-consistency distillation (FCD,
an L2 loss between the student's and the teacher's embeddings of the same image) keeps the
teacher's *negative*-pair similarity distribution but has clearly lower *positive*-pair
similarities. Its fix, ICD, matches the distribution of positive-pair similarities (each batch
feature against per-class feature banks) with a KL divergence between soft histograms.

Four models are compared on the shared benchmark: the shared IResNet-50 teacher
(:func:`~fkdlib.zoo.teacher_spec`), the student trained alone, the student with
FCD and the student with FCD + ICD. Then an ablation over the bank size K and the histogram
bandwidth σ, and the feature banks' memory at the paper's scale. The losses, the banks and the
unpublished choices (K = 8, 41 bins, σ = 0.05, weights FCD 7 / ICD 1) live in
:mod:`fkdlib.distill.icd`; this module builds the specs, tables, figures and claim checks the
notebook shows, and the tests call it on tiny inputs.

The paper distils a ResNet-50 into MobileNetV2. Our student is an IResNet-18 at the profile's
width, half the teacher's: at the default profile (32 px, width 0.125) the mobile students we
have do not fit the training identities (MobileFaceNet, the face network built from
MobileNetV2's bottlenecks: 54.5% training top-1 after the Softmax pre-training, 64.2% after the
CosFace fine-tuning; at width 0.25 74%, its loss still falling), so every claim on them would be
``not assessed`` by the training-health gate, while IResNet-18 fits 93-94%. The teacher is
still several times larger (:func:`model_sizes`): the capacity gap the paper's observation is
about. Every model, teacher included, trains by the margin recipe of
:func:`~fkdlib.zoo.margin_spec` (Softmax pre-training, then CosFace fine-tuning); the students
share one Softmax pre-training per seed, and FCD / ICD act during the fine-tuning.
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
from matplotlib.ticker import MaxNLocator
from scipy.stats import wasserstein_distance

from ..distill.icd import (
    FCD_WEIGHT, ICD_BANDWIDTH, ICD_BINS, ICD_SLOTS, ICD_WEIGHT, PAPER_EMBEDDING_SIZE,
    PAPER_NUM_CLASSES, FeatureBank)
from ..errors import ConfigError
from ..evaluation import (
    count_flops, profile_model, project,
    similarity_stats)
from ..models import create_model
from ..report import figures as figs
from ..report.claims import Claim, evaluate_claims
from ..report.evidence import face_tests
from ..evaluation.benchmark import (
    Evaluation, FaceBenchmark, evaluate_seeds, identity_sample_rows)
from ..evaluation.comparisons import stratified_mean_bootstrap
from ..zoo import (
    DEFAULT_CACHE_DIR, ModelSpec, TrainedModel, margin_spec, teacher_spec, train_seeds)

Runs = Sequence[Evaluation]

STUDENT_BACKBONE = "iresnet18"
STUDENT_PRETRAIN_NAME = "04_icd_face/student softmax pre-training"
# The paper's pair, for the model-size table: ResNet-50 teacher, MobileNetV2 student (at 112 px
# our closest network to it: MobileFaceNet, MobileNetV2's bottlenecks for faces).
PAPER_TEACHER, PAPER_STUDENT = "iresnet50", "mobilefacenet"
PAPER_INPUT_SIZE = 112

TEACHER, STUDENT, FCD, FCD_ICD = "Teacher", "Student", "FCD", "FCD+ICD"
METHODS = (TEACHER, STUDENT, FCD, FCD_ICD)
CE_WEIGHT = 1.0

# Ablation: bank sizes (K slots per class) and soft-histogram bandwidths σ; the defaults of
# fkdlib.distill.icd (K = 8, σ = 0.05) are in both grids.
BANK_SIZES = (2, 4, ICD_SLOTS, 16)
BANDWIDTHS = (0.025, ICD_BANDWIDTH, 0.1)
NO_ICD = "no ICD"
# The ablation fine-tunes the trained FCD student (the variants differ only in K or σ and share
# their start, data order and schedule, so their differences are K's and σ's), for
# ABLATION_EPOCHS epochs at the learning rates the main fine-tuning starts with: the profile's
# lr x 0.1 for the first half, x 0.01 for the second. Two epochs: the banks start empty and
# fill during the first.
ABLATION_EPOCHS = 2
ABLATION_LR_FACTOR = 0.1

# "Matches the teacher" means within ±δ in mean cosine similarity: δ is the soft histogram's
# bin step and bandwidth (ICD_BANDWIDTH = 0.05), the resolution at which ICD itself compares
# similarity distributions.
EQUIVALENCE_MARGIN = ICD_BANDWIDTH
LOW_FAR = 1e-3
CLAIM_PROTOCOL = "ijb"
TAR_FARS = (1e-3, 1e-2, 1e-1)

PAPER_SOURCE = "ICD-Face (Yu et al., ICCV 2023)"
# The claim every other one rests on: a teacher more compact than the student.
PREMISE = "premise:teacher-compact"
TSNE_IDENTITIES = 12


# ----------------------------------------------------------------------------- specs


def fcd_loss() -> dict[str, Any]:
    """The FCD entry of a distillation spec's ``losses`` list (weight :data:`FCD_WEIGHT`)."""
    return {"name": "fcd", "weight": FCD_WEIGHT}


def icd_loss(slots_per_class: int = ICD_SLOTS, bandwidth: float = ICD_BANDWIDTH,
             bins: int = ICD_BINS) -> dict[str, Any]:
    """The ICD entry of a ``losses`` list, every bank and histogram setting spelled out so the
    zoo key names them (weight :data:`ICD_WEIGHT`)."""
    if isinstance(slots_per_class, bool) or not isinstance(slots_per_class, int) \
            or slots_per_class < 1:
        raise ConfigError(f"slots_per_class (K) must be a positive integer, got "
                          f"{slots_per_class!r}")
    if not (isinstance(bandwidth, (int, float)) and math.isfinite(bandwidth) and bandwidth > 0):
        raise ConfigError(f"bandwidth (σ) must be a finite number > 0, got {bandwidth!r}")
    return {"name": "icd", "weight": ICD_WEIGHT,
            "kwargs": {"slots_per_class": slots_per_class, "bins": bins,
                       "bandwidth": float(bandwidth)}}


def student_spec(bench: FaceBenchmark, losses: Sequence[Mapping[str, Any]] = (), *,
                 name: str = "", train_overrides: Mapping[str, Any] | None = None,
                 init_from: ModelSpec | None = None) -> ModelSpec:
    """The IResNet-18 student, trained by the margin recipe with the teacher's margin head.

    Without ``losses`` the student is trained alone (Softmax pre-training, then the teacher's
    margin); with losses it is distilled from :func:`~fkdlib.zoo.teacher_spec` during the
    margin fine-tuning (method ``"distill"``, cross-entropy weight :data:`CE_WEIGHT`), from the
    same Softmax pre-training. The student's embedding size is the teacher's, so FCD compares
    the embeddings directly (no projection). ``init_from`` replaces the pre-training as the
    start (the ablation starts from the trained FCD student); ``train_overrides`` change the
    fine-tuning.
    """
    teacher = teacher_spec(bench)
    embedding_size = teacher.backbone_kwargs.get("embedding_size",
                                                 bench.profile.embedding_size)
    spec = margin_spec(bench, STUDENT_BACKBONE, teacher.head, head_kwargs=teacher.head_kwargs,
                       name=name, pretrain_name=STUDENT_PRETRAIN_NAME,
                       backbone_kwargs={"embedding_size": embedding_size},
                       train_overrides=train_overrides)
    if losses:
        spec = spec.replace(method="distill", method_kwargs={
            "teacher": teacher.to_dict(), "losses": [dict(loss) for loss in losses],
            "ce_weight": CE_WEIGHT})
    return spec.replace(init_from=init_from) if init_from is not None else spec


def method_specs(bench: FaceBenchmark) -> dict[str, ModelSpec]:
    """Teacher, student alone, student + FCD, student + FCD + ICD (K = 8, σ = 0.05)."""
    return {
        TEACHER: teacher_spec(bench),
        STUDENT: student_spec(bench, name="04_icd_face/student"),
        FCD: student_spec(bench, [fcd_loss()], name="04_icd_face/fcd"),
        FCD_ICD: student_spec(bench, [fcd_loss(), icd_loss()], name="04_icd_face/fcd+icd"),
    }


def ablation_label(slots_per_class: int, bandwidth: float) -> str:
    """``"K=8, σ=0.05"``: the label of one ablation variant."""
    return f"K={slots_per_class}, σ={bandwidth:g}"


def ablation_grid() -> list[tuple[int, float]]:
    """(K, σ) of every ablation variant: each K at the default σ, then each other σ at the
    default K (the default pair appears once)."""
    grid = [(slots, ICD_BANDWIDTH) for slots in BANK_SIZES]
    grid += [(ICD_SLOTS, bandwidth) for bandwidth in BANDWIDTHS if bandwidth != ICD_BANDWIDTH]
    return grid


def ablation_train_overrides(bench: FaceBenchmark) -> dict[str, Any]:
    """The fine-tuning schedule of the ablation (see :data:`ABLATION_EPOCHS`), never longer
    than the main schedule (the smoke profile trains for one epoch)."""
    # rounded so that 0.1 x 0.1 is stored (and shown) as 0.01, not 0.010000000000000002
    lr = float(f"{bench.profile.lr * ABLATION_LR_FACTOR:.12g}")
    return {"epochs": min(ABLATION_EPOCHS, bench.profile.epochs), "lr": lr,
            "schedule": "multistep", "milestones": [0.5]}


def ablation_specs(bench: FaceBenchmark) -> dict[str, ModelSpec]:
    """The trained FCD student fine-tuned without ICD (:data:`NO_ICD`, the reference) and with
    ICD at every (K, σ) of :func:`ablation_grid`, on one schedule."""
    start = method_specs(bench)[FCD]
    overrides = ablation_train_overrides(bench)
    specs = {NO_ICD: student_spec(bench, [fcd_loss()], name="04_icd_face/ablation/no-icd",
                                  train_overrides=overrides, init_from=start)}
    for slots, bandwidth in ablation_grid():
        label = ablation_label(slots, bandwidth)
        specs[label] = student_spec(bench, [fcd_loss(), icd_loss(slots, bandwidth)],
                                    name=f"04_icd_face/ablation/{label}",
                                    train_overrides=overrides, init_from=start)
    return specs


def specs(bench: FaceBenchmark) -> dict[str, ModelSpec]:
    """The four methods of :func:`method_specs` and the ablation of :func:`ablation_specs`."""
    return {**method_specs(bench), **ablation_specs(bench)}


def train(bench: FaceBenchmark, device: str | torch.device = "cpu",
          cache_dir=DEFAULT_CACHE_DIR, names: Sequence[str] | None = None,
          log: Callable[[str], None] = print,
          seeds: int | None = None) -> dict[str, list[TrainedModel]]:
    """Train (or load from the model zoo) the models of :func:`specs` (or those ``names``),
    once per training seed (the profile's ``seeds`` unless given; the teacher of seed ``s``
    distils the students of seed ``s``): ``{name: [seed 0, seed 1, ...]}``."""
    return train_seeds(specs(bench), seeds or bench.profile.seeds, cache_dir=cache_dir,
                       device=device, log=log, names=names)


# every protocol of the benchmark for every run of every model: evaluate(models, bench, device)
evaluate = evaluate_seeds


# ----------------------------------------------------------------------------- tables


def model_sizes(bench: FaceBenchmark) -> pd.DataFrame:
    """Parameters and multiply-adds of our teacher and student at the profile's input size (with
    the margin head both train with: the teacher's), beside the same two architectures at the
    paper's 112 px and 512-d."""
    specs = method_specs(bench)
    rows = []
    for role in (TEACHER, STUDENT):
        spec = specs[role]
        with torch.device("meta"):
            model = create_model(spec.backbone, **spec.backbone_kwargs)
        ours = count_flops(model, model.input_size)
        options = ", ".join(f"{key}={value:g}" for key, value in spec.head_kwargs.items())
        rows.append({"role": role.lower(), "scale": f"ours ({bench.profile.name})",
                     "backbone": spec.backbone, "head": f"{spec.head} ({options})",
                     "input": f"{model.input_size} px, {model.embedding_size}-d",
                     "params (M)": ours.params_m, "MMACs": ours.macs / 1e6})
    for role, name, note in (("teacher", PAPER_TEACHER, "paper: ResNet-50"),
                             ("student", PAPER_STUDENT, "paper: MobileNetV2")):
        full = profile_model(name, PAPER_INPUT_SIZE, embedding_size=PAPER_EMBEDDING_SIZE)
        rows.append({"role": role, "scale": f"112 px ({note})", "backbone": name, "head": "",
                     "input": f"{PAPER_INPUT_SIZE} px, {PAPER_EMBEDDING_SIZE}-d",
                     "params (M)": full.params_m, "MMACs": full.macs / 1e6})
    return pd.DataFrame(rows)


def bank_memory(slots: Sequence[int] = BANK_SIZES, num_classes: int = PAPER_NUM_CLASSES,
                dim: int = PAPER_EMBEDDING_SIZE, dtype: torch.dtype = torch.float16
                ) -> pd.DataFrame:
    """Memory of ICD's feature banks (:meth:`FeatureBank.estimate_bytes`): one network's bank
    and the teacher's + the student's together, for each K. The defaults are the paper's
    scale: 85,742 MS1MV2 identities, 512-d, fp16."""
    rows = []
    for k in slots:
        one = FeatureBank.estimate_bytes(k, num_classes, dim, dtype)
        rows.append({"K": k, "classes": num_classes, "dim": dim,
                     "dtype": str(dtype).removeprefix("torch."), "bytes per bank": one,
                     "MiB per bank": one / 2**20, "GiB for both banks": 2 * one / 2**30})
    return pd.DataFrame(rows)


def similarity_table(evaluations: Mapping[str, Evaluation], protocol: str = CLAIM_PROTOCOL,
                     reference: str = TEACHER) -> pd.DataFrame:
    """Positive/negative similarity statistics per method (:func:`similarity_stats`), their
    mean shifts from the reference (the teacher), and the 1-Wasserstein distance of each
    distribution to the reference's (the mean absolute shift of matched quantiles)."""
    if reference not in evaluations:
        raise ConfigError(f"reference method {reference!r} is not among the evaluations "
                          f"({', '.join(evaluations)})")
    ref = evaluations[reference]
    rows = []
    for name, ev in evaluations.items():
        positive, negative = ev.positives(protocol), ev.negatives(protocol)
        stats = similarity_stats(positive, negative)
        rows.append({
            "method": name,
            "mean pos": stats["mean_positive"], "std pos": stats["std_positive"],
            "mean neg": stats["mean_negative"], "std neg": stats["std_negative"],
            f"Δ pos vs {reference.lower()}":
                stats["mean_positive"] - float(ref.positives(protocol).mean()),
            f"Δ neg vs {reference.lower()}":
                stats["mean_negative"] - float(ref.negatives(protocol).mean()),
            f"W1 pos to {reference.lower()}": wasserstein_distance(positive,
                                                                   ref.positives(protocol)),
            f"W1 neg to {reference.lower()}": wasserstein_distance(negative,
                                                                   ref.negatives(protocol)),
            "d'": stats["d_prime"], "overlap": stats["overlap"],
        })
    return pd.DataFrame(rows)


def tar_table(evaluations: Mapping[str, Evaluation], protocol: str = CLAIM_PROTOCOL,
              fars: Sequence[float] = TAR_FARS) -> pd.DataFrame:
    """TAR at each FAR on the protocol's pairs (NaN where the negatives cannot resolve it)."""
    return pd.DataFrame([{"method": name, **{f"TAR@{far:g}": ev.tar[protocol][far]
                                             for far in fars}}
                         for name, ev in evaluations.items()])


def _run_mean(runs: Runs, value: Callable[[Evaluation], float]) -> float:
    return float(np.mean([value(ev) for ev in runs]))


def _run_summary(runs: Runs, protocol: str) -> dict[str, float]:
    """Mean over runs of the mean similarities, TAR@1e-3 and LFW-like accuracy."""
    return {"mean pos": _run_mean(runs, lambda ev: ev.positives(protocol).mean()),
            "mean neg": _run_mean(runs, lambda ev: ev.negatives(protocol).mean()),
            "TAR@1e-3": _run_mean(runs, lambda ev: ev.tar[protocol][1e-3]),
            "LFW-like acc": _run_mean(runs, lambda ev: 100 * ev.verification["lfw"]
                                      .accuracy_mean if "lfw" in ev.verification else math.nan)}


def ablation_table(evaluations: Mapping[str, Runs | Evaluation], teacher: Runs | Evaluation,
                   n_boot: int, seed: int = 0, protocol: str = CLAIM_PROTOCOL) -> pd.DataFrame:
    """One row per ablation variant: K, σ, mean positive and negative similarity, the change in
    mean positive similarity from the :data:`NO_ICD` reference with its 95% interval
    (stratified bootstrap over seeds and test identities), TAR at 1e-3, LFW-like accuracy (each
    the mean over the runs), and the variant's bank memory at the paper's scale."""
    if NO_ICD not in evaluations:
        raise ConfigError(f"the ablation needs its reference {NO_ICD!r}; got "
                          f"{', '.join(evaluations)}")
    runs = {name: [value] if isinstance(value, Evaluation) else list(value)
            for name, value in evaluations.items()}
    reference = runs[NO_ICD]
    grid = {ablation_label(k, s): (k, s) for k, s in ablation_grid()}
    rows = []
    for name, model_runs in runs.items():
        slots, bandwidth = grid.get(name, (pd.NA, math.nan))
        summary = _run_summary(model_runs, protocol)
        row = {"variant": name, "K": slots, "σ": bandwidth, "mean pos": summary["mean pos"],
               "mean neg": summary["mean neg"]}
        if name == NO_ICD:
            row.update({"Δ pos vs no ICD": 0.0, "ci_low": math.nan, "ci_high": math.nan})
        else:
            result = stratified_mean_bootstrap(model_runs, reference, protocol, True, n_boot,
                                               seed)
            row.update({"Δ pos vs no ICD": result.effect, "ci_low": result.ci_low,
                        "ci_high": result.ci_high})
        row.update({"TAR@1e-3": summary["TAR@1e-3"], "LFW-like acc": summary["LFW-like acc"],
                    "paper-scale MiB per bank": FeatureBank.estimate_bytes(slots) / 2**20
                    if name in grid else 0.0})
        rows.append(row)
    frame = pd.DataFrame(rows)
    teacher_runs = [teacher] if isinstance(teacher, Evaluation) else list(teacher)
    teacher_row = {"variant": TEACHER, "K": pd.NA, "σ": math.nan,
                   **_run_summary(teacher_runs, protocol)}
    frame = pd.concat([frame, pd.DataFrame([teacher_row])], ignore_index=True)
    frame["K"] = frame["K"].astype("Int64")
    return frame


# ----------------------------------------------------------------------------- claims


def claims(protocol: str = CLAIM_PROTOCOL) -> list[Claim]:
    """The paper's observation and its fix, declared once, with the paper's words (it
    publishes no code, and we hold none of its table numbers, so no paper effect), on the
    ``protocol`` pair list (the IJB-like one on SynthFace; on real data the benchmark's
    :attr:`~fkdlib.evaluation.benchmark.FaceBenchmark.pair_protocol`)."""
    delta = EQUIVALENCE_MARGIN
    observation = f"{PAPER_SOURCE}: the FCD observation (abstract, motivation)"
    fix = f"{PAPER_SOURCE}: ICD (abstract, experiments)"
    premise = (PREMISE,)
    return [
        Claim(PREMISE, "Premise: the teacher is more compact than the student trained alone "
              "(higher mean positive-pair similarity); without it ICD has nothing to transfer",
              observation, "mean positive similarity teacher − student", "stratified:positive",
              (TEACHER, STUDENT), protocol,
              paper_says="the teacher's intra-class similarities are higher than the "
              "student's: the compactness ICD distils"),
        Claim("FCD:neg-match", "Under FCD the student's negative-pair similarities match the "
              f"teacher's: mean within ±{delta:g} (equivalence)", observation,
              f"|mean negative similarity FCD − teacher| − {delta:g}", "stratified:negative",
              (FCD, TEACHER), protocol, direction="equivalent", margin=delta,
              requires=premise,
              paper_says="FCD keeps the inter-class discrepancy: the student's similarity "
              "distribution of negative pairs is similar to the teacher's."),
        Claim("FCD:pos-lower", "Under FCD the student's positive-pair similarities are clearly "
              f"lower than the teacher's: mean lower by more than {delta:g}", observation,
              f"mean positive similarity FCD − teacher + {delta:g}", "stratified:positive",
              (FCD, TEACHER), protocol, direction="less", bound=-delta, requires=premise,
              paper_says="\"after using FCD, we observe that the intra-class similarities of "
              "the student model are lower than the intra-class similarities of the teacher "
              "model a lot\""),
        Claim("ICD:pos-higher", "Adding ICD raises the student's positive-pair similarities "
              "over FCD alone", fix, "mean positive similarity FCD+ICD − FCD",
              "stratified:positive", (FCD_ICD, FCD), protocol, requires=premise,
              paper_says="ICD (the similarity distribution consistency loss over feature "
              "banks) is introduced \"to improve the intra-class compactness of the student "
              "model\""),
        Claim("ICD:pos-closer", "Adding ICD moves the student's positive-pair similarities "
              "toward the teacher's: FCD+ICD's mean is closer to the teacher's than FCD's", fix,
              "|mean pos FCD+ICD − teacher| − |mean pos FCD − teacher|",
              f"closeness:{TEACHER}", (FCD_ICD, FCD), protocol, direction="less",
              requires=premise, paper_says="the SDC loss makes the student's similarity distribution of positive "
              "pairs consistent with the teacher's (\"we estimate the probability "
              "distributions of the teacher and student models and introduce the Similarity "
              "Distribution Consistency (SDC) loss\")"),
        Claim("ICD:TAR", f"FCD+ICD improves TAR at FAR={LOW_FAR:g} over FCD alone", fix,
              f"TAR@{LOW_FAR:g} FCD+ICD − FCD", f"pairs:tar@{LOW_FAR:g}", (FCD_ICD, FCD),
              protocol, requires=premise,
              paper_says="ICD-Face beats earlier FR distillation (FCD) on IJB-B and "
              "IJB-C (verification TAR at low FAR) and MegaFace; ResNet-50 teacher, "
              "MobileNetV2 student (no numbers available to us)"),
    ]


def check_claims(evaluations: Mapping[str, Runs | Evaluation], n_boot: int, assess: bool,
                 seed: int = 0, unhealthy: Mapping[str, str] | None = None,
                 protocol: str = CLAIM_PROTOCOL) -> pd.DataFrame:
    """Every claim of :func:`claims` checked on the face benchmark's tests
    (:func:`fkdlib.report.evidence.face_tests`: stratified by class for mean similarities,
    seeds and test identities resampled); the paper's claims only where the premise holds and
    no model they compare is in ``unhealthy``."""
    missing = [name for name in METHODS if name not in evaluations]
    if missing:
        raise ConfigError(f"the claims need evaluations of {', '.join(METHODS)}; missing "
                          f"{', '.join(missing)}")
    return evaluate_claims(claims(protocol), face_tests(evaluations, n_boot, seed), assess,
                           unhealthy)


# ----------------------------------------------------------------------------- figures


def similarity_figure(evaluations: Mapping[str, Evaluation], protocol: str = CLAIM_PROTOCOL,
                      methods: Sequence[str] = METHODS, margin: float = EQUIVALENCE_MARGIN
                      ) -> Figure:
    """The key figure: positive (solid) and negative (dashed) similarity densities of every
    method on one set of axes, means as vertical lines; beside it, zoomed in, each method's
    mean positive and mean negative similarity with the teacher's means ± the equivalence
    margin shaded (where the claims call a mean equal to the teacher's)."""
    fig, axes = plt.subplot_mosaic([["dist", "pos"], ["dist", "neg"]], figsize=(12.5, 4.8),
                                   width_ratios=(2.3, 1))
    data = {name: (evaluations[name].positives(protocol), evaluations[name].negatives(protocol))
            for name in methods}
    figs.plot_similarity_distributions(data, ax=axes["dist"], bins=90)
    axes["dist"].set_title("Positive (solid) and negative (dashed) pairs; lines at the means")
    rows = np.arange(len(methods))
    for key, index, kind in (("pos", 0, "positive"), ("neg", 1, "negative")):
        ax = axes[key]
        means = np.array([float(np.mean(data[name][index])) for name in methods])
        if TEACHER in data:
            centre = float(np.mean(data[TEACHER][index]))
            ax.axvspan(centre - margin, centre + margin, color="0.88", zorder=0)
        for row, name, mean in zip(rows, methods, means):
            ax.plot(mean, row, "o" if index == 0 else "s", color=figs.method_color(name),
                    markersize=8)
            ax.annotate(f"{mean:.3f}", (mean, row), xytext=(0, 7), textcoords="offset points",
                        ha="center", fontsize=8)
        ax.set_yticks(rows, methods)
        ax.set_ylim(len(methods) - 0.4, -0.8)
        ax.set_title(f"mean {kind} similarity (shaded: teacher's ± {margin:g})", fontsize=10)
        ax.grid(axis="y", visible=False)
    axes["neg"].set_xlabel("cosine similarity")
    return fig


def ablation_figure(table: pd.DataFrame) -> Figure:
    """Mean positive similarity (top) and TAR@1e-3 (bottom) of the ablation variants of
    ``table`` (:func:`ablation_table`) against K (at the default σ, left) and against σ (at
    the default K, right), with the no-ICD reference and the teacher as horizontal lines and
    one legend for the figure.

    The bars on the mean positive similarity are the 95% interval of its change from the
    no-ICD reference, placed around the variant: black, capped and drawn above the markers,
    since they are often barely longer than a marker. TAR has no interval. The panels of a
    row share their y axis, which spans the variants, their intervals and the reference; the
    teacher is a line when it falls inside, else an arrow at the panel's edge with its value
    (the fine-tuned variants differ by thousandths, and an axis stretched to a teacher a few
    hundredths away flattens the very differences the ablation is about).
    """
    variants = table[~table.variant.isin([NO_ICD, TEACHER])]
    by_k = variants[variants["σ"] == ICD_BANDWIDTH].sort_values("K")
    by_sigma = variants[variants.K == ICD_SLOTS].sort_values("σ")
    references = table.set_index("variant")
    fig, axes = plt.subplots(2, 2, figsize=(10, 7), sharey="row", layout="constrained")
    for row, (metric, name) in enumerate((("mean pos", "mean positive similarity"),
                                          ("TAR@1e-3", "TAR at FAR = 1e-3 (no interval)"))):
        spanned = [float(references.loc[NO_ICD, metric])] if NO_ICD in references.index \
            else []
        for col, (frame, x, label) in enumerate(((by_k, "K", "bank slots per class K"),
                                                 (by_sigma, "σ", "histogram bandwidth σ"))):
            ax = axes[row, col]
            xs = frame[x].to_numpy(dtype=float)
            ys = frame[metric].to_numpy(dtype=float)
            spanned += list(ys)
            error = None
            if metric == "mean pos" and NO_ICD in references.index:
                # the bootstrap interval of the change from the reference, around the variant
                base = float(references.loc[NO_ICD, metric])
                error = np.array([ys - (base + frame.ci_low.to_numpy(dtype=float)),
                                  base + frame.ci_high.to_numpy(dtype=float) - ys])
                spanned += list(ys - error[0]) + list(ys + error[1])
            ax.errorbar(xs, ys, yerr=error, fmt="o-", markersize=5, capsize=6, capthick=1.5,
                        elinewidth=1.5, ecolor="black", barsabove=True,
                        color=figs.method_color("fcd+icd"),
                        label="FCD+ICD (fine-tuned); bars: 95% interval of the change "
                              "from no ICD")
            for reference, style in ((NO_ICD, "--"), (TEACHER, ":")):
                if reference in references.index:
                    ax.axhline(references.loc[reference, metric], linestyle=style,
                               color=figs.method_color("fcd" if reference == NO_ICD
                                                       else "teacher"),
                               label=reference + (" (fine-tuned FCD)" if reference == NO_ICD
                                                  else ""))
            ax.set_xscale("log", base=2)
            ax.set_xticks(xs, [f"{v:g}" for v in xs])
            ax.minorticks_off()
            ax.set(xlabel=label, ylabel=name if col == 0 else None)
        finite = np.asarray(spanned, dtype=float)
        finite = finite[np.isfinite(finite)]
        if finite.size == 0:  # nothing measured on this row (e.g. TAR below its reportable FAR)
            continue
        low, high = finite.min(), finite.max()
        pad = 0.12 * (high - low) if high > low else 0.01 * max(abs(high), 1e-3)
        axes[row, 0].set_ylim(low - pad, high + pad)
        if TEACHER in references.index:
            teacher = float(references.loc[TEACHER, metric])
            if not low - pad <= teacher <= high + pad:
                above = teacher > high
                for ax in axes[row]:
                    ax.annotate(f"Teacher {teacher:.3f} {'↑' if above else '↓'}",
                                xy=(0.99, 0.97 if above else 0.03), xycoords="axes fraction",
                                ha="right", va="top" if above else "bottom", fontsize=9,
                                color=figs.method_color("teacher"))
    handles, names = axes[0, 0].get_legend_handles_labels()
    # matplotlib lists the error-bar container after the lines; the variants come first
    fig.legend(handles[-1:] + handles[:-1], names[-1:] + names[:-1], loc="outside lower center",
               ncol=len(names), fontsize=9)
    return fig


def tsne_figure(evaluations: Mapping[str, Evaluation], metadata: pd.DataFrame,
                methods: Sequence[str] = METHODS, max_points: int | None = None,
                seed: int = 0, identities: int = TSNE_IDENTITIES,
                projection: str = "tsne") -> Figure:
    """t-SNE of the same test images (``identities`` unseen identities drawn with ``seed``,
    :func:`~fkdlib.evaluation.benchmark.identity_sample_rows`, one colour each) in every
    method's embedding space, one panel per method, no ticks and no legend: tighter
    same-colour groups are the intra-class compactness ICD targets (the paper's feature
    visualisations). ``projection`` is a method of :func:`~fkdlib.evaluation.project`."""
    rows = identity_sample_rows(metadata, identities, max_points, seed)
    labels = metadata["identity"].to_numpy()[rows]
    return figs.projection_grid({
        name: (project(evaluations[name].embeddings["test"][rows], method=projection,
                       random_state=seed), labels)
        for name in methods})


def training_curves_figure(histories: Mapping[str, pd.DataFrame],
                           terms: Sequence[str] = ("loss_ce", "loss_fcd", "loss_icd")) -> Figure:
    """Each weighted loss term per epoch (one panel per term of ``terms`` that some history
    records: cross-entropy, FCD's 7·(2 − 2 cos), ICD's KL divergence), one line per student
    of ``histories`` (method -> its training history) in its method colour, one legend. Each
    panel keeps its own y axis: the terms differ in kind and scale, and are not compared
    across panels. Not a figure of the paper: it shows what each student was trained with."""
    shown = [term for term in terms if any(term in h for h in histories.values())]
    if not shown:
        raise ConfigError(f"no history records any of {', '.join(terms)}")
    fig, axes = plt.subplots(1, len(shown), figsize=(4 * len(shown), 3.4), squeeze=False,
                             layout="constrained")
    for ax, term in zip(axes[0], shown):
        for name, history in histories.items():
            if term in history:
                ax.plot(history.epoch, history[term], marker="o", label=name,
                        color=figs.method_color(name))
        ax.set(xlabel="epoch", title=term.removeprefix("loss_").upper() + " term (weighted)")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes[0, 0].set_ylabel("weighted term (epoch mean)")
    axes[0, 0].legend()
    return fig


def roc_figure(evaluations: Mapping[str, Evaluation], protocol: str = CLAIM_PROTOCOL
               ) -> Figure:
    """ROC on the ``protocol`` list (IJB-like) of every method, in its method colour; the
    analogue of the paper's IJB-B / IJB-C verification results at low FAR."""
    return figs.roc_figure({name: ev.roc(protocol) for name, ev in evaluations.items()})


__all__ = [
    "ABLATION_EPOCHS", "BANDWIDTHS", "BANK_SIZES", "EQUIVALENCE_MARGIN", "FCD", "FCD_ICD",
    "LOW_FAR", "METHODS", "NO_ICD", "PREMISE", "STUDENT", "STUDENT_BACKBONE", "TEACHER",
    "ablation_figure", "ablation_grid", "ablation_label", "ablation_specs", "ablation_table",
    "ablation_train_overrides", "bank_memory", "check_claims", "claims", "evaluate",
    "fcd_loss", "icd_loss", "method_specs", "model_sizes", "roc_figure", "similarity_figure",
    "similarity_table", "specs", "student_spec", "tar_table", "train",
    "training_curves_figure", "tsne_figure",
]
