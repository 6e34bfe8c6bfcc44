"""Evaluation: embeddings (flip test), verification, identification, similarity analysis,
clustering, 2-D projections, model complexity and latency, classifier outputs, and the face
benchmark that ties data, protocols, embeddings, metrics and paired comparisons together
(:mod:`.benchmark`). (UMAP is imported only when asked for.)"""

from fkdlib.evaluation.benchmark import (
    PROTOCOL_LABELS, Evaluation, FaceBenchmark, evaluate, evaluate_seeds,
    face_benchmark, first_seed, pool_embeddings, summary_table)
from fkdlib.evaluation.classification import (
    ClassificationEvaluation, fitted_l2, label_cross_entropy, model_outputs, teacher_kl)
from fkdlib.evaluation.comparisons import (
    closeness_bootstrap, compare, metric_function, stratified_mean_bootstrap)
from fkdlib.evaluation.clustering import (
    SYNTHFACE_TARGETS, ClusterAnalysis, available_targets, cluster_embeddings, cluster_quality,
    kmeans, nmi_bootstrap, purity, sinkhorn_knopp)
from fkdlib.evaluation.health import HealthGate, model_health, training_health
from fkdlib.evaluation.uncertainty import (
    hierarchical_bootstrap, identity_weights, minimum_detectable_effect)
from fkdlib.evaluation.latency import measure_latency
from fkdlib.evaluation.complexity import count_flops, count_parameters, profile_model
from fkdlib.evaluation.embed import extract_embeddings, pair_embeddings
from fkdlib.evaluation.identification import IdentificationResult, evaluate_identification
from fkdlib.evaluation.projection import project
from fkdlib.evaluation.similarity import (
    BootstrapResult,
    best_threshold_accuracy,
    d_prime,
    mean_negative_similarity,
    mean_positive_similarity,
    pair_similarities,
    paired_bootstrap,
    roc_auc,
    seed_bootstrap,
    similarity_stats,
    tar_at_far,
)
from fkdlib.evaluation.verification import (
    DEFAULT_FAR_TARGETS,
    THRESHOLDS,
    VerificationResult,
    equal_error_rate,
    evaluate_verification,
    kfold_accuracy,
)

__all__ = [
    "PROTOCOL_LABELS",
    "ClassificationEvaluation",
    "ClusterAnalysis",
    "SYNTHFACE_TARGETS",
    "available_targets",
    "pool_embeddings",
    "HealthGate",
    "cluster_embeddings",
    "cluster_quality",
    "hierarchical_bootstrap",
    "identity_weights",
    "minimum_detectable_effect",
    "model_health",
    "training_health",
    "Evaluation",
    "FaceBenchmark",
    "closeness_bootstrap",
    "compare",
    "evaluate_seeds",
    "first_seed",
    "metric_function",
    "stratified_mean_bootstrap",
    "evaluate",
    "face_benchmark",
    "fitted_l2",
    "label_cross_entropy",
    "measure_latency",
    "model_outputs",
    "nmi_bootstrap",
    "summary_table",
    "teacher_kl",
    "count_flops",
    "count_parameters",
    "kmeans",
    "profile_model",
    "project",
    "purity",
    "sinkhorn_knopp",
    "BootstrapResult",
    "DEFAULT_FAR_TARGETS",
    "IdentificationResult",
    "THRESHOLDS",
    "VerificationResult",
    "best_threshold_accuracy",
    "d_prime",
    "equal_error_rate",
    "evaluate_identification",
    "evaluate_verification",
    "extract_embeddings",
    "kfold_accuracy",
    "mean_negative_similarity",
    "mean_positive_similarity",
    "pair_embeddings",
    "pair_similarities",
    "paired_bootstrap",
    "roc_auc",
    "seed_bootstrap",
    "similarity_stats",
    "tar_at_far",
]
