"""The model zoo: trained models cached by what determines them, and how specs are trained.

- :mod:`.cache`: :class:`ModelSpec`, :func:`get_or_train`, :func:`train_all`, the cache key,
  :func:`with_seed` / :func:`train_seeds` (every model replicated over training seeds);
- :mod:`.methods`: the training methods (``classify``, ``distill``, ``distill_unlabeled``);
- :mod:`.recursive`: VarGFaceNet's recursive generations as chained specs;
- :mod:`.recipes`: the face-training recipe shared by the notebooks and their shared teacher.
"""

from .cache import (
    DEFAULT_CACHE_DIR, ModelSpec, TrainedModel, build_untrained, get_or_train, train_all,
    train_seeds, training_code_version, with_seed)
from .methods import METHODS, build_distiller, build_losses, build_unlabeled_distiller
from .recipes import (
    TEACHER_BACKBONE, TEACHER_HEAD, margin_spec, pretrain_spec, teacher_spec, training_spec)
from .recursive import recursive_specs

__all__ = [
    "DEFAULT_CACHE_DIR", "METHODS", "TEACHER_BACKBONE", "TEACHER_HEAD", "ModelSpec",
    "TrainedModel", "build_distiller", "build_losses", "build_unlabeled_distiller",
    "build_untrained", "get_or_train", "margin_spec", "pretrain_spec", "recursive_specs",
    "teacher_spec", "train_all", "train_seeds", "training_code_version", "training_spec",
    "with_seed",
]
