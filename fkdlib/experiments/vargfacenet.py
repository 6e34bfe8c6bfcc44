"""Notebook 02 — VarGFaceNet (Yan et al., "VarGFaceNet: An Efficient Variable Group
Convolutional Neural Network for Lightweight Face Recognition", ICCVW 2019).

Three experiments, each a set of pure functions the notebook calls and the tests check:

1. **Efficiency** (paper Sec. 3, Table 1): parameters, multiply-adds and FLOPs
   of IResNet-18/34/50, MobileFaceNet, VarGFaceNet and its depthwise variant (S = 1) at the
   published 112 px and at the profile's scale, and CPU latency measured in one run as ratios
   to IResNet-50. Two FLOP conventions are in use: VarGFaceNet's "1G FLOPs" counts a
   multiply-add as two FLOPs, insightface's IResNet "GFLOPs" are multiply-adds; every column
   here says which one it holds.
2. **Accuracy vs cost**: the same backbones trained with one recipe, the shared teacher's
   (Softmax pre-training for the profile's epochs, then its CosFace margin fine-tuned for half
   as many, :func:`~fkdlib.zoo.margin_spec`), on the benchmark's training data, so the
   comparison measures capacity, not convergence speed.
3. **Angular distillation** (Eq. 5-7: ``L = L_margin + α·L_a``, α = 7) from the shared
   IResNet-50 teacher (:func:`~fkdlib.zoo.teacher_spec`, trained by the same recipe and
   cached for notebooks 02-04), and **recursive distillation**
   (Sec. 3.3, Fig. 2): generation k + 1 starts from generation k's weights, generations 0, 1,
   2 as in the official results.

Choices of ours (not published): MobileFaceNet is compared "at similar cost" by giving it the
width whose multiply-adds at the profile's scale are closest to VarGFaceNet's
(:func:`cost_matched_width`): channel counts round to multiples of 8, so a common width
multiplier leaves a thin MobileFaceNet at a third of VarGFaceNet's cost, whereas the published
networks cost 0.44 and 0.51 GMACs. Distillation acts during the margin fine-tuning: generation 0
starts from VarGFaceNet's Softmax pre-training (the one its scratch row fine-tunes from), and
generations k >= 1 are fine-tuned from generation k - 1 for as many epochs as that fine-tuning
(:func:`recursive_epochs`). The paper also re-trains the teacher from its previous generation;
we keep the shared teacher fixed (re-training it would train the slowest network twice more).
A recursive generation k has trained for more epochs in all than generation 0, so it is also
compared with VarGFaceNet fine-tuned from the same pre-training for as many epochs
(:func:`matched_label`). Two premises gate the claims: the teacher must beat the
student trained from scratch (:data:`PREMISE_TEACHER`), and VarGFaceNet at the profile's width
must have at least :data:`MIN_GROUPS` groups in every stage for the S = 8 vs S = 1 claims
(:data:`PREMISE_GROUPS`).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure
from matplotlib.ticker import FormatStrFormatter, LogLocator, MaxNLocator, NullFormatter

from ..distill.angular import ANGULAR_WEIGHT
from ..errors import ConfigError
from ..evaluation import profile_model, project
from ..evaluation.complexity import ComplexityReport
from ..models import create_model
from ..profiles import Profile
from ..report import figures as figs
from ..report.claims import Claim, ClaimTest, Evidence, evaluate_claims
from ..report.evidence import face_tests
from ..report.references import reference_table
from ..evaluation.benchmark import (
    PROTOCOL_LABELS, Evaluation, FaceBenchmark, analysis_pool, evaluate_seeds,
    identity_sample_rows, lowest_reportable_far)
from ..evaluation.latency import measure_latency
from ..evaluation.projection import METHOD_NAMES
from ..models.layers import VARG_GROUP_SIZE
from ..zoo import (
    DEFAULT_CACHE_DIR, ModelSpec, TrainedModel, margin_spec, recipes, recursive_specs,
    teacher_spec, train_seeds)

Runs = Sequence[Evaluation]

TEACHER = "IResNet-50"
# The shared distillation teacher: an IResNet-50 too, trained for the profile's full epochs.
DISTILLATION_TEACHER = "Teacher (IResNet-50)"
STUDENT = "VarGFaceNet"
DEPTHWISE = "VarGFaceNet (S=1)"
MOBILE = "MobileFaceNet"
# Label -> registered model, all trained with one recipe (IResNet-50 is also the latency
# reference).
BACKBONES: dict[str, str] = {
    "IResNet-18": "iresnet18",
    "IResNet-34": "iresnet34",
    TEACHER: "iresnet50",
    MOBILE: "mobilefacenet",
    STUDENT: "vargfacenet",
    DEPTHWISE: "vargfacenet_dw",
}
GENERATIONS = 2
PUBLISHED_INPUT_SIZE = 112
PUBLISHED_EMBEDDING_SIZE = 512
# Widths tried for the cost-matched MobileFaceNet: multiples of 1/16, up to 4x the profile's.
WIDTH_STEP = 1 / 16
WIDTH_RANGE = 4.0
# The claims' premises: a teacher measurably better than the student trained from scratch
# (or distillation has nothing to pass on), and a VarGFaceNet whose every stage has at least
# two groups of S channels (the variable-group regime the paper studies; at a narrow width a
# stage of S channels is one ordinary convolution).
PREMISE_TEACHER = "premise:teacher-better"
PREMISE_GROUPS = "premise:variable-groups"
MIN_GROUPS = 2
LATENCY_BATCHES = (1, 32)
# TAR@FAR used where one operating point summarises the IJB-like list (claims, tables).
CLAIM_FAR = 1e-3
REPORT_FAR = 1e-2

# Our row -> (model, extra options, reference table, its row): the published networks whose
# sizes insightface's code and the VarGFaceNet paper give, with the paper's without-SE ablation.
PAPER_SIZE_ROWS: dict[str, tuple[str, dict, str, str]] = {
    "IResNet-18": ("iresnet18", {}, "insightface_model_sizes", "IResNet-18"),
    "IResNet-34": ("iresnet34", {}, "insightface_model_sizes", "IResNet-34"),
    TEACHER: ("iresnet50", {}, "insightface_model_sizes", "IResNet-50"),
    MOBILE: ("mobilefacenet", {}, "insightface_model_sizes", "MobileFaceNet"),
    STUDENT: ("vargfacenet", {}, "vargfacenet_size", "VarGFaceNet (with SE)"),
    "VarGFaceNet (without SE)": ("vargfacenet", {"use_se": False}, "vargfacenet_size",
                                 "VarGFaceNet (without SE)"),
}
# Generation k <-> the rows of the official results (reference table vargfacenet_official).
OFFICIAL_ROWS = ("from scratch", "recursive 1", "recursive 2")
OFFICIAL_METRICS = {"LFW": "lfw", "CFP-FP": "cfp_fp", "AgeDB-30": "agedb"}
OFFICIAL_TAR = "DeepGlint-light TPR@FPR=1e-8"

# One colour per model in every figure (Okabe-Ito; the distilled generations in darkening
# shades of the "ours" vermilion).
MODEL_COLORS = {"IResNet-18": "#56B4E9", "IResNet-34": "#0072B2", TEACHER: "#009E73",
                DISTILLATION_TEACHER: "#000000", MOBILE: "#E69F00", STUDENT: "#7F7F7F",
                DEPTHWISE: "#CC79A7"}
GENERATION_COLORS = ("#D55E00", "#9C4100", "#5E2700")

PARAMS_COL = "params (M)"
MACS_COL = "multiply-adds (M)"
FLOPS_COL = "FLOPs (M, 2 per multiply-add)"


def generation_label(generation: int) -> str:
    """Name of the angular-distilled VarGFaceNet of one recursive generation."""
    return f"{STUDENT} distilled, gen {generation}"


def matched_label(generation: int) -> str:
    """Name of VarGFaceNet trained from scratch for as many epochs in all as the distilled
    generation ``generation`` (generation 0's own and every earlier generation's)."""
    return f"{STUDENT} from scratch, as long as gen {generation}"


def model_color(name: str) -> str:
    """The colour of a backbone or distilled generation in this notebook's figures."""
    if name in MODEL_COLORS:
        return MODEL_COLORS[name]
    for k, color in enumerate(GENERATION_COLORS):
        if name == generation_label(k):
            return color
        if name == matched_label(k):
            return MODEL_COLORS[STUDENT]
    raise ConfigError(f"no colour for {name!r}; known: {list(MODEL_COLORS)} and "
                      f"{[generation_label(k) for k in range(len(GENERATION_COLORS))]}")


