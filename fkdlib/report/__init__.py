"""Reporting: result tables, figures in one style, claim checks and the papers' numbers."""

from .claims import Claim, ClaimResult, Evidence, evaluate_claims, save_claims
from .figures import (
    method_color,
    plot_cluster_quality,
    plot_embedding_2d,
    plot_roc,
    plot_similarity_distributions,
    plot_training_health,
    projection_grid,
    roc_figure,
    save_figure,
    similarity_grid,
    style_context,
    use_style,
)
from .references import list_references, load_reference, reference_table
from .results import markdown_table, save_table, side_by_side

__all__ = [
    "Claim", "ClaimResult", "Evidence", "evaluate_claims", "list_references", "load_reference",
    "markdown_table", "method_color", "plot_cluster_quality", "plot_embedding_2d", "plot_roc",
    "plot_similarity_distributions", "plot_training_health", "projection_grid", "reference_table", "roc_figure",
    "save_claims", "save_figure", "save_table", "side_by_side", "similarity_grid",
    "style_context", "use_style",
]
