"""Knowledge distillation: the :class:`Distiller` task and one small module per loss.

=========  ===============================================================
name       loss (module)
=========  ===============================================================
angular    VarGFaceNet angular distillation (:mod:`.angular`)
kd         Hinton KD, T = 4 (:mod:`.kd`), with CE weight 0.1
fitnet     FitNet hints (:mod:`.fitnet`)
at         attention transfer, p = 2 (:mod:`.at`)
rkd        relational KD, distance 25 + angle 50 (:mod:`.rkd`)
pkt        probabilistic KT (:mod:`.pkt`)
srrl       SRRL L_FM + L_SR (:mod:`.srrl`)
fcd        ICD-Face feature consistency (:mod:`.icd`)
icd        ICD-Face intra-class compactness, feature banks (:mod:`.icd`)
=========  ===============================================================

Losses are registered in :data:`LOSSES` (:func:`register_loss`) with their published default
weight, which :func:`default_weights` lists, and built by name with :func:`create_loss`.
How a distilled student is trained from a plain :class:`~fkdlib.zoo.ModelSpec` (and
VarGFaceNet's recursive generations) lives beside the model zoo, in :mod:`fkdlib.zoo`.
"""

from .angular import ANGULAR_WEIGHT, AngularLoss, angular_distance
from .at import AT_STAGES, AT_WEIGHT, ATLoss, attention_map
from .base import (
    LOSSES, Distiller, create_loss, default_weights, feature_shape, feature_shapes, list_losses,
    register_loss)
from .fitnet import FITNET_WEIGHT, FitNetLoss, match_spatial
from .icd import (
    FCD_WEIGHT, ICD_BANDWIDTH, ICD_BINS, ICD_SLOTS, ICD_WEIGHT, FCDLoss, FeatureBank, ICDLoss,
    histogram_kl, soft_histogram)
from .kd import KD_CE_WEIGHT, KD_TEMPERATURE, KD_WEIGHT, KDLoss, kd_divergence, soft_target_kl
from .pkt import PKT_WEIGHT, PKTLoss, pkt_divergence
from .rkd import (
    RKD_ANGLE_WEIGHT, RKD_DISTANCE_WEIGHT, RKD_WEIGHT, RKDLoss, pairwise_distances,
    rkd_angle_loss, rkd_distance_loss)
from .srrl import (
    SRRL_WEIGHT, FrozenClassifier, SRRLLoss, l2_distance, teacher_classifier_from_head)
from .unlabeled import MIXUP_ALPHA, UnlabeledMixupDistiller

__all__ = [
    "ANGULAR_WEIGHT", "LOSSES", "AT_STAGES", "AT_WEIGHT", "FCD_WEIGHT", "FITNET_WEIGHT",
    "ICD_BANDWIDTH", "ICD_BINS", "ICD_SLOTS", "ICD_WEIGHT", "KD_CE_WEIGHT", "KD_TEMPERATURE",
    "KD_WEIGHT", "MIXUP_ALPHA", "PKT_WEIGHT", "RKD_ANGLE_WEIGHT", "RKD_DISTANCE_WEIGHT",
    "RKD_WEIGHT", "SRRL_WEIGHT", "ATLoss", "AngularLoss", "Distiller", "FCDLoss", "FeatureBank",
    "FitNetLoss", "FrozenClassifier", "ICDLoss", "KDLoss", "PKTLoss", "RKDLoss", "SRRLLoss",
    "UnlabeledMixupDistiller", "angular_distance", "attention_map", "create_loss", "default_weights", "feature_shape", "feature_shapes", "histogram_kl",
    "kd_divergence", "l2_distance", "list_losses", "match_spatial", "pairwise_distances",
    "pkt_divergence", "register_loss", "rkd_angle_loss", "rkd_distance_loss",
    "soft_histogram", "soft_target_kl", "teacher_classifier_from_head",
]
