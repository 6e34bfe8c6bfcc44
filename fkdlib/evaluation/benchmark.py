"""The face benchmark every face notebook stands on: data → protocols → embeddings → metrics →
comparisons.

:func:`face_benchmark` builds the training-data spec and the evaluation protocols for a profile;
:func:`evaluate` embeds every image pool of the benchmark with one backbone (flip test) and
scores every protocol; :func:`evaluate_seeds` does it for every training run of a dict of
trained models; :func:`summary_table` gives one row per model (the mean over its runs). The
comparisons of two models, the evidence of most claims, are in
:mod:`fkdlib.evaluation.comparisons`.

On SynthFace (``data="synthface"``) the benchmark is: a training split; a test split of
identities disjoint from it on which the LFW-, CFP-FP- and AgeDB-like pair lists (the real
benchmarks' sizes times the profile's ``protocol_scale``, :data:`REAL_PAIRS`) and the IJB-like
template list are drawn (:mod:`fkdlib.data.synthface.protocols`); and a distractor set of
further disjoint identities for MegaFace-like identification. On real data the benchmark has
the protocols the files provide (:mod:`fkdlib.evaluation.sources`): ``data="rec:DIR"`` trains
on insightface's ``DIR/train.rec`` and verifies on the ``.bin`` files in ``DIR``;
``data="folder:DIR"`` trains on ``DIR/train/<identity>/`` and evaluates on ``DIR/*.bin``,
``DIR/pairs.txt`` and ``DIR/test/<identity>/``. ``eval_sets="lfw"`` adds the official LFW pairs
(scikit-learn's loader) to any of them. :attr:`FaceBenchmark.protocols` says what a benchmark
has; asking an :class:`Evaluation` for a protocol it lacks raises
:class:`~fkdlib.errors.DataUnavailable`, which the claims report as not assessed.

TAR at a FAR is reported only where at least :data:`MIN_NEGATIVES_ABOVE` negatives lie above
the threshold (:func:`reportable_fars`); elsewhere it is NaN.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn as nn
from sklearn.metrics import roc_curve

from ..data import parse_data_arg
from ..data.synthface.protocols import (
    IdentificationSplit, PairProtocol, check_identity_disjoint, identification_split,
    ijb_template_pairs)
from ..data.synthface.sizes import (  # noqa: F401  (re-exported: the benchmark's sizes)
    AGE_GAP_FRACTION, PROFILE_FRACTION, REAL_PAIRS, pairs_per_fold_of, protocol_pairs_per_fold,
    synthface_data_spec, verification_lists)
from ..data.transforms import to_float_image
from ..errors import ConfigError, DataUnavailable, MissingDataError
from ..profiles import Profile, get_profile
from .embed import extract_embeddings
from .identification import IdentificationResult, evaluate_identification
from .similarity import similarity_stats, tar_at_far
from .sources import REAL_BINS
from .verification import VerificationResult, evaluate_verification

PROTOCOL_LABELS = {"lfw": "LFW-like", "cfp_fp": "CFP-FP-like", "agedb": "AgeDB-like",
                   "calfw": "CALFW", "cplfw": "CPLFW", "ijb": "IJB-like",
                   "lfw_real": "LFW (real)", "identification": "identification"}
FARS = (1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6)
# A TAR at FAR f on N negatives rests on the f * N negatives the threshold lets through; it is
# reported only when at least this many are (see reportable_fars), else it is NaN.
MIN_NEGATIVES_ABOVE = 100
# IJB-like templates: every test identity's images split into this many disjoint templates
# (two of ~half its images each: one genuine template pair per identity).
IJB_TEMPLATES_PER_IDENTITY = 2
# Cap on IJB-like negative template pairs (a seeded uniform subset of all of them; the
# default profile's 2,000 templates have ~2 million). 200,000 puts 200 negatives above the
# TAR@1e-3 threshold, twice MIN_NEGATIVES_ABOVE (1e-4 would need 1,000,000), while keeping
# what scales with it small: 3.2 MB of pairs and 1.6 MB of scores per model, and the claims'
# 2,000 paired-bootstrap resamples of TAR@1e-3 over ~200,000 pairs.
IJB_MAX_NEGATIVES = 200_000


@dataclass
class VerificationSet:
    """A pair list over one image pool of the benchmark."""

    name: str
    pool: str
    protocol: PairProtocol
    source: str = "SynthFace test split"

    @property
    def label(self) -> str:
        return PROTOCOL_LABELS.get(self.name, self.name)


@dataclass
class FaceBenchmark:
    """Training data spec + image pools + protocols, for one profile and seed."""

    profile: Profile
    seed: int
    train_data: dict[str, Any]
    pools: dict[str, Any]
    verification: dict[str, VerificationSet]
    identification: IdentificationSplit | None = None
    test_metadata: pd.DataFrame | None = None
    # what the notebooks should know about the data (protocols that could not be drawn ...)
    notes: list[str] = field(default_factory=list)
    # the training data in words, for captions ("SynthFace", "faces_emore (insightface .rec)")
    source: str = "SynthFace"

    @property
    def synthetic(self) -> bool:
        """Trained on SynthFace, whose exact attributes and landmarks some analyses need."""
        return self.train_data.get("kind") == "synthface"

    @property
    def protocols(self) -> tuple[str, ...]:
        """The protocol keys this data provides: the pair lists, and ``"identification"``."""
        extra = ("identification",) if self.identification is not None else ()
        return (*self.verification, *extra)

    def missing(self, protocol: str) -> str:
        """Why an analysis of ``protocol`` is skipped on this data, in words."""
        return unavailable_message(protocol)

    @property
    def pair_protocol(self) -> str:
        """The list the similarity figures and TAR tables read: the IJB-like template list
        where there is one, else the list with the most negative pairs."""
        if "ijb" in self.verification:
            return "ijb"
        return max(self.verification, key=lambda key: self.verification[key].protocol
                   .num_negative)

    def describe(self) -> pd.DataFrame:
        """One row per protocol (the notebooks' ``protocols.csv``).

        Columns: ``protocol`` (label), ``key``, ``source`` (where the list comes from),
        ``pool``, ``folds`` (NA for all-pairs lists),
        ``pairs``, ``positives``, ``negatives``, ``identities`` (distinct identities in the
        list; NA where unknown, as in the real ``.bin`` files), ``templates`` (NA for image
        pairs) and ``lowest reportable FAR`` (the lowest of :data:`FARS` that
        :func:`reportable_fars` allows, NaN if none).
        """
        rows = []
        for key, vset in self.verification.items():
            protocol = vset.protocol
            known = protocol.labels[protocol.labels >= 0] if np.issubdtype(
                protocol.labels.dtype, np.number) else protocol.labels
            fars = reportable_fars(protocol.num_negative)
            rows.append({
                "protocol": vset.label, "key": key, "source": vset.source, "pool": vset.pool,
                "folds": (pd.NA if protocol.fold is None
                          else int(np.unique(protocol.fold).size)),
                "pairs": protocol.num_pairs, "positives": protocol.num_positive,
                "negatives": protocol.num_negative,
                "identities": int(np.unique(known).size) if known.size else pd.NA,
                "templates": (pd.NA if protocol.templates is None
                              else protocol.templates.num_templates),
                "lowest reportable FAR": min(fars) if fars else float("nan"),
            })
        frame = pd.DataFrame(rows)
        for column in ("folds", "identities", "templates"):
            if column in frame:
                frame[column] = frame[column].astype("Int64")
        return frame


def reportable_fars(num_negatives: int, fars: tuple[float, ...] = FARS) -> tuple[float, ...]:
    """The FARs of ``fars`` at which a TAR on ``num_negatives`` negatives is reported: those
    with at least :data:`MIN_NEGATIVES_ABOVE` negatives above the threshold,
    ``far * num_negatives >= MIN_NEGATIVES_ABOVE`` (in ``fars``' order)."""
    if isinstance(num_negatives, bool) or int(num_negatives) != num_negatives or num_negatives < 0:
        raise ConfigError(f"num_negatives must be a non-negative integer, got {num_negatives!r}")
    # The tolerance absorbs float error (1e-4 * 1e6 may be 99.99999999999999).
    return tuple(far for far in fars
                 if far * int(num_negatives) >= MIN_NEGATIVES_ABOVE * (1 - 1e-9))


def lowest_reportable_far(evaluation: Evaluation, protocol: str) -> float:
    """The lowest FAR with :data:`MIN_NEGATIVES_ABOVE` of the protocol's negatives above the
    threshold (where a ROC curve of ``evaluation`` should start)."""
    return MIN_NEGATIVES_ABOVE / max(1, evaluation.num_negatives(protocol))


def _synthface_benchmark(profile: Profile, seed: int, aligned: bool = True) -> FaceBenchmark:
    from ..data.synthface import SynthFace

    # the specs name the crop only when it is not the aligned default, so keys stay put
    crop = {} if aligned else {"aligned": False}
    train_data = synthface_data_spec(profile, "train", seed, **crop)
    test_spec = synthface_data_spec(profile, "test", seed, **crop)
    test = SynthFace(**{k: v for k, v in test_spec.items() if k != "kind"})
    distractors = SynthFace(split="test", num_identities=profile.identification_distractors,
                            images_per_identity=1, resolution=profile.resolution, seed=seed,
                            difficulty=profile.difficulty,
                            identity_offset=profile.test_identities, aligned=aligned)
    train_meta = SynthFace(**{k: v for k, v in train_data.items() if k != "kind"}).metadata
    meta = test.metadata
    check_identity_disjoint(train_meta, meta, names=("train", "test"))
    check_identity_disjoint(meta, distractors.metadata, names=("test", "distractors"))
    protocols = {
        **verification_lists(profile, meta, seed),
        "ijb": ijb_template_pairs(meta, templates_per_identity=IJB_TEMPLATES_PER_IDENTITY,
                                  max_negatives=IJB_MAX_NEGATIVES, seed=seed),
    }
    verification = {name: VerificationSet(name, "test", p) for name, p in protocols.items()}
    ident = identification_split(meta, distractors.metadata, seed=seed)
    return FaceBenchmark(profile, seed, train_data, {"test": test, "distractors": distractors},
                         verification, ident, meta)


def _real_benchmark(profile: Profile, seed: int, spec: dict) -> FaceBenchmark:
    """A benchmark of real data (module docstring): the training set of ``rec:`` or
    ``folder:`` and every protocol its folder provides."""
    from .sources import bin_protocols, identity_folder_protocols, pairs_txt_protocol

    root = Path(spec["path"])
    pools: dict[str, Any] = {}
    verification: dict[str, VerificationSet] = {}
    identification, metadata, notes = None, None, []
    if spec["kind"] == "recordio":
        folder = root if root.is_dir() else root.parent
        train_data = {"kind": "recordio", "path": str(root), "image_size": profile.resolution}
    else:
        folder = root
        if not (root / "train").is_dir():
            raise MissingDataError(f"data='folder:{root}': expected the training identities in "
                                   f"{root / 'train'}/<identity>/<images>")
        train_data = {"kind": "folder", "path": str(root / "train"),
                      "image_size": profile.resolution}
    for key, (pool, protocol, source) in bin_protocols(folder, profile).items():
        pools[key] = pool
        verification[key] = VerificationSet(key, key, protocol, source)
    if spec["kind"] == "folder":
        listed = pairs_txt_protocol(root, profile)
        if listed is not None:
            if "lfw" in verification:
                notes.append(f"{root / 'pairs.txt'} ignored: lfw.bin already gives the LFW list")
            else:
                pools["lfw"] = listed[0]
                verification["lfw"] = VerificationSet("lfw", "lfw", listed[1], listed[2])
        if (root / "test").is_dir():
            drawn = identity_folder_protocols(root / "test", profile, seed,
                                              with_lfw="lfw" not in verification)
            pools.update(drawn["pools"])
            for key, protocol in drawn["verification"].items():
                verification[key] = VerificationSet(key, "test", protocol,
                                                    "test/ identities")
            identification, metadata = drawn["identification"], drawn["metadata"]
            notes.extend(drawn["notes"])
    if metadata is not None:
        notes.append("cluster purity and AMI are scored against the test identities alone: "
                      "the attribute targets (age, gender, skin tone, pose, cohort) exist only "
                      "on SynthFace")
    kind = "insightface .rec" if spec["kind"] == "recordio" else "image folders"
    return FaceBenchmark(profile, seed, train_data, pools, verification, identification,
                         metadata, notes, f"{root.name} ({kind})")


def _add_eval_sets(bench: FaceBenchmark, eval_sets: Sequence[str]) -> FaceBenchmark:
    from .sources import SKLEARN_LFW, sklearn_lfw_protocol

    for name in eval_sets:
        if name == "lfw":
            pool, protocol, source = sklearn_lfw_protocol(bench.profile)
            bench.pools[SKLEARN_LFW] = pool
            bench.verification[SKLEARN_LFW] = VerificationSet(SKLEARN_LFW, SKLEARN_LFW,
                                                              protocol, source)
    return bench


def face_benchmark(profile: str | Profile = "default", seed: int = 0,
                   data: str = "synthface", eval_sets: str = "",
                   aligned: bool = True) -> FaceBenchmark:
    """Build the benchmark a notebook trains and evaluates on: ``data`` is ``"synthface"``,
    ``"rec:DIR"`` or ``"folder:DIR"`` (module docstring); ``eval_sets`` adds evaluation-only
    real sets (``"lfw"``: the official LFW pairs through scikit-learn). ``aligned=False``
    gives SynthFace's unaligned crops (face boxes with jitter in scale and position, as a
    detector gives them; FAN-Face's input); real data is used as its files give it."""
    from .sources import parse_eval_sets

    profile = get_profile(profile)
    extra = parse_eval_sets(eval_sets)
    spec = parse_data_arg(data)
    if spec["kind"] == "synthface":
        bench = _synthface_benchmark(profile, seed, aligned)
    elif spec["kind"] in ("recordio", "folder"):
        bench = _real_benchmark(profile, seed, spec)
        if not aligned:
            bench.notes.append("the faces are used as the data gives them (aligned=False "
                               "chooses SynthFace's unaligned crops only)")
    else:
        raise ConfigError(f"data={data!r}: face notebooks need 'synthface', 'rec:DIR' (insightface "
                          "train.rec and .bin files) or 'folder:DIR' (DIR/train/<identity>/)")
    bench = _add_eval_sets(bench, extra)
    if not bench.verification and bench.identification is None:
        raise MissingDataError(
            f"data={data!r} provides no evaluation protocol: put insightface .bin files "
            f"({', '.join(REAL_BINS.values())}) beside the training data, a pairs.txt with its "
            "images under test/ or lfw/, or test/<identity>/ folders (folder: data), or add "
            "eval_sets='lfw'")
    return bench


def unavailable_message(protocol: str) -> str:
    """``"no IJB-like list in this data"``: why what needs ``protocol`` is not assessed."""
    if protocol == "identification":
        return "no identification protocol (gallery, probes) in this data"
    if protocol == "test identities":
        return ("no labelled test identities in this data (SynthFace's test split, or "
                "DIR/test/<identity>/ with data='folder:DIR')")
    return f"no {PROTOCOL_LABELS.get(protocol, protocol)} list in this data"


class ProtocolResults(dict):
    """Per-protocol results: asking for a protocol the data lacks raises
    :class:`~fkdlib.errors.DataUnavailable` (a ``KeyError``) that says so."""

    def __missing__(self, protocol: str) -> Any:
        raise DataUnavailable(unavailable_message(protocol))


@dataclass
class Evaluation:
    """A backbone's results on every protocol of a benchmark (protocols the data lacks raise
    :class:`~fkdlib.errors.DataUnavailable`)."""

    name: str
    verification: dict[str, VerificationResult]
    scores: dict[str, np.ndarray]
    issame: dict[str, np.ndarray]
    tar: dict[str, dict[float, float]]
    embeddings: dict[str, np.ndarray] = field(repr=False)
    identification: IdentificationResult | None = None
    # protocol -> (first, second) identity of each pair's two sides (-1: unknown)
    identities: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict,
                                                                 repr=False)

    def __post_init__(self) -> None:
        for name in ("verification", "scores", "issame", "tar", "embeddings", "identities"):
            setattr(self, name, ProtocolResults(getattr(self, name)))

    def positives(self, protocol: str) -> np.ndarray:
        return self.scores[protocol][self.issame[protocol]]

    def negatives(self, protocol: str) -> np.ndarray:
        return self.scores[protocol][~self.issame[protocol]]

    def roc(self, protocol: str) -> tuple[np.ndarray, np.ndarray]:
        fpr, tpr, _ = roc_curve(self.issame[protocol], self.scores[protocol])
        return fpr, tpr

    def num_negatives(self, protocol: str) -> int:
        return int((~self.issame[protocol]).sum())

    def summary(self) -> dict[str, float]:
        """One table row: 10-fold accuracies (%), IJB-like TAR at the reportable FARs among
        1e-4, 1e-3 and 1e-2 (:func:`reportable_fars`), rank-1 (%)."""
        row: dict[str, float] = {}
        for name, result in self.verification.items():
            row[f"{PROTOCOL_LABELS.get(name, name)} acc"] = 100 * result.accuracy_mean
        if "ijb" in self.tar:
            for far in reportable_fars(self.num_negatives("ijb"), (1e-4, 1e-3, 1e-2)):
                row[f"IJB-like TAR@{far:g}"] = self.tar["ijb"][far]
        if self.identification is not None:
            row["rank-1"] = 100 * self.identification.rank_accuracies[1]
        return row


def _pool_tensor(pool: Any) -> torch.Tensor | Any:
    if isinstance(pool, torch.Tensor):
        return to_float_image(pool) if pool.dtype == torch.uint8 else pool
    if hasattr(pool, "images_u8"):
        return to_float_image(torch.from_numpy(np.ascontiguousarray(pool.images_u8())))
    return pool


def _scores(embeddings: np.ndarray, protocol: PairProtocol, chunk: int = 65536) -> np.ndarray:
    out = np.empty(protocol.num_pairs, dtype=np.float64)
    first, second = protocol.first, protocol.second
    for start in range(0, protocol.num_pairs, chunk):
        a = embeddings[first[start:start + chunk]]
        b = embeddings[second[start:start + chunk]]
        out[start:start + chunk] = np.einsum("ij,ij->i", a, b)
    return np.clip(out, -1.0, 1.0)


def protocol_embeddings(embeddings: np.ndarray, protocol: PairProtocol) -> np.ndarray:
    """What a protocol's ``rows`` index: the pool's image embeddings, or for a template
    protocol its template embeddings (:meth:`~fkdlib.data.synthface.protocols.Templates.pool`:
    mean of the L2-normalised image embeddings, renormalised)."""
    if protocol.templates is None:
        return embeddings
    return protocol.templates.pool(embeddings)


def tar_at_reportable_fars(scores: np.ndarray, issame: np.ndarray,
                           fars: tuple[float, ...] = FARS) -> dict[float, float]:
    """TAR at every FAR of ``fars``; NaN at those :func:`reportable_fars` refuses."""
    allowed = set(reportable_fars(int((~issame).sum()), fars))
    return {far: float(tar_at_far(scores, issame, far=far)) if far in allowed else float("nan")
            for far in fars}


def evaluate(backbone: nn.Module, bench: FaceBenchmark, name: str = "",
             device: torch.device | str = "cpu", batch_size: int = 256) -> Evaluation:
    """Flip-test embeddings of every pool, then every protocol (insightface verification on
    the folded lists; TAR at FAR on all lists, NaN where fewer than
    :data:`MIN_NEGATIVES_ABOVE` negatives lie above the threshold; template lists scored on
    pooled template embeddings; identification with distractors)."""
    embeddings = {
        pool: extract_embeddings(backbone, _pool_tensor(data), batch_size=batch_size,
                                 device=device).cpu().numpy().astype(np.float64)
        for pool, data in bench.pools.items()
    }
    verification, scores, issame, tar, identities = {}, {}, {}, {}, {}
    for key, vset in bench.verification.items():
        protocol = vset.protocol
        emb = protocol_embeddings(embeddings[vset.pool], protocol)
        scores[key] = _scores(emb, protocol)
        issame[key] = protocol.issame.astype(bool)
        identities[key] = (np.asarray(protocol.labels[0::2]), np.asarray(protocol.labels[1::2]))
        tar[key] = tar_at_reportable_fars(scores[key], issame[key])
        if protocol.fold is not None:
            verification[key] = evaluate_verification(
                emb[protocol.rows], protocol.issame, nrof_folds=bench.profile.verification_folds,
                far_targets=reportable_fars(protocol.num_negative))
    identification = None
    if bench.identification is not None:
        split = bench.identification
        test = embeddings["test"]
        distractors = (embeddings["distractors"][split.distractor_rows]
                       if split.distractor_rows.size else None)
        identification = evaluate_identification(
            test[split.gallery_rows], split.gallery_labels, test[split.probe_rows],
            split.probe_labels, distractor_emb=distractors)
    return Evaluation(name or getattr(backbone, "name", "model"), verification, scores, issame,
                      tar, embeddings, identification, identities)


def evaluate_seeds(models: Mapping[str, Sequence[Any]], bench: FaceBenchmark,
                   device: torch.device | str = "cpu") -> dict[str, list[Evaluation]]:
    """:func:`evaluate` for every training run of every model
    (:func:`fkdlib.zoo.train_seeds`): ``{name: [Evaluation of seed 0, ...]}``."""
    return {name: [evaluate(model.backbone, bench, name=name, device=device)
                   for model in runs]
            for name, runs in models.items()}


def first_seed(evaluations: Mapping[str, Sequence[Evaluation]]) -> dict[str, Evaluation]:
    """The first run of every model: what a figure of one run shows."""
    return {name: runs[0] for name, runs in evaluations.items()}


def pool_embeddings(evaluations: Mapping[str, Sequence[Evaluation]], pool: str | None = None
                    ) -> dict[str, list[np.ndarray]]:
    """``{name: [embeddings of the pool, one array per run]}`` (for the training-health and
    clustering tables); by default the ``"test"`` pool, or the first pool where the data has
    no test identities (a real benchmark of ``.bin`` files)."""
    return {name: [ev.embeddings[pool or analysis_pool(ev)] for ev in runs]
            for name, runs in evaluations.items()}


def analysis_pool(evaluation: Evaluation) -> str:
    """The image pool analyses of embeddings read: ``"test"`` (unseen test identities) where
    the data has one, else the first pool (a real benchmark of ``.bin`` files)."""
    return "test" if "test" in evaluation.embeddings else next(iter(evaluation.embeddings))


def similarity_table(evaluations: Mapping[str, Sequence[Evaluation]],
                     protocol: str = "ijb") -> pd.DataFrame:
    """:func:`~fkdlib.evaluation.similarity.similarity_stats` of each model's positive and
    negative pairs on ``protocol``, the mean over its runs; models as rows."""
    return pd.DataFrame({
        name: {**seed_mean([similarity_stats(ev.positives(protocol), ev.negatives(protocol))
                            for ev in runs]), "seeds": len(runs)}
        for name, runs in evaluations.items()}).T


def seed_average(table: Callable[..., pd.DataFrame],
                 evaluations: Mapping[str, Sequence[Evaluation]], *args: Any,
                 **kwargs: Any) -> pd.DataFrame:
    """A table of one run per model (``table({name: Evaluation}, *args, **kwargs)``) made for
    every seed and averaged: float columns are the mean over the seeds, the rows and the other
    columns those of the first seed's table; a ``seeds`` column says how many."""
    seeds = min(len(runs) for runs in evaluations.values())
    frames = [table({name: runs[s] for name, runs in evaluations.items()}, *args, **kwargs)
              for s in range(seeds)]
    averaged = frames[0].copy()
    for column in averaged.columns:
        if pd.api.types.is_float_dtype(averaged[column]):
            averaged[column] = np.mean([f[column].to_numpy(dtype=float) for f in frames], axis=0)
    averaged["seeds"] = seeds
    return averaged


def seed_mean(rows: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """Column means of per-seed table rows (keys in the first row's order)."""
    return {key: float(np.mean([row[key] for row in rows])) for key in rows[0]}


def identity_sample_rows(metadata: pd.DataFrame | Any, identities: int,
                         max_points: int | None = None, seed: int = 0) -> np.ndarray:
    """Rows of an image pool for a 2-D projection: every image of ``identities`` identities
    drawn without replacement with ``seed`` (``numpy.random.default_rng(seed).choice`` of the
    sorted distinct identities), in pool order, at most the first ``max_points`` of them.

    ``metadata`` is a pool's metadata with an ``identity`` column (e.g.
    :attr:`FaceBenchmark.test_metadata`) or the identity labels themselves. All identities are
    taken when there are fewer than ``identities``.
    """
    labels = (metadata["identity"] if isinstance(metadata, pd.DataFrame) else metadata)
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ConfigError(f"identity labels must be 1-D, got shape {labels.shape}")
    if isinstance(identities, bool) or int(identities) < 1:
        raise ConfigError(f"identities must be a positive integer, got {identities!r}")
    unique = np.unique(labels)
    chosen = np.random.default_rng(seed).choice(unique, size=min(int(identities), unique.size),
                                                replace=False)
    rows = np.flatnonzero(np.isin(labels, chosen))
    return rows if max_points is None else rows[:max_points]


def summary_table(evaluations: Mapping[str, Evaluation | Sequence[Evaluation]]
                  ) -> pd.DataFrame:
    """Methods as rows, metrics as columns; a model's runs (one Evaluation per seed) give the
    mean over seeds and a ``seeds`` column."""
    rows = {}
    for name, runs in evaluations.items():
        if isinstance(runs, Evaluation):
            rows[name] = runs.summary()
        else:
            rows[name] = {**seed_mean([ev.summary() for ev in runs]), "seeds": len(runs)}
    return pd.DataFrame(rows).T