# ----------------------------------------------------------------------------- specs


@functools.lru_cache(maxsize=256)
def _cost(model: str, options: tuple[tuple[str, object], ...]) -> ComplexityReport:
    """:func:`profile_model`, memoised: a notebook run asks for the same counts many times."""
    return profile_model(model, **dict(options))


def model_cost(model: str, **options) -> ComplexityReport:
    """Parameters, multiply-adds and FLOPs of the registered ``model`` built with ``options``
    (counted on the meta device, remembered for the process)."""
    return _cost(model, tuple(sorted(options.items())))


def cost_matched_width(name: str, reference: str, input_size: int, width: float,
                       embedding_size: int) -> float:
    """Width of model ``name`` whose multiply-adds are closest to ``reference``'s at ``width``.

    Candidates are the multiples of :data:`WIDTH_STEP` up to ``WIDTH_RANGE * width``; ties go to
    the narrower one. Multiply-adds grow with the width (channel counts never shrink when it
    grows), so the search stops at the first candidate above the target.
    """
    target = model_cost(reference, input_size=input_size, width=width,
                        embedding_size=embedding_size).macs
    steps = max(1, int(round(WIDTH_RANGE * width / WIDTH_STEP)))
    best_width, best_gap = WIDTH_STEP, None
    for k in range(1, steps + 1):
        candidate = k * WIDTH_STEP
        macs = model_cost(name, input_size=input_size, width=candidate,
                          embedding_size=embedding_size).macs
        if best_gap is None or abs(macs - target) < best_gap:
            best_width, best_gap = candidate, abs(macs - target)
        if macs >= target:
            break
    return best_width


def _student_kwargs(bench: FaceBenchmark) -> dict:
    """Every student shares the teacher's embedding size (angular distillation compares the two
    embeddings directly, Eq. 5)."""
    return {"embedding_size": teacher_spec(bench).backbone_kwargs["embedding_size"]}


def recursive_epochs(profile: Profile) -> int:
    """Epochs of a recursive generation k >= 1: those of the margin fine-tuning
    (:func:`~fkdlib.zoo.recipes.fine_tune_schedule`), which generation 0 and every backbone
    train after their Softmax pre-training. A generation starts from a trained network, so it
    is fine-tuned as the margin is (the learning rate restarts at a tenth of the profile's and
    decays at the same fractions of training); the paper does not publish its per-generation
    schedule."""
    return recipes.fine_tune_schedule(profile.epochs)[1]


