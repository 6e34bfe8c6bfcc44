"""Evaluation: embeddings (flip test), verification, identification, similarity analysis,
clustering, 2-D projections and model complexity. (UMAP is imported only when asked for.)"""

from fkdlib.evaluation.clustering import ClusterAnalysis, kmeans, purity, sinkhorn_knopp
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
    "ClusterAnalysis",
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
