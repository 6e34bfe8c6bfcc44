"""Notebook 03 — SRRL: knowledge distillation via softmax regression representation learning
(Yang, Martinez, Bulat & Tzimiropoulos, ICLR 2021; thesis ch. 4).

One frozen teacher and one small student. The student is trained alone, with the usual
distillation baselines (KD, FitNet, AT, RKD, PKT, RepDistiller's weights) and with SRRL's two
losses on its penultimate feature ``h_S`` (thesis Eq. 4.3, 4.7, 4.8):
``L = L_CE + α·‖h_T − c(h_S)‖² + β·‖W_T h_T − W_T c(h_S)‖²`` with ``α = β = 1``.

Two tasks share every function here:

- **face** (``data="synthface"``): the shared IResNet-50 teacher
  (:func:`~fkdlib.zoo.teacher_spec`) and an IResNet-18 student at half its width with the
  teacher's margin head, both trained by the margin recipe (:func:`~fkdlib.zoo.margin_spec`:
  Softmax pre-training, then the margin fine-tuned; the students share one pre-training per
  seed and every distillation acts during the fine-tuning), on the face benchmark
  (verification, TAR at FAR, identification with distractors): the analogue of thesis Tables
  4.12 / 4.13, plus the unlabeled-data extension (§4.2.2, Table 4.19) with SynthFace identities
  disjoint from the labeled ones. On real faces (``"rec:DIR"``, ``"folder:DIR"``) the same rows
  train and are evaluated on the protocols the data provides; the unlabeled row and the
  representation analyses (which need unseen images of the training identities,
  :data:`REPRESENTATION_UNAVAILABLE`) are left out and their claims reported as not assessed.
- **cifar** (``data="cifar100:/path"`` or ``"cifar10:/path"``): WRN teacher and student with a
  linear softmax classifier on CIFAR (thesis Tables 4.2–4.5; WRN-40-4 → WRN-16-4 at the paper
  profile). The trainer's in-memory path flips images but applies no pad-and-crop
  augmentation, unlike the thesis's CIFAR recipe.

The ablations (thesis Tables 4.2–4.5) are rows of the same study: the distillation position
(the last feature vs earlier stages vs several), the form of L_SR (L2 / CE / KL), the
teacher–student KL and the cross-entropy with labels on images of training classes, the L2
distance between ``h_T`` and ``h_S`` and the NMI of k-means clusters of the test features.

Every network is trained once per training seed (the profile's ``seeds``,
:func:`~fkdlib.zoo.train_seeds`; the teacher of seed ``s`` distils the students of seed ``s``),
on both tasks. Tables give the mean over the seeds, figures the first seed. Every claim's
interval is a :func:`~fkdlib.evaluation.uncertainty.hierarchical_bootstrap` that resamples the
seeds and the claim's test units (:func:`claim_tests` says which units and why), and every
claim rests on the premise :data:`PREMISE` that the teacher beats the student trained alone.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure
from threadpoolctl import threadpool_limits

from ..data import build_dataset, parse_data_arg
from ..distill import AT_STAGES, FITNET_WEIGHT, KD_CE_WEIGHT, KD_WEIGHT, PKT_WEIGHT, RKD_WEIGHT
from ..distill import AT_WEIGHT as AT_LOSS_WEIGHT
from ..errors import ConfigError, DataUnavailable
from ..evaluation import ClusterAnalysis, available_targets, cluster_quality, project
from ..evaluation.benchmark import (
    Evaluation, FaceBenchmark, evaluate_seeds, face_benchmark, identity_sample_rows,
    lowest_reportable_far, pool_embeddings, seed_mean, unavailable_message)
from ..evaluation.classification import (
    ClassificationEvaluation, fitted_l2, label_cross_entropy, model_outputs, teacher_kl, unit_rows)
from ..evaluation.clustering import _ResampledNMI
from ..evaluation.health import model_health
from ..evaluation.similarity import BootstrapResult, mean_positive_similarity
from ..evaluation.uncertainty import hierarchical_bootstrap
from ..profiles import Profile, get_profile
from ..report import figures as figs
from ..report.claims import Claim, ClaimTest, Evidence, evaluate_claims, rival
from ..report.references import load_reference
from ..zoo import (
    DEFAULT_CACHE_DIR, ModelSpec, TrainedModel, margin_spec, teacher_spec, train_seeds)

NOTEBOOK = "03_srrl"
FACE, CIFAR = "face", "cifar"

# --- the face study ------------------------------------------------------------------------
# The thesis's face student is MobileFaceNet (Table 4.11; its unlabeled-data study, Table 4.19,
# a ResNet-18). At the default profile (32 px, width 0.125) MobileFaceNet does not fit the
# training identities (measured: 54.5% training top-1 after the Softmax pre-training, 64.2%
# after the CosFace fine-tuning), so every claim on it would be "not assessed" by the
# training-health gate; IResNet-18 at the same width fits 93-94%.
STUDENT_BACKBONE = "iresnet18"
STUDENT_PRETRAIN_NAME = f"{NOTEBOOK}/face/student softmax pre-training"
# Fraction of the teacher's epochs given to each student, per profile (1 where not listed):
# on faces, of the teacher's margin fine-tuning (the Softmax pre-training, shared by every
# student, is as long as the teacher's); on CIFAR, of the teacher's whole training. Fifteen
# students per training seed run on two CPU cores at the default profile, so there every
# face student is distilled for 40% of the teacher's fine-tuning epochs (5 of 12): the same
# for every row, so rows compare. Whether that is enough to converge is what the
# training-health table shows (a claim on a row failing its gate is not assessed).
STUDENT_EPOCH_FRACTION = {"default": 0.4}
# New images of each training identity (never trained on) for the teacher–student KL and the
# cross-entropy with labels (Table 4.3), and for fitting the map behind the L2 distance.
HELDOUT_IMAGES_PER_IDENTITY = 4
# Test identities (all their images) whose features k-means clusters for the NMI of Table 4.5
# on faces: a cluster per identity over all 1,000 test identities of the default profile
# would cost about a minute per row and seed; 200 (1,800 images) cost about a second and are
# the sample cluster_quality analyses too. Fewer identities in the test pool: all of them.
NMI_IDENTITIES = 200

# --- the CIFAR study -----------------------------------------------------------------------
# (teacher, student) WRN depth and widen factor: the thesis pair at the paper profile (Table
# 4.1/4.2), a pair 2x narrower and shallower on CPU profiles.
CIFAR_NETWORKS = {"paper": ({"depth": 40, "widen": 4}, {"depth": 16, "widen": 4})}
CIFAR_CPU_NETWORKS = ({"depth": 16, "widen": 2}, {"depth": 10, "widen": 1})
# RepDistiller's recipe used by the thesis (§4.5.1): SGD 0.9, wd 5e-4, lr 0.05, batch 64,
# 240 epochs, decay 0.1 at epochs 150, 180, 210, no gradient clipping.
CIFAR_MILESTONES = [150 / 240, 180 / 240, 210 / 240]
CIFAR_PAPER_RECIPE = {"epochs": 240, "batch_size": 64, "lr": 0.05, "weight_decay": 5e-4,
                      "milestones": CIFAR_MILESTONES, "grad_clip": None}
CIFAR_LR = 0.05
# Training images on which the L2 distance's linear map is fitted (CIFAR; faces use the
# held-out images of training identities).
CIFAR_FIT_IMAGES = 2000

# Stages for the earlier distillation positions and the FitNet hint, per task: the two
# stages before the last feature (IResNet layer3 at 1/8 and layer2 at 1/4 resolution;
# WRN groups conv3 and conv2 of Table 4.1), with the thesis position each stands for.
EARLY_STAGES = {FACE: ("layer3", "layer2"), CIFAR: ("layer2", "layer1")}
THESIS_POSITION = {FACE: {"layer3": "conv3", "layer2": "conv2"},
                   CIFAR: {"layer2": "conv3", "layer1": "conv2"}}
AT_STAGES_BY_TASK = {FACE: AT_STAGES, CIFAR: ("layer1", "layer2", "layer3")}

TEACHER = "Teacher"
STUDENT = "Student"
OURS = "L_FM+L_SR"
KD_ZOO = ("KD", "FitNet", "AT", "RKD", "PKT")
SRRL_ROWS = ("L_FM", "L_SR", OURS)
GROUPS = ("main", "position", "sr_form", "unlabeled")
TSNE_ROWS = (STUDENT, "L_FM", "L_SR", OURS, TEACHER)
# The rows of the cluster purity / AMI table and figure: the main table's (the ablations would
# crowd the figure with 32 series).
CLUSTER_ROWS = (TEACHER, STUDENT, *KD_ZOO, *SRRL_ROWS)
# The claim every other one rests on: a teacher better than the student trained alone.
PREMISE = "premise:teacher-better"
REPRESENTATION_UNAVAILABLE = (
    "the KL with the teacher, the L2 distance and the NMI need unseen images of the training "
    "identities and labelled test identities, which only SynthFace draws; not measured on "
    "real data")
TSNE_CLASSES = 10
# k-means and t-SNE of a few thousand points run in one thread (threadpoolctl): they gain
# nothing from a second one, and OpenMP threads that spin-wait on a busy two-core machine
# made them 10-30x slower in our runs.
SMALL_PROBLEM_THREADS = 1


@dataclass(frozen=True)
class Recipe:
    """How one row trains its student.

    Attributes:
        losses: ``method_kwargs["losses"]`` entries of :mod:`fkdlib.zoo.methods`; empty
            for the student trained alone.
        ce_weight: weight of the student's own cross-entropy.
        unlabeled: train with :class:`~fkdlib.distill.UnlabeledMixupDistiller` on the
            study's unlabeled images too (thesis §4.2.2).
        group: which table the row belongs to (one of :data:`GROUPS`).
        position: the feature the SRRL / feature-matching loss is applied to.
    """

    losses: tuple[dict[str, Any], ...] = ()
    ce_weight: float = 1.0
    unlabeled: bool = False
    group: str = "main"
    position: str = ""

    def describe(self) -> str:
        """The objective in words, e.g. ``"1·CE + 1·srrl(fm 1, sr 1 l2, at embedding)"``."""
        terms = [f"{self.ce_weight:g}·CE"]
        for entry in self.losses:
            options = dict(entry.get("kwargs", {}))
            if entry["name"] == "srrl":
                detail = (f"fm {options.get('fm_weight', 1.0):g}, sr "
                          f"{options.get('sr_weight', 1.0):g} {options.get('sr_form', 'l2')}, "
                          f"at {options.get('feature', 'embedding')}")
            else:
                detail = ", ".join(f"{k} {v}" for k, v in options.items())
            suffix = f"({detail})" if detail else ""
            terms.append(f"{entry['weight']:g}·{entry['name']}{suffix}")
        if self.unlabeled:
            terms.append("1·KD(U) + 1·mixup KD(D,U)")
        return " + ".join(terms)


def _loss(name: str, weight: float, **kwargs: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {"name": name, "weight": float(weight)}
    if kwargs:
        entry["kwargs"] = kwargs
    return entry


def _srrl(fm: float, sr: float, sr_form: str = "l2", feature: str = "embedding") -> dict:
    return _loss("srrl", 1.0, fm_weight=float(fm), sr_weight=float(sr), sr_form=sr_form,
                 feature=feature)


def multi_position_row(task: str) -> str:
    """Name of the row distilled at several positions (Table 4.2's conv2+3+4 analogue)."""
    return f"{OURS} + hint @ {EARLY_STAGES[task][0]}"


def recipes(task: str, unlabeled: bool = True) -> dict[str, Recipe]:
    """Every row of the study, in table order (thesis Tables 4.2–4.5, 4.12, 4.19).

    Baselines use RepDistiller's weights (KD: 0.1·CE + 0.9·KD at T = 4; FitNet 100; AT 1000;
    RKD 1; PKT 30000). SRRL rows apply ``srrl`` to the penultimate feature (``embedding``)
    with α = β = 1 (official code). Earlier positions apply L_FM to a stage map (pooled,
    through a 1x1 conv connector): L_SR needs the feature that enters the teacher's
    classifier, and the thesis's AdaIN extension of L_SR to earlier layers is not reproduced.
    The several-positions row adds a FitNet hint of weight 1 (an unpooled L_FM) at the
    earlier stage to L_FM + L_SR at the last feature. The unlabeled row (face, D+U) needs
    identities disjoint from the labeled ones that only SynthFace draws (``unlabeled=False``
    leaves it out, on real data).
    """
    if task not in (FACE, CIFAR):
        raise ConfigError(f"task must be {FACE!r} or {CIFAR!r}, got {task!r}")
    hint = EARLY_STAGES[task][0]
    rows = {
        STUDENT: Recipe(),
        "KD": Recipe((_loss("kd", KD_WEIGHT),), ce_weight=KD_CE_WEIGHT),
        "FitNet": Recipe((_loss("fitnet", FITNET_WEIGHT, student_stage=hint,
                                teacher_stage=hint),), position=hint),
        "AT": Recipe((_loss("at", AT_LOSS_WEIGHT, stages=list(AT_STAGES_BY_TASK[task])),)),
        "RKD": Recipe((_loss("rkd", RKD_WEIGHT),), position="embedding"),
        "PKT": Recipe((_loss("pkt", PKT_WEIGHT),), position="embedding"),
        "L_FM": Recipe((_srrl(1, 0),), position="embedding"),
        "L_SR": Recipe((_srrl(0, 1),), position="embedding"),
        OURS: Recipe((_srrl(1, 1),), position="embedding"),
    }
    for stage in EARLY_STAGES[task]:
        rows[f"L_FM @ {stage}"] = Recipe((_srrl(1, 0, feature=stage),), group="position",
                                         position=stage)
    rows[multi_position_row(task)] = Recipe(
        (_srrl(1, 1), _loss("fitnet", 1.0, student_stage=hint, teacher_stage=hint)),
        group="position", position=f"embedding + {hint}")
    for form in ("ce", "kl"):
        rows[f"{OURS} ({form.upper()})"] = Recipe((_srrl(1, 1, sr_form=form),),
                                                  group="sr_form", position="embedding")
    if task == FACE and unlabeled:
        rows[f"{OURS} (D+U)"] = Recipe((_srrl(1, 1),), unlabeled=True, group="unlabeled",
                                        position="embedding")
    return rows


def student_epochs(profile: Profile, teacher_epochs: int | None = None) -> int:
    """Epochs of every student: the teacher's (default: the profile's; on faces, those of its
    margin fine-tuning) times :data:`STUDENT_EPOCH_FRACTION` of the profile, at least one."""
    epochs = profile.epochs if teacher_epochs is None else teacher_epochs
    return max(1, int(round(epochs * STUDENT_EPOCH_FRACTION.get(profile.name, 1.0))))


@dataclass
class SRRLStudy:
    """What the notebook trains and where it measures it.

    Attributes:
        task: ``"face"`` or ``"cifar"``.
        profile, seed: the run's profile and seed.
        teacher: the teacher's spec (face: the shared :func:`teacher_spec`).
        student: the student trained alone; distilled rows change only its method.
        recipes: row name -> :class:`Recipe`.
        bench: the face benchmark (face only).
        test_data: the CIFAR test split (CIFAR only).
        heldout_data: face: training identities with :data:`HELDOUT_IMAGES_PER_IDENTITY`
            more images each; the images past the training ones were never trained on.
        unlabeled_data: face: as many training-split identities as the labeled set, disjoint
            from it (``identity_offset``), used without labels.
    """

    task: str
    profile: Profile
    seed: int
    teacher: ModelSpec
    student: ModelSpec
    recipes: dict[str, Recipe]
    bench: FaceBenchmark | None = None
    test_data: dict[str, Any] | None = None
    heldout_data: dict[str, Any] | None = None
    unlabeled_data: dict[str, Any] | None = None

    @property
    def is_face(self) -> bool:
        """Whether the study runs on faces (else CIFAR classification)."""
        return self.task == FACE

    @property
    def measures_representation(self) -> bool:
        """Whether the representation analyses run (CIFAR, and faces on SynthFace; on real
        faces :data:`REPRESENTATION_UNAVAILABLE`)."""
        return not self.is_face or self.heldout_data is not None

    def rows(self, groups: Sequence[str] = GROUPS) -> list[str]:
        """Row names of the given groups, in table order."""
        unknown = sorted(set(groups) - set(GROUPS))
        if unknown:
            raise ConfigError(f"unknown row group(s) {unknown}; expected some of {GROUPS}")
        return [name for name, recipe in self.recipes.items() if recipe.group in groups]

    def spec(self, row: str) -> ModelSpec:
        """The :class:`ModelSpec` of one row (``"Teacher"`` included)."""
        if row == TEACHER:
            return self.teacher
        if row not in self.recipes:
            raise ConfigError(f"unknown row {row!r}; rows: {', '.join(self.recipes)}, "
                              f"{TEACHER}")
        recipe = self.recipes[row]
        name = f"{NOTEBOOK}/{self.task}/{row}"
        if not recipe.losses:
            return self.student.replace(name=name)
        kwargs: dict[str, Any] = {"teacher": self.teacher.to_dict(),
                                  "losses": [dict(entry) for entry in recipe.losses],
                                  "ce_weight": recipe.ce_weight}
        method = "distill"
        if recipe.unlabeled:
            method = "distill_unlabeled"
            kwargs.update(unlabeled=dict(self.unlabeled_data), unlabeled_weight=1.0,
                          mixup_weight=1.0, seed=self.seed)
        return self.student.replace(method=method, method_kwargs=kwargs, name=name)

    def plan(self) -> pd.DataFrame:
        """Which rows run, at which size: objective, epochs (of the Softmax pre-training the
        row starts from, 0 without one, and of the row's own training), labeled and unlabeled
        images."""
        labeled = _dataset_size(self.student.data)
        unlabeled = _dataset_size(self.unlabeled_data) if self.unlabeled_data else 0
        rows = [{"row": TEACHER, "group": "teacher", "network": _network(self.teacher),
                 "objective": "1·CE", **_epochs(self.teacher), "labeled images": labeled,
                 "unlabeled images": 0}]
        for name, recipe in self.recipes.items():
            rows.append({"row": name, "group": recipe.group,
                         "network": _network(self.student), "objective": recipe.describe(),
                         **_epochs(self.student), "labeled images": labeled,
                         "unlabeled images": unlabeled if recipe.unlabeled else 0})
        return pd.DataFrame(rows)


def _epochs(spec: ModelSpec) -> dict[str, int]:
    pretraining = 0 if spec.init_from is None else int(spec.init_from.train["epochs"])
    return {"pre-training epochs": pretraining, "epochs": int(spec.train["epochs"])}


def _network(spec: ModelSpec) -> str:
    kwargs = spec.backbone_kwargs
    if "depth" in kwargs:
        return f"WRN-{kwargs['depth']}-{kwargs['widen']}"
    return f"{spec.backbone} (width {kwargs.get('width', 1.0):g})"


def _dataset_size(spec: Mapping[str, Any]) -> int:
    if spec.get("kind") == "synthface":
        return int(spec["num_identities"]) * int(spec["images_per_identity"])
    return len(build_dataset(dict(spec)))


def _face_study(profile: Profile, seed: int, data: str, eval_sets: str = "") -> SRRLStudy:
    bench = face_benchmark(profile, seed, data, eval_sets)
    teacher = teacher_spec(bench)
    # the thesis's face student uses its ResNet-101 teacher's margin loss (ArcFace)
    student = margin_spec(bench, STUDENT_BACKBONE, teacher.head, head_kwargs=teacher.head_kwargs,
                          pretrain_name=STUDENT_PRETRAIN_NAME,
                          train_overrides={"epochs": student_epochs(profile,
                                                                    teacher.train["epochs"])})
    if not bench.synthetic:
        # the representation analyses and the unlabeled row need images only SynthFace draws
        # (module docstring); the notebook says so where it skips them
        return SRRLStudy(FACE, profile, seed, teacher, student, recipes(FACE, unlabeled=False),
                         bench=bench)
    train = bench.train_data
    heldout = dict(train, images_per_identity=int(train["images_per_identity"])
                   + HELDOUT_IMAGES_PER_IDENTITY)
    unlabeled = dict(train, identity_offset=int(train["num_identities"]))
    return SRRLStudy(FACE, profile, seed, teacher, student, recipes(FACE),
                     bench=bench, heldout_data=heldout, unlabeled_data=unlabeled)


def _cifar_study(profile: Profile, seed: int, spec: dict[str, Any]) -> SRRLStudy:
    teacher_net, student_net = CIFAR_NETWORKS.get(profile.name, CIFAR_CPU_NETWORKS)
    train_data = {**spec, "split": "train"}
    if profile.name == "paper":
        recipe = dict(CIFAR_PAPER_RECIPE)
    else:
        recipe = {"epochs": profile.epochs, "batch_size": profile.batch_size, "lr": CIFAR_LR,
                  "weight_decay": profile.weight_decay, "milestones": CIFAR_MILESTONES,
                  "grad_clip": None}
    recipe["seed"] = seed
    teacher = ModelSpec(backbone="wide_resnet", head="softmax", data=train_data,
                        train=recipe, backbone_kwargs=dict(teacher_net), profile=profile.name,
                        name=f"{NOTEBOOK}/cifar/{TEACHER}")
    student = teacher.replace(train=dict(recipe, epochs=student_epochs(profile,
                                                                       recipe["epochs"])),
                              backbone_kwargs=dict(student_net))
    return SRRLStudy(CIFAR, profile, seed, teacher, student, recipes(CIFAR),
                     test_data={**spec, "split": "test"})


def build_study(profile: str | Profile = "default", seed: int = 0,
                data: str = "synthface", eval_sets: str = "") -> SRRLStudy:
    """The study for a profile, seed and ``data`` argument (``"synthface"``, real faces
    ``"rec:DIR"`` / ``"folder:DIR"``, or ``"cifar10:/path"`` / ``"cifar100:/path"``);
    ``eval_sets`` adds evaluation-only face sets (``"lfw"``)."""
    profile = get_profile(profile)
    spec = parse_data_arg(data)
    if spec["kind"] == "cifar":
        if eval_sets:
            raise ConfigError(f"eval_sets={eval_sets!r} adds face verification sets; the "
                              "CIFAR study has none")
        return _cifar_study(profile, seed, spec)
    return _face_study(profile, seed, data, eval_sets)


# --- training and evaluation ----------------------------------------------------------------

def specs(study: SRRLStudy) -> dict[str, ModelSpec]:
    """The teacher's spec and every row's, by row name."""
    return {name: study.spec(name) for name in (TEACHER, *study.recipes)}


def train(study: SRRLStudy, device: str | torch.device = "cpu", cache_dir=DEFAULT_CACHE_DIR,
          names: Sequence[str] | None = None, log: Callable[[str], None] = print,
          seeds: int | None = None) -> dict[str, list[TrainedModel]]:
    """Train (or load from the model zoo) the teacher and the rows ``names`` (default: all),
    once per training seed (the profile's ``seeds`` unless given; the teacher of seed ``s``
    distils the students of seed ``s``, the unlabeled row's mixup draws move with the seed):
    ``{row: [seed 0, seed 1, ...]}``. Faces and CIFAR take the same path."""
    chosen = None if names is None else list(dict.fromkeys([TEACHER, *names]))
    return train_seeds(specs(study), seeds or study.profile.seeds, cache_dir=cache_dir,
                       device=device, log=log, names=chosen)


def _runs(value: Any) -> list[Any]:
    """A row's runs as a list: a list or tuple holds one entry per training seed, anything else
    is a single run."""
    runs = list(value) if isinstance(value, (list, tuple)) else [value]
    if not runs:
        raise ConfigError("a row has no runs; give one per training seed")
    return runs


def _first(value: Any) -> Any:
    """The first seed's run of a row (what a figure of one run shows)."""
    return _runs(value)[0]


def training_times(models: Mapping[str, TrainedModel | Sequence[TrainedModel]]
                   ) -> pd.DataFrame:
    """Per row: its seeds, whether every run came from the cache, the seconds of training of
    all its seeds together and the mean images per second (as recorded when trained)."""
    rows = []
    for name, value in models.items():
        runs = _runs(value)
        seconds = [float(m.history["time_s"].sum()) for m in runs if "time_s" in m.history]
        speeds = [float(m.history["images_per_s"].mean()) for m in runs
                  if "images_per_s" in m.history]
        rows.append({"row": name, "seeds": len(runs),
                     "from cache": all(m.from_cache for m in runs),
                     "train s (all seeds)": float(np.sum(seconds)) if seconds else np.nan,
                     "images/s": float(np.mean(speeds)) if speeds else np.nan})
    return pd.DataFrame(rows)


@dataclass(eq=False)
class CifarEvaluation(ClassificationEvaluation):
    """A classifier's results on the CIFAR test split plus the test images' penultimate
    features (float32), for the effective dimension of the training-health table."""

    features: np.ndarray | None = field(default=None, repr=False)


RowEvaluation = Evaluation | ClassificationEvaluation


def _images_and_labels(spec: Mapping[str, Any]) -> tuple[torch.Tensor, np.ndarray]:
    dataset = build_dataset(dict(spec))
    images = torch.from_numpy(np.ascontiguousarray(dataset.images_u8()))
    return images, dataset.metadata["identity"].to_numpy()


def evaluate(models: Mapping[str, Sequence[TrainedModel]], study: SRRLStudy,
             device: str | torch.device = "cpu") -> dict[str, list[RowEvaluation]]:
    """Every run of every row (:func:`train`): ``{row: [evaluation of seed 0, ...]}``. Face:
    every protocol of the benchmark (:func:`~fkdlib.evaluation.benchmark.evaluate_seeds`);
    CIFAR: logits and features on the test split (:class:`CifarEvaluation`)."""
    runs = {name: _runs(value) for name, value in models.items()}
    if study.is_face:
        return evaluate_seeds(runs, study.bench, device)
    images, labels = _images_and_labels(study.test_data)
    out: dict[str, list[RowEvaluation]] = {}
    for name, replicates in runs.items():
        out[name] = []
        for model in replicates:
            features, logits = model_outputs(model.backbone, model.head, images, device=device)
            out[name].append(CifarEvaluation(name, logits, labels,
                                             features.astype(np.float32)))
    return out


def training_health(study: SRRLStudy, models: Mapping[str, Sequence[TrainedModel]],
                    evaluations: Mapping[str, Sequence[RowEvaluation]]) -> pd.DataFrame:
    """:func:`~fkdlib.evaluation.health.model_health` of every row and seed: each run measured
    on its own training images, its effective dimension on the test embeddings (face: the
    benchmark's test pool, flip-test embeddings; CIFAR: the test split's features)."""
    runs = {name: _runs(value) for name, value in models.items()}
    missing = [name for name in runs if name not in evaluations]
    if missing:
        raise ConfigError(f"training_health needs the evaluations of {missing}")
    chosen = {name: _runs(evaluations[name]) for name in runs}
    if study.is_face:
        embeddings = pool_embeddings(chosen)
    else:
        embeddings = {}
        for name, replicates in chosen.items():
            features = [getattr(ev, "features", None) for ev in replicates]
            if any(f is None for f in features):
                raise ConfigError(f"{name}: CIFAR evaluations without test features; make "
                                  "them with srrl.evaluate")
            embeddings[name] = features
    return model_health(runs, embeddings)


def success(evaluation: RowEvaluation) -> np.ndarray:
    """Per-sample success behind the claims: rank-1 hit of each identification probe
    (MegaFace-like, with distractors; the "Id" column of Table 4.12) or top-1 correctness of
    each CIFAR test image."""
    if isinstance(evaluation, ClassificationEvaluation):
        return evaluation.correct
    if evaluation.identification is None:
        raise DataUnavailable(unavailable_message("identification"))
    return evaluation.identification.probe_ranks == 1


def success_units(study: SRRLStudy, size: int) -> np.ndarray:
    """The resampling unit of each of ``size`` :func:`success` samples: the identity of each
    identification probe (face; the benchmark's split) or each CIFAR test image itself."""
    if not study.is_face:
        return np.arange(size)
    split = study.bench.identification if study.bench is not None else None
    if split is None:
        raise DataUnavailable(unavailable_message("identification"))
    labels = np.asarray(split.probe_labels)
    if labels.size != size:
        raise ConfigError(f"{size} probe results but the identification split has "
                          f"{labels.size} probes")
    return labels


def success_metric(study: SRRLStudy) -> str:
    """What :func:`success` measures for the study's task, in words (the claims' metric)."""
    return ("rank-1 identification with distractors (%)" if study.is_face
            else "top-1 accuracy (%)")


def _mean_summary(value: Any) -> dict[str, float]:
    """The mean over a row's runs of their ``summary()`` rows, with ``seeds``."""
    runs = _runs(value)
    return {**seed_mean([ev.summary() for ev in runs]), "seeds": len(runs)}


def results_table(evaluations: Mapping[str, Any],
                  rows: Sequence[str] | None = None) -> pd.DataFrame:
    """Rows as index, the task's metrics as columns, each the mean over the row's seeds (face:
    10-fold accuracies %, IJB-like TAR at FAR as fractions, rank-1 %; CIFAR: top-1 / top-5 %),
    and a ``seeds`` column."""
    names = [name for name in (rows or evaluations) if name in evaluations]
    table = pd.DataFrame({name: _mean_summary(evaluations[name]) for name in names}).T
    table["seeds"] = table["seeds"].astype(int)
    table.index.name = "row"
    return table


# --- the thesis's tables beside ours --------------------------------------------------------

def _paper_values(name: str) -> dict[tuple[str, str, str], float]:
    frame = load_reference(name)
    return {(s, m, k): v for s, m, k, v in
            frame[["setting", "method", "metric", "value"]].itertuples(index=False)}


def _headline(study: SRRLStudy) -> dict[str, str]:
    """Our columns for the CIFAR-style tables: (summary key -> column label)."""
    if study.is_face:
        return {"rank-1": "rank-1 (ours, %)", "IJB-like TAR@0.001": "TAR@1e-3 (ours)",
                "LFW-like acc": "LFW-like acc (ours, %)"}
    return {"Top-1": "Top-1 (ours, %)", "Top-5": "Top-5 (ours, %)"}


def _ours(study: SRRLStudy, evaluations: Mapping[str, Any], row: str) -> dict:
    """Our headline columns of a row: the mean over its seeds, with ``seeds``."""
    summary = _mean_summary(evaluations[row])
    return {**{label: summary.get(key, np.nan) for key, label in _headline(study).items()},
            "seeds": int(summary["seeds"])}


def table_4_2(study: SRRLStudy, evaluations: Mapping[str, Any]) -> pd.DataFrame:
    """Losses and position of distillation (thesis Table 4.2, CIFAR-100 top-1) beside ours
    (means over each row's seeds; ``evaluations``: row -> its runs, or a single run)."""
    paper = _paper_values("srrl_table_4_2")
    positions = THESIS_POSITION[study.task]
    thesis_rows = {STUDENT: ("", "Student (WRN-16-4)"), TEACHER: ("", "Teacher (WRN-40-4)"),
                   "L_FM": ("conv4", "L_FM"), "L_SR": ("conv4", "L_SR"),
                   OURS: ("conv4", OURS), multi_position_row(study.task): ("conv2+3+4", OURS)}
    thesis_rows.update({f"L_FM @ {stage}": (position, OURS)
                        for stage, position in positions.items()})
    rows = []
    for row in [STUDENT, "L_FM", "L_SR", OURS, *study.rows(["position"]), TEACHER]:
        if row not in evaluations:
            continue
        setting, method = thesis_rows[row]
        rows.append({"row": row, "our position": study.recipes[row].position
                     if row in study.recipes else "", **_ours(study, evaluations, row),
                     "thesis row": f"{method} @ {setting}" if setting else method,
                     "thesis Top-1 (%)": paper.get((setting, method, "Top-1"), np.nan)})
    return pd.DataFrame(rows)


def table_4_4(study: SRRLStudy, evaluations: Mapping[str, Any]) -> pd.DataFrame:
    """The form of L_SR: L2 / CE / KL (thesis Table 4.4) beside ours (means over seeds)."""
    paper = _paper_values("srrl_table_4_4")
    thesis_rows = {STUDENT: "Student (WRN-16-4)", TEACHER: "Teacher (WRN-40-4)",
                   OURS: f"{OURS}-L2", f"{OURS} (CE)": f"{OURS}-CE",
                   f"{OURS} (KL)": f"{OURS}-KL"}
    rows = []
    for row, method in thesis_rows.items():
        if row in evaluations:
            rows.append({"row": row, **_ours(study, evaluations, row), "thesis row": method,
                         "thesis Top-1 (%)": paper.get(("", method, "Top-1"), np.nan)})
    return pd.DataFrame(rows)


# Our rows -> the rows of thesis Tables 4.12 / 4.13 (FitNet and the single losses are not in
# them).
FACE_PAPER_ROWS = {STUDENT: "Student", "KD": "KD", "AT": "AT", "RKD": "RKD", "PKT": "PKT",
                   OURS: "Ours", TEACHER: "Teacher"}


def table_4_12(evaluations: Mapping[str, Any]) -> pd.DataFrame:
    """MegaFace verification and identification (thesis Table 4.12) beside our IJB-like TAR
    at FAR 1e-3 (the lowest FAR our IJB-like list reports at the default profile) and rank-1
    with distractors, each the mean over the row's seeds."""
    paper = _paper_values("srrl_table_4_12")
    rows = []
    for row in (STUDENT, *KD_ZOO, *SRRL_ROWS, TEACHER):
        if row not in evaluations:
            continue
        runs = _runs(evaluations[row])
        method = FACE_PAPER_ROWS.get(row, "")
        rows.append({"row": row, "IJB-like TAR@1e-3 (ours, %)":
                     float(np.mean([100 * ev.tar["ijb"][1e-3] if "ijb" in ev.tar else np.nan
                                    for ev in runs])),
                     "rank-1 (ours, %)": float(np.mean(
                         [100 * ev.identification.rank_accuracies[1]
                          if ev.identification is not None else np.nan for ev in runs])),
                     "seeds": len(runs), "thesis row": method,
                     "Ver TAR@1e-6 (thesis, %)": paper.get(("", method, "Ver TAR@FAR=1e-6"),
                                                           np.nan),
                     "Id rank-1 (thesis, %)": paper.get(("", method, "Id rank-1"), np.nan)})
    return pd.DataFrame(rows)


def table_4_13(evaluations: Mapping[str, Any]) -> pd.DataFrame:
    """Verification accuracies (thesis Table 4.13: LFW / AgeDB / CPLFW / CALFW) beside our
    LFW-, AgeDB- and CFP-FP-like accuracies (CPLFW is cross-pose, CALFW cross-age), each the
    mean over the row's seeds."""
    paper = _paper_values("srrl_table_4_13")
    rows = []
    for row in (STUDENT, *KD_ZOO, *SRRL_ROWS, TEACHER):
        if row not in evaluations:
            continue
        ours = _mean_summary(evaluations[row])
        method = FACE_PAPER_ROWS.get(row, "")
        rows.append({"row": row, "LFW-like (ours)": ours.get("LFW-like acc", np.nan),
                     "AgeDB-like (ours)": ours.get("AgeDB-like acc", np.nan),
                     "CFP-FP-like (ours)": ours.get("CFP-FP-like acc", np.nan),
                     "seeds": int(ours["seeds"]), "thesis row": method,
                     **{f"{metric} (thesis)": paper.get(("", method, metric), np.nan)
                        for metric in ("LFW", "AgeDB", "CPLFW", "CALFW")}})
    return pd.DataFrame(rows)


def table_4_19(evaluations: Mapping[str, Any]) -> pd.DataFrame:
    """Labeled D vs labeled + unlabeled D+U (thesis Table 4.19) beside ours (means over
    seeds)."""
    paper = _paper_values("srrl_table_4_19")
    thesis_rows = {STUDENT: "Student", OURS: "Ours (trained on D)",
                   f"{OURS} (D+U)": "Ours (trained on D+U)", TEACHER: "Teacher"}
    rows = []
    for row, method in thesis_rows.items():
        if row not in evaluations:
            continue
        ours = _mean_summary(evaluations[row])
        rows.append({"row": row, "LFW-like (ours)": ours.get("LFW-like acc", np.nan),
                     "CFP-FP-like (ours)": ours.get("CFP-FP-like acc", np.nan),
                     "AgeDB-like (ours)": ours.get("AgeDB-like acc", np.nan),
                     "rank-1 (ours)": ours.get("rank-1", np.nan), "seeds": int(ours["seeds"]),
                     "thesis row": method,
                     **{f"{metric} (thesis)": paper.get(("", method, metric), np.nan)
                        for metric in ("LFW", "CFP-FP", "AgeDB")}})
    return pd.DataFrame(rows)


# --- representation analyses (thesis Tables 4.3 and 4.5, Fig. 4.2) -------------------------

@dataclass
class AnalysisImages:
    """The images the representation analyses run on.

    Attributes:
        test: where the L2 distance, NMI and t-SNE are measured (face: the test pool of
            unseen identities; CIFAR: the test split), with ``test_labels``.
        heldout: images of *training* classes never trained on, for the KL with the teacher
            and the cross-entropy with labels (face: the extra SynthFace images of the
            training identities; CIFAR: the test split, as in the thesis), with
            ``heldout_labels``.
        fit: images on which the linear map from student to teacher features is fitted
            (face: ``heldout``; CIFAR: the first :data:`CIFAR_FIT_IMAGES` training images).
        cluster_rows: rows of ``test`` that k-means clusters for the NMI (face: every image of
            :data:`NMI_IDENTITIES` test identities); None: all of them (CIFAR).
    """

    test: torch.Tensor
    test_labels: np.ndarray
    heldout: torch.Tensor
    heldout_labels: np.ndarray
    fit: torch.Tensor
    cluster_rows: np.ndarray | None = None


def analysis_images(study: SRRLStudy) -> AnalysisImages:
    """Load (render on first use) the images of :class:`AnalysisImages` for a study; on real
    face data :class:`~fkdlib.errors.DataUnavailable` (:data:`REPRESENTATION_UNAVAILABLE`)."""
    if not study.measures_representation:
        raise DataUnavailable(REPRESENTATION_UNAVAILABLE)
    if study.is_face:
        pool = study.bench.pools["test"]
        test = torch.from_numpy(np.ascontiguousarray(pool.images_u8()))
        test_labels = pool.metadata["identity"].to_numpy()
        dataset = build_dataset(study.heldout_data)
        trained = int(study.student.data["images_per_identity"])
        unseen = (dataset.metadata["index"] >= trained).to_numpy()
        heldout = torch.from_numpy(np.ascontiguousarray(dataset.images_u8()[unseen]))
        heldout_labels = dataset.metadata["identity"].to_numpy()[unseen]
        rows = identity_sample_rows(test_labels, NMI_IDENTITIES, seed=study.seed)
        return AnalysisImages(test, test_labels, heldout, heldout_labels, heldout, rows)
    test, test_labels = _images_and_labels(study.test_data)
    train, _ = _images_and_labels(study.student.data)
    return AnalysisImages(test, test_labels, test, test_labels, train[:CIFAR_FIT_IMAGES])


@dataclass
class RowFeatures:
    """One network's outputs on the analysis images."""

    test: np.ndarray
    heldout_logits: np.ndarray
    fit: np.ndarray


def collect_features(models: Mapping[str, Any], images: AnalysisImages,
                     device: str | torch.device = "cpu") -> dict[str, list[RowFeatures]]:
    """:func:`model_outputs` of every run of every row (``{row: [model per seed]}``, or one
    model per row) on the test, held-out and fit images: ``{row: [RowFeatures per seed]}``."""
    features: dict[str, list[RowFeatures]] = {}
    for name, value in models.items():
        features[name] = []
        for model in _runs(value):
            # the sets can be the same tensor (face: fit is heldout; CIFAR: heldout is test)
            outputs: dict[int, tuple[np.ndarray, np.ndarray]] = {}
            for tensor in (images.test, images.heldout, images.fit):
                if id(tensor) not in outputs:
                    outputs[id(tensor)] = model_outputs(model.backbone, model.head, tensor,
                                                        device=device)
            features[name].append(RowFeatures(outputs[id(images.test)][0],
                                              outputs[id(images.heldout)][1],
                                              outputs[id(images.fit)][0]))
    return features


def _seed_list(value: Any) -> list[Any]:
    """One per-seed entry (an array or a number) as a list of seeds: a bare array or number is
    one seed."""
    if isinstance(value, np.ndarray) or np.isscalar(value):
        return [value]
    return list(value)


@dataclass
class Representation:
    """Per-sample measurements of thesis Tables 4.3 and 4.5 for every row and training seed
    (seed ``s`` of a row measured against seed ``s`` of the teacher).

    Attributes:
        kl: row -> per seed, per held-out image KL(teacher ‖ student).
        ce: row -> per seed, per held-out image cross-entropy with the label.
        l2: row -> per seed, per test image fitted L2 distance to the teacher
            (:func:`fitted_l2`).
        clusters: row -> per seed, the k-means cluster of each clustered test image
            (k = number of classes among them).
        nmi: row -> per seed, NMI between clusters and labels of the clustered test images.
        test_labels: the test images' classes.
        heldout_labels: the held-out images' classes (None: unknown).
        cluster_rows: rows of the test images that were clustered (None: all).

    A single array (or number) per row is taken as one seed.
    """

    kl: dict[str, list[np.ndarray]]
    ce: dict[str, list[np.ndarray]]
    l2: dict[str, list[np.ndarray]]
    clusters: dict[str, list[np.ndarray]]
    nmi: dict[str, list[float]]
    test_labels: np.ndarray
    heldout_labels: np.ndarray | None = None
    cluster_rows: np.ndarray | None = None

    def __post_init__(self) -> None:
        for name in ("kl", "ce", "l2", "clusters", "nmi"):
            setattr(self, name, {row: _seed_list(value)
                                 for row, value in getattr(self, name).items()})

    @property
    def cluster_labels(self) -> np.ndarray:
        """The classes of the clustered test images."""
        labels = np.asarray(self.test_labels)
        return labels if self.cluster_rows is None else labels[self.cluster_rows]

    def table(self, rows: Sequence[str] | None = None) -> pd.DataFrame:
        """Means of KL, CE and L2 distance and the NMI (%) of the given rows (default all),
        each the mean over the row's seeds, with ``seeds``."""
        names = [name for name in (rows or self.nmi) if name in self.nmi]

        def mean(values: Mapping[str, list], name: str) -> float:
            return float(np.mean([np.mean(v) for v in values[name]]))

        return pd.DataFrame({
            "row": names,
            "KL with teacher": [mean(self.kl, n) for n in names],
            "CE with label": [mean(self.ce, n) for n in names],
            "L2 distance": [mean(self.l2, n) for n in names],
            "NMI (%)": [100 * mean(self.nmi, n) for n in names],
            "seeds": [len(self.nmi[n]) for n in names],
        })


def representation_analysis(features: Mapping[str, Any], images: AnalysisImages,
                            seed: int = 0) -> Representation:
    """KL / CE on held-out images of training classes, fitted L2 distance and k-means NMI
    (scikit-learn, k = number of classes among the clustered test images, on L2-normalised
    features; face: the :data:`NMI_IDENTITIES` identities of ``images.cluster_rows``) on the
    test images, for every run of every row against the ``"Teacher"`` run of the same seed
    (``features``: :func:`collect_features`)."""
    if TEACHER not in features:
        raise ConfigError(f"representation_analysis needs the {TEACHER!r} row among "
                          f"{', '.join(features)}")
    runs = {name: _runs(value) for name, value in features.items()}
    teachers = runs[TEACHER]
    short = [name for name, replicates in runs.items() if len(replicates) > len(teachers)]
    if short:
        raise ConfigError(f"{short} have more seeds than the teacher ({len(teachers)}); seed s "
                          "of a row is measured against seed s of the teacher")
    rows = (np.arange(len(images.test_labels)) if images.cluster_rows is None
            else np.asarray(images.cluster_rows))
    labels = np.asarray(images.test_labels)[rows]
    k = int(len(np.unique(labels)))
    result = Representation({}, {}, {}, {}, {}, images.test_labels, images.heldout_labels,
                            images.cluster_rows)
    for name, replicates in runs.items():
        for key in ("kl", "ce", "l2", "clusters", "nmi"):
            getattr(result, key)[name] = []
        for teacher, row in zip(teachers, replicates):
            result.kl[name].append(teacher_kl(teacher.heldout_logits, row.heldout_logits))
            result.ce[name].append(label_cross_entropy(row.heldout_logits,
                                                       images.heldout_labels))
            result.l2[name].append(fitted_l2(row.fit, teacher.fit, row.test, teacher.test))
            with threadpool_limits(limits=SMALL_PROBLEM_THREADS):
                analysis = ClusterAnalysis(n_clusters=k, random_state=seed).fit(
                    unit_rows(row.test[rows]), labels)
            result.clusters[name].append(analysis.labels_)
            result.nmi[name].append(analysis.nmi_)
    return result


def table_4_3(representation: Representation, evaluations: Mapping[str, Any],
              study: SRRLStudy) -> pd.DataFrame:
    """KL with the teacher and CE with the label (thesis Table 4.3) beside ours (means over
    seeds)."""
    paper = _paper_values("srrl_table_4_3")
    names = [n for n in (STUDENT, "KD", "AT", *SRRL_ROWS, "FitNet", "RKD", "PKT", TEACHER)
             if n in representation.nmi]
    ours = representation.table(names).set_index("row")
    rows = []
    for name in names:
        method = name if name != STUDENT else "Student"
        rows.append({"row": name, "KL with teacher (ours)": ours.loc[name, "KL with teacher"],
                     "CE with label (ours)": ours.loc[name, "CE with label"],
                     **_ours(study, evaluations, name),
                     "thesis KL": paper.get(("", method, "KL with teacher"), np.nan),
                     "thesis CE": paper.get(("", method, "CE with label"), np.nan),
                     "thesis Top-1 (%)": paper.get(("", method, "Top-1"), np.nan)})
    return pd.DataFrame(rows)


def table_4_5(representation: Representation) -> pd.DataFrame:
    """Teacher–student L2 distance and NMI (thesis Table 4.5) beside ours (means over
    seeds)."""
    paper = _paper_values("srrl_table_4_5")
    names = [n for n in (STUDENT, *SRRL_ROWS, *KD_ZOO, TEACHER) if n in representation.nmi]
    ours = representation.table(names).set_index("row")
    return pd.DataFrame([{"row": n, "L2 distance (ours)": ours.loc[n, "L2 distance"],
                          "NMI (ours, %)": ours.loc[n, "NMI (%)"],
                          "seeds": int(ours.loc[n, "seeds"]),
                          "thesis L2 distance": paper.get(("", n, "L2 distance"), np.nan),
                          "thesis NMI (%)": paper.get(("", n, "NMI"), np.nan)}
                         for n in names])


def tsne_points(features: Mapping[str, Any], labels: np.ndarray,
                rows: Sequence[str] = TSNE_ROWS, classes: int = TSNE_CLASSES,
                max_points: int | None = None, seed: int = 0
                ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """t-SNE of the test features of ``classes`` random test classes for each row (thesis
    Fig. 4.2), from the first seed's run of each row (``features``: row -> its
    :class:`RowFeatures` per seed, or one): row -> (points (n, 2), labels)."""
    rng = np.random.default_rng(seed)
    chosen = rng.choice(np.unique(labels), size=min(classes, len(np.unique(labels))),
                        replace=False)
    index = np.flatnonzero(np.isin(labels, chosen))[:max_points]
    with threadpool_limits(limits=SMALL_PROBLEM_THREADS):
        return {row: (project(unit_rows(_first(features[row]).test[index]), method="tsne",
                              random_state=seed), labels[index])
                for row in rows if row in features}


# --- claims ---------------------------------------------------------------------------------

# The thesis rows our rows correspond to, for the paper's own effects.
FACE_THESIS_ROWS = {STUDENT: "Student", "KD": "KD", "AT": "AT", "RKD": "RKD", "PKT": "PKT",
                    OURS: "Ours", TEACHER: "Teacher"}


def _thesis_difference(table: str, metric: str, rows: tuple[str, str]) -> float | None:
    """``value(rows[0]) − value(rows[1])`` in a stored thesis table, or None where either row
    is missing."""
    frame = load_reference(table)
    frame = frame[frame.setting == ""].set_index(["method", "metric"])["value"]
    keys = [(row, metric) for row in rows]
    if not all(key in frame.index for key in keys):
        return None
    return float(frame[keys[0]] - frame[keys[1]])


def paper_effect(study: SRRLStudy, claim_id: str, a: str, b: str) -> float | None:
    """The thesis's own effect for a claim comparing rows ``a`` and ``b``, in our units, where a
    stored table gives both rows for this study's task: rank-1 identification (%) of Table 4.12
    on faces (the teacher's row included, for :data:`PREMISE`); top-1 (%) of Tables 4.2 / 4.3
    (Table 4.3 holds the teacher's), KL (nats) of Table 4.3 and NMI (%) of Table 4.5 on CIFAR.
    (The fitted L2 distance is ours, so the thesis's L2 has other units.)"""
    if study.is_face:
        if a in FACE_THESIS_ROWS and b in FACE_THESIS_ROWS:
            return _thesis_difference("srrl_table_4_12", "Id rank-1",
                                      (FACE_THESIS_ROWS[a], FACE_THESIS_ROWS[b]))
        return None
    if claim_id == "KL:smallest":
        return _thesis_difference("srrl_table_4_3", "KL with teacher", (a, b))
    if claim_id == "NMI:highest":
        return _thesis_difference("srrl_table_4_5", "NMI", (a, b))
    for table in ("srrl_table_4_5", "srrl_table_4_3"):
        found = _thesis_difference(table, "Top-1", (a, b))
        if found is not None:
            return found
    return None


def claims(study: SRRLStudy) -> list[Claim]:
    """The thesis's claims that this study's rows can check, declared once, after their premise
    (:data:`PREMISE`: the teacher beats the student trained alone on the claims' success
    metric; every other claim ``requires`` it, as distillation has nothing to transfer from a
    teacher no better than the student). A tuple as the second model means "the best of these"
    (the highest scoring for a "greater" claim, the lowest for a "less" one), chosen on the
    full sample (the mean over seeds). The thesis's own effect is given where its tables hold
    both rows (:func:`paper_effect`; against "the best of several", the thesis's best of those
    rows)."""
    metric = success_metric(study)
    losses = "thesis ch. 4 (SRRL, Yang et al. ICLR 2021), §4.4.1 and Table 4.2"
    zoo = ("thesis ch. 4, Table 4.12 (MegaFace)" if study.is_face
           else "thesis ch. 4, Table 4.3")
    others = (STUDENT, *KD_ZOO, "L_FM", "L_SR")
    others_text = "every other distilled row and the student"
    premise = (PREMISE,)
    declared = [
        Claim(PREMISE, "Premise: the teacher beats the student trained alone; without it "
              "there is nothing to distil and no other claim is assessed", zoo, metric,
              "success", (TEACHER, STUDENT),
              paper_says="the teacher (ResNet-101 on faces, WRN-40-4 on CIFAR-100) is "
              "clearly stronger than the student trained alone"),
        Claim("L_SR>L_FM", "L_SR beats L_FM", losses, metric, "success", ("L_SR", "L_FM"),
              requires=premise),
        Claim("L_FM+L_SR:best-of-three", "L_FM + L_SR beats both L_FM and L_SR alone "
              "(compared with the better of the two)", losses, metric, "success",
              (OURS, ("L_FM", "L_SR")), requires=premise),
        Claim("L_FM+L_SR>Student", "SRRL improves the student trained alone", zoo, metric,
              "success", (OURS, STUDENT), requires=premise),
        *[Claim(f"L_FM+L_SR>{baseline}", f"SRRL beats {baseline} on the "
                f"{'face ' if study.is_face else ''}student", zoo, metric, "success",
                (OURS, baseline), requires=premise) for baseline in KD_ZOO],
        Claim("L2:smallest", f"SRRL gives the smallest teacher–student L2 distance (vs the "
              f"closest of {others_text})", "thesis ch. 4, Table 4.5",
              "fitted L2 distance ‖h_T − A h_S‖²", "l2", (OURS, others), direction="less",
              requires=premise),
        Claim("KL:smallest", f"SRRL gives the smallest KL divergence to the teacher (vs the "
              f"closest of {others_text})", "thesis ch. 4, Table 4.3",
              "KL(teacher ‖ student), nats", "kl", (OURS, others), direction="less",
              requires=premise),
        Claim("NMI:highest", f"SRRL's features cluster best: highest NMI (vs the best of "
              f"{others_text})", "thesis ch. 4, Table 4.5", "NMI of k-means clusters (%)",
              "nmi", (OURS, others), requires=premise),
        Claim("last>earlier", "distilling at the last layer beats earlier layers (L_FM at the "
              "penultimate feature vs the better earlier stage)", "thesis ch. 4, Table 4.2",
              metric, "success",
              ("L_FM", tuple(f"L_FM @ {stage}" for stage in EARLY_STAGES[study.task])),
              requires=premise),
    ]
    if f"{OURS} (D+U)" in study.recipes:
        declared.append(Claim("D+U>D", "adding unlabeled data (with mixup) helps the SRRL "
                              "student", "thesis ch. 4, Table 4.19", metric, "success",
                              (f"{OURS} (D+U)", OURS), requires=premise))
    return [replace(claim, paper_effect=_declared_effect(study, claim)) for claim in declared]


def _declared_effect(study: SRRLStudy, claim: Claim) -> float | None:
    a, b = claim.compares
    if isinstance(b, str):
        return paper_effect(study, claim.id, a, b)
    effects = [paper_effect(study, claim.id, a, rival) for rival in b]
    known = [effect for effect in effects if effect is not None]
    # against the best of several rows the thesis's effect is the smallest margin over them
    if not known or len(known) < len(effects):
        return None
    return min(known) if claim.highest_is_best else max(known)


def nmi_difference_bootstrap(clusters_a: Sequence[np.ndarray],
                             clusters_b: Sequence[np.ndarray], labels: np.ndarray,
                             units: np.ndarray, n_boot: int, seed: int = 0,
                             ci: float = 0.95) -> BootstrapResult:
    """NMI (%) of row A's fixed clusterings minus row B's (one clustering per training seed),
    resampling the seeds and the test ``units``, with the interval centred on the effect.

    The effect is ``mean_s NMI(A_s) − mean_s NMI(B_s)`` (scikit-learn's arithmetic NMI of each
    seed's clusters against ``labels``). A resample draws ``K`` of the ``K`` units with
    replacement (every sample of a unit drawn ``c`` times counts ``c`` times, the same draw for
    both rows and every seed) and each row's seeds with replacement (one draw for both rows
    when they have as many seeds: seed ``s`` of both shares the teacher of seed ``s``); its
    value is the difference of the mean weighted NMIs over the drawn seeds
    (``_ResampledNMI``).

    A resample that repeats units raises the NMI of an imperfect clustering (repeated samples
    look like more structure) but not of a perfect one, so the resamples of a difference sit
    off the full-sample value, and their plain percentile interval can miss it (a random
    clustering against a perfect one of 200 identities: effect −41.8, percentile interval
    [−39.6, −38.8]). As in :func:`~fkdlib.evaluation.clustering.cluster_quality`, the interval
    is the percentile interval moved so that the resamples' median falls on the effect
    (``effect + quantile − median``): the bootstrap gives the spread, not the centre. The
    p-value is read from the moved resamples; ``se`` is their standard deviation.
    """
    runs_a = [np.asarray(c) for c in clusters_a]
    runs_b = [np.asarray(c) for c in clusters_b]
    labels = np.asarray(labels)
    if not runs_a or not runs_b:
        raise ConfigError("nmi_difference_bootstrap needs at least one clustering (seed) per "
                          "row")
    if any(c.shape != labels.shape for c in runs_a + runs_b) or labels.ndim != 1:
        raise ConfigError(f"nmi_difference_bootstrap needs one cluster per labelled sample "
                          f"({labels.size})")
    _, codes = np.unique(np.asarray(units), return_inverse=True)
    codes = codes.ravel()
    if codes.size != labels.size:
        raise ConfigError(f"nmi_difference_bootstrap: {codes.size} units for {labels.size} "
                          "samples")
    num_units = int(codes.max()) + 1 if codes.size else 0
    if num_units < 2:
        raise ConfigError(f"nmi_difference_bootstrap needs at least 2 units to resample, got "
                          f"{num_units}")
    scorers_a = [_ResampledNMI(labels, c) for c in runs_a]
    scorers_b = [_ResampledNMI(labels, c) for c in runs_b]
    ones = np.ones(labels.size)
    effect = float(np.mean([100 * nmi(ones) for nmi in scorers_a])
                   - np.mean([100 * nmi(ones) for nmi in scorers_b]))
    paired = len(runs_a) == len(runs_b)
    rng = np.random.default_rng(seed)
    draws = np.empty(n_boot)
    for index in range(n_boot):
        weights = np.bincount(rng.integers(0, num_units, num_units),
                              minlength=num_units)[codes].astype(np.float64)
        values_a = np.array([100 * nmi(weights) for nmi in scorers_a])
        values_b = np.array([100 * nmi(weights) for nmi in scorers_b])
        picks_a = rng.integers(0, len(runs_a), len(runs_a))
        picks_b = picks_a if paired else rng.integers(0, len(runs_b), len(runs_b))
        draws[index] = values_a[picks_a].mean() - values_b[picks_b].mean()
    centred = draws + (effect - float(np.median(draws)))
    low, high = np.quantile(centred, [(1 - ci) / 2, (1 + ci) / 2])
    other_side = (np.mean(centred <= 0) if effect > 0 else np.mean(centred >= 0)
                  if effect < 0 else 0.5)
    se = float(np.std(draws, ddof=1)) if n_boot >= 2 else float("nan")
    return BootstrapResult(effect, float(low), float(high), float(min(1.0, 2 * other_side)),
                           int(n_boot), int(n_boot), float(ci), se)


def _evidence(result: BootstrapResult, runs_a: Sequence[Any], runs_b: Sequence[Any],
              units: np.ndarray, compared: str) -> Evidence:
    """A bootstrap as claim evidence: ``n`` samples, ``seeds`` per row, ``identities`` = the
    distinct units resampled."""
    units = np.asarray(units)
    return Evidence.from_bootstrap(result, compared, n=int(units.size),
                                   seeds=min(len(runs_a), len(runs_b)),
                                   identities=int(np.unique(units).size))


def _mean_evidence(runs_a: Sequence[np.ndarray], runs_b: Sequence[np.ndarray],
                   units: np.ndarray, compared: str, n_boot: int, seed: int) -> Evidence:
    """:func:`hierarchical_bootstrap` of the difference of per-sample means (mean over seeds of
    each seed's mean), every sample weighted by how often its unit is drawn
    (``mean_positive_similarity`` on all-True labels is that weighted mean)."""
    units = np.asarray(units)
    result = hierarchical_bootstrap(mean_positive_similarity, list(runs_a), list(runs_b),
                                    np.ones(units.size, bool), units, n_boot=n_boot,
                                    seed=seed)
    return _evidence(result, runs_a, runs_b, units, compared)


def _seed_mean_of(values: Sequence[Any]) -> float:
    """The full-sample value of a row: the mean over seeds of each seed's mean."""
    return float(np.mean([np.mean(v) for v in values]))


def claim_tests(study: SRRLStudy, evaluations: Mapping[str, Any],
                representation: Representation | None, n_boot: int,
                seed: int = 0) -> dict[str, ClaimTest]:
    """The claims' tests. Each is a :func:`~fkdlib.evaluation.uncertainty.hierarchical_bootstrap`
    that resamples the training seeds of both rows (seed ``s`` of both drawn together: they
    share the teacher of seed ``s``) and, independently, the test units below, each drawn unit
    bringing all its samples; the effect is the mean over seeds of the full-sample difference.
    Rows hold one entry per seed (a single run is one seed).

    - ``"success"``: difference in % of :func:`success`. Face: the rank-1 hit of each
      identification probe; units are the *probe identities* (:func:`success_units`): a
      person's probes share their gallery image, pose range and look-alikes among the
      distractors, so their hits are correlated. CIFAR: top-1 correctness; units are the *test
      images*: each is a separate photograph and the classes are fixed (the claim is about
      these 10 or 100 classes, not a sample of classes), so there is no cluster above the
      image to resample (a class-clustered resample would ask about other classes).
    - ``"kl"``: mean KL(teacher ‖ student) over the held-out images. Face: units are the
      *training identities* the held-out images show (the images of one identity share its
      class weight, so their KLs are correlated). CIFAR: the test images, as above.
    - ``"l2"``: mean fitted L2 distance over the test images; units: the *test identities*
      (face) or the test images (CIFAR).
    - ``"nmi"``: NMI (%) of each row's fixed k-means clustering of the clustered test images
      (:attr:`Representation.cluster_rows`), a weighted NMI per resample
      (:func:`nmi_difference_bootstrap`, its interval centred on the effect); units: the *test
      identities* (face: the clusters are meant to recover them, and every image of a drawn
      identity enters its cluster) or the test images (CIFAR).

    Every evidence carries ``seeds`` (runs per row) and ``identities`` (distinct units), so the
    claims table has the minimum detectable effect (``mde``) of each test.
    """
    face = study.is_face

    def success_test(claim: Claim) -> Evidence:
        hits = {name: [100.0 * success(ev).astype(float) for ev in _runs(value)]
                for name, value in evaluations.items()}
        a, b = claim.compares[0], rival(claim, lambda row: _seed_mean_of(hits[row]))
        missing = [row for row in (a, b) if row not in hits]
        if missing:
            raise ConfigError(f"claim {claim.id!r} needs the evaluation of {missing}")
        units = success_units(study, hits[a][0].size)
        what = "probe identities" if face else "test images"
        return _mean_evidence(hits[a], hits[b], units,
                              f"{a} − {b}, {success_metric(study)}, seeds and {what} "
                              "resampled", n_boot, seed)

    def units_of(labels: np.ndarray | None, what: str) -> np.ndarray:
        if labels is None:
            raise ConfigError(f"the representation holds no labels of the {what}")
        labels = np.asarray(labels)
        return labels if face else np.arange(labels.size)

    def per_image(values: Mapping[str, list[np.ndarray]], labels: Callable[[], np.ndarray],
                  what: str, where: str) -> ClaimTest:
        def test(claim: Claim) -> Evidence:
            a, b = claim.compares[0], rival(claim, lambda row: _seed_mean_of(values[row]))
            unit = ("identities" if face else "images")
            return _mean_evidence(values[a], values[b], labels(),
                                  f"{a} − {b}, {what}, seeds and {where} {unit} resampled",
                                  n_boot, seed)
        return test

    def unavailable(claim: Claim) -> Evidence:
        raise DataUnavailable(REPRESENTATION_UNAVAILABLE)

    def nmi(claim: Claim) -> Evidence:
        nmi_of = representation.nmi
        a, b = claim.compares[0], rival(claim, lambda row: _seed_mean_of(nmi_of[row]))
        labels = representation.cluster_labels
        units = units_of(labels, "clustered test images")
        runs_a, runs_b = representation.clusters[a], representation.clusters[b]
        result = nmi_difference_bootstrap(runs_a, runs_b, labels, units, n_boot, seed)
        unit = "identities" if face else "images"
        return _evidence(result, runs_a, runs_b, units,
                         f"{a} − {b}, NMI (%) of fixed k-means clusters, seeds and test {unit} "
                         "resampled (interval centred on the effect)")

    if representation is None:
        return {"success": success_test, "l2": unavailable, "kl": unavailable,
                "nmi": unavailable}
    return {"success": success_test,
            "l2": per_image(representation.l2,
                            lambda: units_of(representation.test_labels, "test images"),
                            "fitted L2 distance", "test"),
            "kl": per_image(representation.kl,
                            lambda: units_of(representation.heldout_labels, "held-out images"),
                            "KL(teacher ‖ student)", "held-out" if not face else "training"),
            "nmi": nmi}


def check_claims(study: SRRLStudy, evaluations: Mapping[str, Any],
                 representation: Representation | None, n_boot: int, assess: bool,
                 seed: int = 0, unhealthy: Mapping[str, str] | None = None) -> pd.DataFrame:
    """Every claim of :func:`claims` checked by its test (:func:`claim_tests`); the thesis's
    claims only where :data:`PREMISE` holds and no row they compare is in ``unhealthy``
    (:func:`~fkdlib.evaluation.health.failed_models` of :func:`training_health`)."""
    return evaluate_claims(claims(study),
                           claim_tests(study, evaluations, representation, n_boot, seed),
                           assess, unhealthy)


# --- figures --------------------------------------------------------------------------------

# One colour per row in every figure; the KD zoo dashed, SRRL's rows solid, ours thicker.
ROW_COLORS = {TEACHER: "#000000", STUDENT: "#7F7F7F", "KD": "#E69F00", "FitNet": "#CC79A7",
              "AT": "#009E73", "RKD": "#6A3D9A", "PKT": "#8C564B", "L_FM": "#56B4E9",
              "L_SR": "#0072B2", OURS: "#D55E00"}


def row_styles(rows: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Matplotlib line options per row for :func:`fkdlib.report.figures.plot_roc`: dashed for
    the KD zoo, thicker for SRRL's L_FM + L_SR."""
    return {row: {"linestyle": "--" if row in KD_ZOO else "-",
                  "linewidth": 2.4 if row == OURS else 1.6} for row in rows}


def tsne_figure(points: Mapping[str, tuple[np.ndarray, np.ndarray]]) -> Figure:
    """The t-SNE points of :func:`tsne_points` (row -> (points, classes)), one panel per row in
    one line, one colour per class, no ticks and no legend; mirrors thesis Fig. 4.2 (t-SNE of
    the student's features without and with L_FM, L_SR and both, and of the teacher's)."""
    return figs.projection_grid(points)


def similarity_figure(evaluations: Mapping[str, Any],
                      rows: Sequence[str] = (STUDENT, *KD_ZOO, *SRRL_ROWS),
                      reference: str = TEACHER, protocol: str = "ijb") -> Figure:
    """Positive- and negative-pair cosine similarity densities on the ``protocol`` list, one
    panel per row of ``rows`` (three per row of panels) with the ``reference`` (the teacher's,
    black) in every panel, on shared axes ([-1, 1] and a log density axis:
    :func:`~fkdlib.report.figures.similarity_grid`), colours of :data:`ROW_COLORS`, one
    legend; the first seed's run of each row. The reference is drawn first, so where a row
    matches it the row's colour shows. Not a figure of the thesis: it shows how close each
    student's similarities come to the teacher's."""
    def pair(name: str) -> tuple[np.ndarray, np.ndarray]:
        run = _first(evaluations[name])
        return run.positives(protocol), run.negatives(protocol)

    return figs.similarity_grid({row: {reference: pair(reference), row: pair(row)}
                                 for row in rows},
                                value_range=(-1, 1), colors=ROW_COLORS)


def roc_figure(study: SRRLStudy, evaluations: Mapping[str, Any],
               rows: Sequence[str] = (STUDENT, *KD_ZOO, *SRRL_ROWS, TEACHER),
               protocol: str = "ijb") -> Figure:
    """ROC on the ``protocol`` list of every row of ``rows`` (:data:`ROW_COLORS`; the KD zoo
    dashed, SRRL's rows solid, L_FM+L_SR thicker: :func:`row_styles`), FAR from the lowest
    the list reports; the first seed's run of each row; the face analogue of thesis Fig. 4.3
    (ROC on MegaFace)."""
    first = {row: _first(evaluations[row]) for row in rows}
    min_far = lowest_reportable_far(first[rows[0]], protocol)
    return figs.roc_figure({row: first[row].roc(protocol) for row in rows},
                           figsize=(6.5, 5), min_far=min_far, colors=ROW_COLORS,
                           styles=row_styles(rows),
                           legend={"loc": "upper left", "ncol": 2, "fontsize": 8})


def cluster_table(study: SRRLStudy, evaluations: Mapping[str, Any],
                  rows: Sequence[str] = CLUSTER_ROWS, seed: int = 0) -> pd.DataFrame:
    """Cluster purity and AMI of the test embeddings of ``rows`` (every seed) against the test
    identities and SynthFace's attributes
    (:func:`~fkdlib.evaluation.clustering.cluster_quality`: k-means and Ward clusters,
    intervals resampling test identities and seeds). Face only."""
    if not study.is_face:
        raise ConfigError("cluster purity and AMI are measured on the face benchmark's test "
                          "identities; the CIFAR study has none")
    chosen = {row: _runs(evaluations[row]) for row in rows if row in evaluations}
    metadata = study.bench.test_metadata
    return cluster_quality(pool_embeddings(chosen), metadata,
                           targets=available_targets(metadata), random_state=seed)


def cluster_figure(table: pd.DataFrame) -> Figure:
    """The AMI of :func:`cluster_table` with its intervals, one colour per row
    (:data:`ROW_COLORS`), k-means and Ward told apart by marker."""
    return figs.plot_cluster_quality(table, colors=ROW_COLORS)


__all__ = [
    "CLUSTER_ROWS", "NMI_IDENTITIES", "PREMISE", "ROW_COLORS", "AnalysisImages",
    "CifarEvaluation", "Recipe", "Representation", "RowFeatures", "SRRLStudy",
    "analysis_images", "build_study", "check_claims", "claim_tests", "claims", "cluster_figure",
    "cluster_table", "collect_features", "evaluate", "multi_position_row",
    "nmi_difference_bootstrap", "recipes",
    "representation_analysis", "results_table", "roc_figure", "row_styles",
    "similarity_figure", "specs", "student_epochs", "success", "success_metric",
    "success_units", "table_4_12", "table_4_13", "table_4_19", "table_4_2", "table_4_3",
    "table_4_4", "table_4_5", "train", "training_health", "training_times", "tsne_figure",
    "tsne_points",
]