def backbone_specs(bench: FaceBenchmark) -> dict[str, ModelSpec]:
    """One spec per backbone of :data:`BACKBONES`, all with the teacher's head and recipe
    (:func:`~fkdlib.zoo.margin_spec`: each from its own Softmax pre-training).

    IResNet-50's spec equals the shared teacher's, at the teacher's width (same cache entry: the
    zoo key ignores names). MobileFaceNet gets the cost-matched width (module docstring); the
    others the profile's width.
    """
    teacher = teacher_spec(bench)
    specs: dict[str, ModelSpec] = {}
    for label, model in BACKBONES.items():
        kwargs = _student_kwargs(bench)
        if label == TEACHER:
            kwargs["width"] = teacher.backbone_kwargs["width"]
        elif label == MOBILE:
            profile = bench.profile
            kwargs["width"] = cost_matched_width(model, BACKBONES[STUDENT], profile.resolution,
                                                 profile.backbone_width,
                                                 kwargs["embedding_size"])
        specs[label] = margin_spec(bench, model, teacher.head, head_kwargs=teacher.head_kwargs,
                                   backbone_kwargs=kwargs, name=f"02_vargfacenet/{label}",
                                   pretrain_name=f"02_vargfacenet/{label} softmax pre-training")
    return specs


def distillation_specs(bench: FaceBenchmark, generations: int = GENERATIONS) -> list[ModelSpec]:
    """VarGFaceNet fine-tuned with the teacher's margin loss + 7 · angular distillation from the
    shared teacher (Eq. 7) from its Softmax pre-training (the scratch row's recipe with the
    distillation added), then ``generations`` recursive generations, each initialised from the
    previous student (:func:`fkdlib.zoo.recursive.recursive_specs`) and trained for
    :func:`recursive_epochs`."""
    scratch = backbone_specs(bench)[STUDENT]
    teacher = teacher_spec(bench)
    base = scratch.replace(
        name=f"02_vargfacenet/{STUDENT}-distilled", method="distill",
        method_kwargs={"teacher": teacher.to_dict(),
                       "losses": [{"name": "angular", "weight": ANGULAR_WEIGHT}],
                       "ce_weight": 1.0})
    specs = recursive_specs(base, generations)
    train = {**base.train, "epochs": recursive_epochs(bench.profile)}
    chained = [specs[0]]
    for spec in specs[1:]:
        chained.append(spec.replace(train=train, init_from=chained[-1]))
    return chained


def matched_specs(bench: FaceBenchmark, generations: Sequence[int] = (1,)
                  ) -> dict[str, ModelSpec]:
    """VarGFaceNet fine-tuned from its Softmax pre-training for as many epochs in all as each
    distilled generation of ``generations`` (generation 0's fine-tuning plus k times
    :func:`recursive_epochs`): the control that separates "recursion helps" from "more epochs
    help". Generation 1 is the one the claims test (each later one would add a longer
    control)."""
    scratch = backbone_specs(bench)[STUDENT]
    epochs = scratch.train["epochs"]
    return {matched_label(k): scratch.replace(
                train={**scratch.train,
                       "epochs": epochs + k * recursive_epochs(bench.profile)},
                name=f"02_vargfacenet/{matched_label(k)}")
            for k in generations}


def specs(bench: FaceBenchmark, generations: int = GENERATIONS) -> dict[str, ModelSpec]:
    """Every model of the notebook: the shared teacher as :data:`DISTILLATION_TEACHER`, the
    backbones of :func:`backbone_specs`, the distilled generations of
    :func:`distillation_specs` (keyed by :func:`generation_label`) and the matched scratch
    control of :func:`matched_specs`."""
    return {DISTILLATION_TEACHER: teacher_spec(bench), **backbone_specs(bench),
            **{generation_label(k): spec
               for k, spec in enumerate(distillation_specs(bench, generations))},
            **matched_specs(bench)}


def train(bench: FaceBenchmark, device: str | torch.device = "cpu",
          cache_dir=DEFAULT_CACHE_DIR, names: Sequence[str] | None = None,
          log=print, seeds: int | None = None) -> dict[str, list[TrainedModel]]:
    """Train (or load from the model zoo) the models of :func:`specs` (or those ``names``),
    once per training seed (the profile's ``seeds`` unless given): ``{name: [seed 0, ...]}``."""
    return train_seeds(specs(bench), seeds or bench.profile.seeds, cache_dir=cache_dir,
                       device=device, log=log, names=names)


# every protocol of the benchmark for every run of every model: evaluate(models, bench, device)
evaluate = evaluate_seeds


