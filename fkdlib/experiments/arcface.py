"""Notebook 01 — ArcFace (Deng et al., CVPR 2019): the margin-loss family on one backbone.

Every loss of the combined-margin family ``s·(cos(m1·θ_y + m2) − m3)`` (ArcFace Eq. 4) is
trained with the same IResNet-18 and recipe on the benchmark's training data, then evaluated on
the LFW-, CFP-FP-, AgeDB- and IJB-like protocols. The notebook calls the functions here; the
tests call them on the smoke profile.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from ..evaluation import seed_bootstrap
from ..heads import target_logit_curve
from ..report.claims import Claim, ClaimTest, Evidence, evaluate_claims
from ..report.evidence import face_tests
from ..report.references import load_reference, reference_table
from ..training.callbacks import angles_from_history, target_angles
from ..evaluation.benchmark import Evaluation, FaceBenchmark, evaluate_models
from ..zoo import DEFAULT_CACHE_DIR, TrainedModel, get_or_train, train_all, training_spec

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


def specs(bench: FaceBenchmark) -> dict:
    """One :class:`~fkdlib.zoo.ModelSpec` per loss, identical but for the head."""
    return {name: training_spec(bench, BACKBONE, head, head_kwargs=kwargs,
                                name=f"01_arcface/{name}", monitors=("target_angles",))
            for name, (head, kwargs) in LOSSES.items()}


def train(bench: FaceBenchmark, device: str | torch.device = "cpu",
          cache_dir=DEFAULT_CACHE_DIR, names: Sequence[str] | None = None,
          log=print) -> dict[str, TrainedModel]:
    """Train (or load from the model zoo) one model per loss (or the losses ``names``)."""
    return train_all(specs(bench), cache_dir=cache_dir, device=device, log=log, names=names)


def evaluate(models: Mapping[str, TrainedModel], bench: FaceBenchmark,
             device: str | torch.device = "cpu") -> dict[str, Evaluation]:
    """Every protocol of the benchmark for every model."""
    return evaluate_models(models, bench, device)


def paper_comparison(evaluations: Mapping[str, Evaluation]) -> pd.DataFrame:
    """Our LFW-/CFP-FP-/AgeDB-like accuracies beside the insightface combined-margin table."""
    paper = reference_table("arcface_combined_margin").set_index("method")
    rows = []
    for name, ev in evaluations.items():
        ours = ev.summary()
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


def tar_comparison(evaluations: Mapping[str, Evaluation]) -> pd.DataFrame:
    """IJB-like TAR at FAR beside thesis Table 3.1's AS5 rows (ResNet-34, IJB-B)."""
    table = load_reference("fanface_table_3_1")
    fars = (1e-5, 1e-4, 1e-3, 1e-2)
    rows = []
    for name, ev in evaluations.items():
        rows.append({"method": f"{name} (ours, IJB-like)",
                     **{f"TAR@{far:g}": ev.tar["ijb"][far] for far in fars}})
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

    The margin needs room on a circle shared by 8 classes (45° apart), so the toy ArcFace uses
    the paper's m = 0.5 with s = 16 (s = 64 saturates in 2-D).
    """
    profile = bench.profile
    data = dict(bench.train_data, num_identities=TOY_IDENTITIES,
                images_per_identity=max(16, 4 * profile.train_images_per_identity))
    toy = {}
    for name, head, kwargs in (("Softmax", "softmax", {}),
                               ("ArcFace", "arcface", {"s": 16.0, "m": 0.5})):
        spec = training_spec(bench, BACKBONE, head, head_kwargs=kwargs,
                             backbone_kwargs={"embedding_size": 2},
                             train_overrides={"epochs": max(profile.epochs, 4)},
                             name=f"01_arcface/toy-{name}").replace(data=data)
        model = get_or_train(spec, cache_dir=cache_dir, device=device, log=log)
        from ..data import build_dataset

        dataset = build_dataset(data)
        images = torch.from_numpy(np.ascontiguousarray(dataset.images_u8()))
        from ..data.transforms import to_float_image

        with torch.no_grad():
            model.backbone.eval()
            features = model.backbone(to_float_image(images)).numpy()
        toy[name] = ToyEmbedding(name, features, dataset.metadata["identity"].to_numpy(),
                                 model.head.normalized_weight().detach().numpy())
    return toy


def angle_statistics(models: Mapping[str, TrainedModel]) -> pd.DataFrame:
    """θ_y (degrees) of the monitored training images after the first and the last epoch."""
    rows = []
    for name, model in models.items():
        early = angles_from_history(model.history, 1)
        late = angles_from_history(model.history, -1)
        rows.append({"method": name, "early mean θ_y": early.mean(),
                     "late mean θ_y": late.mean(), "late − early": late.mean() - early.mean()})
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


def claim_tests(evaluations: Mapping[str, Evaluation], models: Mapping[str, TrainedModel],
                n_boot: int, seed: int = 0) -> dict[str, ClaimTest]:
    """The face-benchmark tests plus ``"theta"``: θ_y of the model's monitored training images
    after its last epoch minus after its first, paired over the images."""

    def theta(claim: Claim) -> Evidence:
        history = models[claim.compares[0]].history
        late, early = angles_from_history(history, -1), angles_from_history(history, 1)
        result = seed_bootstrap(late, early, paired=True, n_boot=n_boot, seed=seed)
        return Evidence.from_bootstrap(
            result, f"{claim.compares[0]} θ_y last epoch − first epoch (degrees), paired over "
            f"{late.size} monitored training images")

    return {**face_tests(evaluations, n_boot, seed), "theta": theta}


def check_claims(evaluations: Mapping[str, Evaluation], models: Mapping[str, TrainedModel],
                 n_boot: int, assess: bool, seed: int = 0) -> pd.DataFrame:
    """Every claim of :func:`claims` checked by its test (:func:`claim_tests`)."""
    return evaluate_claims(claims(), claim_tests(evaluations, models, n_boot, seed), assess)


__all__ = ["LOSSES", "MARGINS", "angle_statistics", "check_claims", "claim_tests", "claims",
           "evaluate", "paper_comparison", "specs", "tar_comparison", "target_angles",
           "target_logit_curves", "toy_embeddings", "train"]