def stage_groups(bench: FaceBenchmark) -> list[int]:
    """Groups of S channels in each stage of VarGFaceNet at the profile's width (the stem's,
    then the three stages'): 1 means an ordinary convolution, not a variable group one."""
    spec = backbone_specs(bench)[STUDENT]
    model = create_model(spec.backbone, **spec.backbone_kwargs)
    return [channels // VARG_GROUP_SIZE for channels in model.stage_channels]


# ----------------------------------------------------------------------------- efficiency


def published_options() -> dict[str, dict]:
    """Constructor options of the published networks (112 px, width 1, 512-d)."""
    return {label: {"input_size": PUBLISHED_INPUT_SIZE, "width": 1.0,
                    "embedding_size": PUBLISHED_EMBEDDING_SIZE} for label in BACKBONES}


def profile_options(bench: FaceBenchmark) -> dict[str, dict]:
    """Constructor options of the backbones as trained at the profile's scale."""
    return {label: dict(spec.backbone_kwargs) for label, spec in backbone_specs(bench).items()}


def complexity_table(options: Mapping[str, Mapping]) -> pd.DataFrame:
    """Parameters, multiply-adds and FLOPs (2 per multiply-add) of each backbone.

    Args:
        options: label -> constructor options (with ``input_size``) of the model
            ``BACKBONES[label]``; e.g. :func:`published_options` or :func:`profile_options`.
    """
    rows = []
    for label, kwargs in options.items():
        if label not in BACKBONES:
            raise ConfigError(f"unknown backbone {label!r}; expected one of {list(BACKBONES)}")
        report = model_cost(BACKBONES[label], **kwargs)
        rows.append({"backbone": label, "input": f"{kwargs['input_size']} px",
                     "width": kwargs.get("width", 1.0), PARAMS_COL: report.params / 1e6,
                     MACS_COL: report.macs / 1e6, FLOPS_COL: report.flops / 1e6})
    return pd.DataFrame(rows)


def paper_size_comparison() -> pd.DataFrame:
    """Our counts of the published networks (112 px, 512-d) beside the published ones.

    Multiply-adds and FLOPs are in G. insightface's IResNet/MobileFaceNet "GFLOPs" are
    multiply-adds (stored as such); VarGFaceNet's "1.02 GFLOPs" counts two per multiply-add.
    """
    tables = {name: reference_table(name).set_index("method")
              for name in {row[2] for row in PAPER_SIZE_ROWS.values()}}
    rows = []
    for label, (model, extra, table, method) in PAPER_SIZE_ROWS.items():
        report = model_cost(model, input_size=PUBLISHED_INPUT_SIZE, width=1.0,
                            embedding_size=PUBLISHED_EMBEDDING_SIZE, **extra)
        paper = tables[table].loc[method]
        rows.append({
            "backbone": label,
            "params (M) (ours)": report.params_m, "params (M) (paper)": paper.get("params"),
            "multiply-adds (G) (ours)": report.gmacs,
            "multiply-adds (G) (paper)": paper.get("MACs"),
            "FLOPs (G, 2 per multiply-add) (ours)": report.gflops,
            "FLOPs (G, 2 per multiply-add) (paper)": paper.get("FLOPs", np.nan),
        })
    return pd.DataFrame(rows)


def latency_plan(profile: Profile) -> tuple[tuple[int, ...], int]:
    """Batch sizes and timed rounds for :func:`efficiency_table`: batch 1 and 32, median of 3,
    where claims are assessed; batch 1 and 4, one round, on the smoke run (batch 32 of
    IResNet-50 at 112 px takes seconds per pass on a CPU)."""
    if profile.assess_claims:
        return LATENCY_BATCHES, 3
    return (1, 4), 1


def efficiency_table(bench: FaceBenchmark, repeats: int = 3,
                     batch_sizes: Sequence[int] = LATENCY_BATCHES) -> pd.DataFrame:
    """Size, cost and latency ratio to IResNet-50 of every backbone, at the published 112 px
    (width 1, 512-d) and at the profile's scale (the trained networks' options)."""
    frames = []
    for setting, options in (("published (112 px)", published_options()),
                             (f"profile ({bench.profile.resolution} px)", profile_options(bench))):
        sizes = complexity_table(options)
        models = {label: create_model(BACKBONES[label], **kwargs)
                  for label, kwargs in options.items()}
        latency = measure_latency(models, next(iter(options.values()))["input_size"],
                                  batch_sizes, repeats, reference=TEACHER)
        wide = latency.pivot(index="backbone", columns="batch")
        for batch in batch_sizes:
            sizes[f"latency b={batch} (ms)"] = sizes.backbone.map(
                wide[("latency (ms)", batch)])
            sizes[f"latency b={batch} / {TEACHER}"] = sizes.backbone.map(
                wide[(f"ratio to {TEACHER}", batch)])
        sizes.insert(0, "setting", setting)
        frames.append(sizes)
    return pd.concat(frames, ignore_index=True)


# ----------------------------------------------------------------------------- accuracy


def accuracy_vs_cost(evaluations: Mapping[str, Evaluation],
                     complexity: pd.DataFrame) -> pd.DataFrame:
    """One row per evaluated model with its cost (from ``complexity``, by backbone; a distilled
    VarGFaceNet costs what VarGFaceNet costs, the distillation teacher what IResNet-50 costs)
    and its accuracies."""
    cost = complexity.set_index("backbone")
    rows = []
    for name, ev in evaluations.items():
        backbone = (name if name in cost.index
                    else TEACHER if name == DISTILLATION_TEACHER else STUDENT)
        summary = ev.summary()
        rows.append({"model": name, "backbone": backbone,
                     PARAMS_COL: cost.loc[backbone, PARAMS_COL],
                     FLOPS_COL: cost.loc[backbone, FLOPS_COL],
                     "LFW-like acc": summary.get("LFW-like acc"),
                     "CFP-FP-like acc": summary.get("CFP-FP-like acc"),
                     f"IJB-like TAR@{CLAIM_FAR:g}": ev.tar["ijb"][CLAIM_FAR]
                     if "ijb" in ev.tar else np.nan})
    return pd.DataFrame(rows)


def teacher_headroom(evaluations: Mapping[str, Evaluation],
                     teacher: str = DISTILLATION_TEACHER,
                     students: Sequence[str] = (STUDENT,), protocol: str = "lfw") -> pd.DataFrame:
    """Teacher minus student 10-fold accuracy (points) on ``protocol`` (whether it is
    measurably positive is the claim :data:`PREMISE_TEACHER`)."""
    teacher_acc = 100 * evaluations[teacher].verification[protocol].accuracy_mean
    rows = []
    for student in students:
        student_acc = 100 * evaluations[student].verification[protocol].accuracy_mean
        rows.append({"student": student, f"teacher {PROTOCOL_LABELS[protocol]} acc": teacher_acc,
                     f"student {PROTOCOL_LABELS[protocol]} acc": student_acc,
                     "headroom (points)": teacher_acc - student_acc})
    return pd.DataFrame(rows)


def teacher_agreement(evaluations: Mapping[str, Evaluation],
                      teacher: str = DISTILLATION_TEACHER,
                      pool: str | None = None) -> pd.Series:
    """Mean cosine between each model's and the teacher's embedding of the same test image
    (of ``pool``; default :func:`~fkdlib.evaluation.benchmark.analysis_pool`).

    Angular distillation pulls the student's embedding direction onto the teacher's (Eq. 5),
    so a distilled student scores near 1 and an independently trained one near 0.
    """
    pool = pool or analysis_pool(evaluations[teacher])
    reference = evaluations[teacher].embeddings[pool]
    values = {}
    for name, ev in evaluations.items():
        emb = ev.embeddings[pool]
        values[name] = (float(np.einsum("ij,ij->i", emb, reference).mean())
                        if emb.shape == reference.shape else np.nan)
    return pd.Series(values, name=f"cosine to {teacher}")


def generation_table(evaluations: Mapping[str, Evaluation],
                     generations: int = GENERATIONS) -> pd.DataFrame:
    """Teacher, the ArcFace-only student and each distilled generation: accuracies (%),
    IJB-like TAR and the mean cosine to the teacher's embedding."""
    generation_of: dict[str, int | None] = {DISTILLATION_TEACHER: None, STUDENT: None}
    generation_of.update({generation_label(k): k for k in range(generations + 1)})
    agreement = teacher_agreement({n: evaluations[n] for n in generation_of})
    rows = []
    for name, generation in generation_of.items():
        ev = evaluations[name]
        row = {"model": name, "generation": generation}
        for key, result in ev.verification.items():
            row[f"{PROTOCOL_LABELS.get(key, key)} acc"] = 100 * result.accuracy_mean
        for far in (CLAIM_FAR, REPORT_FAR):
            row[f"IJB-like TAR@{far:g}"] = ev.tar["ijb"][far] if "ijb" in ev.tar else np.nan
        row[agreement.name] = agreement[name]
        rows.append(row)
    table = pd.DataFrame(rows)
    table["generation"] = table["generation"].astype("Int64")
    return table


def official_comparison(evaluations: Mapping[str, Evaluation],
                        generations: int = GENERATIONS) -> pd.DataFrame:
    """Our distilled generations beside the official per-generation results (generation 0 =
    "from scratch", k = "recursive k"; LFW / CFP-FP / AgeDB-30 in %, DeepGlint-light TPR at
    FPR 1e-8 beside our IJB-like TAR at the lowest FAR our list reports, 1e-3)."""
    official = reference_table("vargfacenet_official").set_index("method")
    rows = []
    for k in range(generations + 1):
        ev = evaluations[generation_label(k)]
        row = {"generation": k}
        paper = official.loc[OFFICIAL_ROWS[k]] if k < len(OFFICIAL_ROWS) else None
        for metric, key in OFFICIAL_METRICS.items():
            row[f"{PROTOCOL_LABELS[key]} (ours)"] = (100 * ev.verification[key].accuracy_mean
                                                     if key in ev.verification else np.nan)
            row[f"{metric} (paper)"] = paper[metric] if paper is not None else np.nan
        row[f"IJB-like TAR@{CLAIM_FAR:g} (ours)"] = ev.tar.get("ijb", {}).get(CLAIM_FAR, np.nan)
        row[f"{OFFICIAL_TAR} (paper)"] = paper[OFFICIAL_TAR] if paper is not None else np.nan
        rows.append(row)
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- claims


def claims() -> list[Claim]:
    """The paper's claims, declared once (what each compares, on which protocol, how)."""
    table = "VarGFaceNet (Yan et al., ICCVW 2019), Sec. 3 and Table 1"
    cost = "VarGFaceNet (Yan et al., ICCVW 2019), Sec. 4"
    recursive = "VarGFaceNet (Yan et al., ICCVW 2019), Sec. 3.4, Fig. 2 and the official results"
    distill = "VarGFaceNet (Yan et al., ICCVW 2019), Sec. 3.3, Eq. 7"
    depthwise = "VarGFaceNet (Yan et al., ICCVW 2019), Sec. 3.1, Eq. 1"
    tar, gen0, gen1 = f"tar@{CLAIM_FAR:g}", generation_label(0), generation_label(1)
    teacher_first, groups_first = (PREMISE_TEACHER,), (PREMISE_GROUPS,)
    return [
        Claim(PREMISE_TEACHER, "Premise: the IResNet-50 teacher beats VarGFaceNet trained from "
              "scratch (LFW-like accuracy); otherwise distillation has nothing to pass on",
              distill, "accuracy", "pairs:accuracy", (DISTILLATION_TEACHER, STUDENT), "lfw"),
        Claim(PREMISE_GROUPS, f"Premise: at the profile's width every stage of VarGFaceNet has "
              f"at least {MIN_GROUPS} groups of S = {VARG_GROUP_SIZE} channels (the "
              "variable-group regime the paper studies)", depthwise,
              "fewest groups in a stage, exact count", "groups", (STUDENT,),
              bound=MIN_GROUPS - 0.5),
        Claim("VarGFaceNet<IR50:params", "VarGFaceNet has fewer parameters than IResNet-50",
              table, "parameters (M), exact count", f"exact:{PARAMS_COL}", (STUDENT, TEACHER),
              direction="less"),
        Claim("VarGFaceNet<IR50:FLOPs", "VarGFaceNet needs fewer FLOPs than IResNet-50", table,
              "multiply-adds (M), exact count", f"exact:{MACS_COL}", (STUDENT, TEACHER),
              direction="less"),
        Claim("VarGFaceNet>MobileFaceNet:LFW", "at similar cost, VarGFaceNet's gap to "
              "IResNet-50 is smaller than MobileFaceNet's (LFW-like accuracy)", cost,
              "accuracy", "pairs:accuracy", (STUDENT, MOBILE), "lfw"),
        Claim("VarGFaceNet>MobileFaceNet:TAR", "at similar cost, VarGFaceNet's gap to "
              f"IResNet-50 is smaller than MobileFaceNet's (IJB-like TAR@FAR={CLAIM_FAR:g})",
              cost, tar, f"pairs:{tar}", (STUDENT, MOBILE), "ijb"),
        Claim("distilled>scratch:LFW", "angular distillation beats training VarGFaceNet from "
              "scratch (LFW-like accuracy)", distill, "accuracy", "pairs:accuracy",
              (gen0, STUDENT), "lfw", requires=teacher_first),
        Claim("distilled>scratch:TAR", "angular distillation beats training VarGFaceNet from "
              f"scratch (IJB-like TAR@FAR={CLAIM_FAR:g})", distill, tar, f"pairs:{tar}",
              (gen0, STUDENT), "ijb", requires=teacher_first),
        Claim("gen1>gen0:LFW", "one recursive generation improves on generation 0 (LFW-like "
              "accuracy)", recursive, "accuracy", "pairs:accuracy", (gen1, gen0), "lfw",
              paper_effect=_official_gain("LFW"), requires=teacher_first),
        Claim("gen1>gen0:TAR", "one recursive generation improves on generation 0 (IJB-like "
              f"TAR@FAR={CLAIM_FAR:g})", recursive, tar, f"pairs:{tar}", (gen1, gen0), "ijb",
              requires=teacher_first),
        Claim("gen1>matched:LFW", "one recursive generation beats VarGFaceNet trained from "
              "scratch for as many epochs in all (LFW-like accuracy): recursion, not the extra "
              "epochs", recursive, "accuracy", "pairs:accuracy", (gen1, matched_label(1)),
              "lfw", requires=teacher_first),
        Claim("gen1>matched:TAR", "one recursive generation beats VarGFaceNet trained from "
              f"scratch for as many epochs in all (IJB-like TAR@FAR={CLAIM_FAR:g})", recursive,
              tar, f"pairs:{tar}", (gen1, matched_label(1)), "ijb", requires=teacher_first),
        Claim("depthwise<VarGFaceNet:FLOPs", "the depthwise version (S = 1) needs fewer FLOPs "
              "than VarGFaceNet (S = 8)", depthwise, "multiply-adds (M), exact count",
              f"exact:{MACS_COL}", (DEPTHWISE, STUDENT), direction="less"),
        Claim("depthwise<VarGFaceNet:LFW", "the depthwise version (S = 1) is less accurate "
              "than VarGFaceNet (S = 8)", depthwise, "accuracy", "pairs:accuracy",
              (DEPTHWISE, STUDENT), "lfw", direction="less", requires=groups_first),
    ]


def _official_gain(metric: str) -> float:
    """Generation 1 minus generation 0 in the official results, as a fraction."""
    official = reference_table("vargfacenet_official").set_index("method")
    return float(official.loc[OFFICIAL_ROWS[1], metric]
                 - official.loc[OFFICIAL_ROWS[0], metric]) / 100


def claim_tests(evaluations: Mapping[str, Runs | Evaluation], complexity: pd.DataFrame,
                n_boot: int, seed: int = 0,
                groups: Sequence[int] = ()) -> dict[str, ClaimTest]:
    """The face-benchmark tests (seeds and test identities resampled) plus
    ``"exact:<column>"``: the difference of two backbones' counts in ``complexity`` (e.g.
    :func:`complexity_table` of :func:`profile_options`), exact, so its interval is the point
    itself; and ``"groups"``: the fewest groups in a stage of VarGFaceNet, ``groups`` being
    :func:`stage_groups`."""
    cost = complexity.set_index("backbone")

    def exact(claim: Claim) -> Evidence:
        a, b = claim.compares
        column = claim.test_argument
        return Evidence.exact(float(cost.loc[a, column] - cost.loc[b, column]),
                              f"{a} − {b}, {column} at {cost.loc[a, 'input']}")

    def fewest_groups(claim: Claim) -> Evidence:
        if not groups:
            raise ConfigError(f"claim {claim.id!r} needs VarGFaceNet's groups per stage "
                              "(stage_groups(bench))")
        return Evidence.exact(float(min(groups)), f"groups of S = {VARG_GROUP_SIZE} channels "
                              f"per stage: {list(groups)}")

    return {**face_tests(evaluations, n_boot, seed), "exact": exact, "groups": fewest_groups}


def check_claims(evaluations: Mapping[str, Runs | Evaluation], complexity: pd.DataFrame,
                 n_boot: int, assess: bool, seed: int = 0, groups: Sequence[int] = (),
                 unhealthy: Mapping[str, str] | None = None) -> pd.DataFrame:
    """Every claim of :func:`claims` checked by its test (:func:`claim_tests`); claims on a
    model of ``unhealthy`` or whose premise fails are not assessed."""
    return evaluate_claims(claims(), claim_tests(evaluations, complexity, n_boot, seed, groups),
                           assess, unhealthy)


# ----------------------------------------------------------------------------- figures


def efficiency_figure(efficiency: pd.DataFrame, batch_sizes: Sequence[int]) -> Figure:
    """Multiply-adds and CPU latency at each batch size as ratios to IResNet-50, grouped bars
    per backbone, one panel per setting of ``efficiency`` (:func:`efficiency_table`: the
    published 112 px networks, then the profile's), a shared y axis and a line at 1; the
    measured counterpart of the paper's cost comparison (Sec. 3, Table 1)."""
    settings = list(dict.fromkeys(efficiency.setting))
    fig, axes = plt.subplots(1, len(settings), figsize=(6 * len(settings), 4), sharey=True,
                             squeeze=False, layout="constrained")
    for ax, setting in zip(axes[0], settings):
        rows = efficiency[efficiency.setting == setting]
        x = np.arange(len(rows))
        reference = rows.loc[rows.backbone == TEACHER, MACS_COL].item()
        bars = {"multiply-adds": rows[MACS_COL] / reference}
        bars.update({f"latency, batch {b}": rows[f"latency b={b} / {TEACHER}"]
                     for b in batch_sizes})
        width = 0.8 / len(bars)
        for i, (label, values) in enumerate(bars.items()):
            ax.bar(x + (i - (len(bars) - 1) / 2) * width, values, width, label=label,
                   color=figs.PALETTE[i])
        ax.axhline(1.0, color="0.3", lw=0.8)
        ax.set_xticks(x, rows.backbone, rotation=30, ha="right")
        ax.set_title(setting)
    axes[0, 0].set_ylabel(f"ratio to {TEACHER}")
    axes[0, 0].legend()
    return fig


def training_curves_figure(histories: Mapping[str, pd.DataFrame],
                           loss: str = "training loss (CosFace; nats, epoch mean)") -> Figure:
    """Training loss per epoch of every model of ``histories`` (model -> its history with
    ``epoch`` and ``loss``), each in its :func:`model_color`, one legend outside the axes (it
    lists up to seven models); not a figure of the paper (it shows the shared recipe
    converging for every backbone). The loss is on a log axis with 1-2-5 labels when it
    spans a decade or more, else on a linear one
    (:func:`~fkdlib.report.figures.readable_y_scale`): a few epochs of a margin loss often
    fall by less than a factor of two, where a log axis labels one or two ticks."""
    fig, ax = plt.subplots(figsize=(7.5, 4), layout="constrained")
    for name, history in histories.items():
        ax.plot(history.epoch, history.loss, label=name, color=model_color(name), marker="o",
                ms=3)
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    figs.readable_y_scale(ax, np.concatenate([h.loss.to_numpy(dtype=float)
                                              for h in histories.values()]), loss)
    fig.legend(loc="outside right upper")
    return fig


def generations_figure(generations: pd.DataFrame, official: pd.DataFrame,
                       count: int = GENERATIONS, source: str = "SynthFace") -> Figure:
    """Accuracy over recursive generations: ours on ``source`` (left, titled with it: the
    benchmark's ``source``; :func:`generation_table`: from scratch, then generations 0 to
    ``count``, the teacher dashed) beside the official results (right;
    :func:`official_comparison`), one colour per protocol; mirrors the paper's recursive
    knowledge distillation (Sec. 3.3, Fig. 2) and its official per-generation results. The
    panels keep their own y axes: different data and scales, compared by trend."""
    protocols = (("LFW-like acc", "LFW"), ("CFP-FP-like acc", "CFP-FP"),
                 ("AgeDB-like acc", "AgeDB-30"))
    labels = ["scratch"] + [f"gen {k}" for k in range(count + 1)]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), layout="constrained")
    ours = generations.set_index("model")
    for i, (column, paper_column) in enumerate(protocols):
        if column not in ours:
            continue
        values = [ours.loc[STUDENT, column]] + [ours.loc[generation_label(k), column]
                                                for k in range(count + 1)]
        color = figs.PALETTE[i]
        axes[0].plot(labels, values, marker="o", color=color, label=column.replace(" acc", ""))
        axes[0].axhline(ours.loc[DISTILLATION_TEACHER, column], color=color, ls="--", lw=1)
        axes[1].plot([f"gen {k}" for k in official.generation],
                     official[f"{paper_column} (paper)"], marker="o", color=color,
                     label=paper_column)
    axes[0].set(title=f"ours ({source}); dashed: teacher", ylabel="10-fold accuracy (%)")
    axes[1].set(title="official results (MS1M)", ylabel="accuracy (%)")
    axes[0].legend()
    axes[1].legend()
    return fig


def accuracy_vs_cost_figure(cost: pd.DataFrame, count: int = GENERATIONS) -> Figure:
    """Each trained model's accuracies (columns of :func:`accuracy_vs_cost` ending in ``acc``
    or starting with ``IJB``) against its FLOPs (top row) and parameters (bottom row), log x,
    one colour per model (:func:`model_color`) and one legend, the panels of a metric sharing
    their y axis, an arrow from VarGFaceNet from scratch to its distilled generation 0 (later
    generations and the matched scratch controls are left out: they cost the same); the
    paper's accuracy-for-cost argument
    (Sec. 4)."""
    metrics = [c for c in cost.columns if (c.endswith("acc") or c.startswith("IJB"))
               and cost[c].notna().any()]
    # later generations and the matched scratch controls cost what VarGFaceNet costs
    later = [label(k) for k in range(1, count + 1) for label in (generation_label, matched_label)]
    shown = cost[~cost.model.isin(later)].set_index("model")
    fig, axes = plt.subplots(2, len(metrics), figsize=(4.2 * len(metrics), 7.5), sharey="col",
                             squeeze=False, layout="constrained")
    for row, xcol in enumerate([FLOPS_COL, PARAMS_COL]):
        for col, metric in enumerate(metrics):
            ax = axes[row, col]
            for name, r in shown.iterrows():
                ax.scatter(r[xcol], r[metric], color=model_color(name), s=45, zorder=3,
                           label=name)
            if STUDENT in shown.index and generation_label(0) in shown.index:
                start, end = shown.loc[STUDENT], shown.loc[generation_label(0)]
                ax.annotate("", (end[xcol], end[metric]), (start[xcol], start[metric]),
                            arrowprops={"arrowstyle": "->", "color": "0.4"})
            ax.set(xscale="log", xlabel=xcol, ylabel=metric)
            ax.xaxis.set_major_locator(LogLocator(subs=(1, 2, 5)))
            ax.xaxis.set_major_formatter(FormatStrFormatter("%g"))
            ax.xaxis.set_minor_formatter(NullFormatter())
    handles, names = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, names, loc="outside lower center", ncol=4)
    return fig


def similarity_figure(evaluations: Mapping[str, Evaluation], models: Mapping[str, str],
                      protocol: str = "ijb") -> Figure:
    """Positive- and negative-pair cosine similarity densities on the ``protocol`` list, one
    panel per model of ``models`` (panel title -> model; the notebook's: the teacher,
    VarGFaceNet from scratch and its distilled generation 0), on shared axes ([-1, 1] and a
    log density axis: :func:`~fkdlib.report.figures.similarity_grid`), each in its
    :func:`model_color`, one legend. Not a figure of the paper: it shows what angular
    distillation (Eq. 5) does to the student's similarities."""
    return figs.similarity_grid(
        {label: {label: (evaluations[name].positives(protocol),
                         evaluations[name].negatives(protocol))}
         for label, name in models.items()},
        panel_size=(13 / 3, 3.8), value_range=(-1, 1),
        colors={label: model_color(name) for label, name in models.items()})


def roc_figure(evaluations: Mapping[str, Evaluation], models: Sequence[str] | None = None,
               protocol: str = "ijb") -> Figure:
    """ROC on the ``protocol`` list of ``models`` (default: both teachers, MobileFaceNet,
    VarGFaceNet from scratch, its depthwise version and every distilled generation), each in
    its :func:`model_color`, FAR from the lowest the list reports; the analogue of the
    verification results the paper reports at low FAR (DeepGlint-light TPR at FPR 1e-8)."""
    if models is None:
        models = [DISTILLATION_TEACHER, TEACHER, MOBILE, STUDENT, DEPTHWISE]
        models += [generation_label(k) for k in range(GENERATIONS + 1)]
    return figs.roc_figure({name: evaluations[name].roc(protocol) for name in models},
                           figsize=(6.5, 4.5), min_far=lowest_reportable_far(
                               evaluations[models[0]], protocol),
                           colors={name: model_color(name) for name in models},
                           legend={"loc": "upper left", "fontsize": 8})


def projection_figure(evaluations: Mapping[str, Evaluation], metadata: pd.DataFrame,
                      models: Mapping[str, str], identities: int = 20,
                      max_points: int | None = None, seed: int = 0,
                      method: str = "tsne") -> Figure:
    """t-SNE (or another ``method`` of :func:`~fkdlib.evaluation.project`) of the test
    embeddings of ``identities`` test identities (drawn with ``seed``,
    :func:`~fkdlib.evaluation.benchmark.identity_sample_rows`, one colour each), one panel per
    model of ``models`` (label -> model, as for :func:`similarity_figure`), one legend when
    there are at most 12 identities. Not a figure of the paper."""
    rows = identity_sample_rows(metadata, identities, max_points, seed)
    labels = metadata["identity"].to_numpy()[rows]
    points = {f"{label} · {METHOD_NAMES[method]}":
              (project(evaluations[name].embeddings["test"][rows], method=method,
                       random_state=seed), labels)
              for label, name in models.items()}
    return figs.projection_grid(points, panel_size=(13 / 3, 4.6), legend="identity")


__all__ = ["BACKBONES", "DEPTHWISE", "DISTILLATION_TEACHER", "GENERATIONS",
           "MIN_GROUPS", "MOBILE", "PREMISE_GROUPS", "PREMISE_TEACHER",
           "STUDENT", "TEACHER", "matched_label", "matched_specs",
           "stage_groups",
           "accuracy_vs_cost", "accuracy_vs_cost_figure", "backbone_specs",
           "check_claims", "claim_tests", "claims", "complexity_table", "cost_matched_width",
           "distillation_specs", "efficiency_figure", "efficiency_table", "evaluate",
           "generation_label", "generation_table", "generations_figure", "latency_plan",
           "model_color", "model_cost", "official_comparison", "paper_size_comparison",
           "profile_options", "projection_figure", "published_options", "recursive_epochs",
           "roc_figure", "similarity_figure", "specs", "teacher_agreement", "teacher_headroom",
           "train", "training_curves_figure"]
