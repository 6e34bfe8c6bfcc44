"""SynthFace: the embedded, procedural face dataset (identities, attributes, landmarks).

``params`` samples who a face is and how each photo is taken, ``render`` photographs the 3-D
face model in batches on the CPU (``fkdlib.data.synthface.render.render``), ``dataset``
wraps both in a cached torch ``Dataset``, ``preview`` writes a labelled contact sheet and
``cli`` adds ``fkd synth preview``.
"""

from .dataset import METADATA_COLUMNS, SynthFace
from .params import (
    DIFFICULTIES,
    NUM_COHORTS,
    SPLIT_IDENTITY_BASE,
    IdentityParams,
    NuisanceParams,
    cohort_of,
    sample_identity,
    sample_nuisance,
)
from .preview import save_preview
from .render import RENDERER_VERSION, RenderOutput

__all__ = [
    "DIFFICULTIES", "METADATA_COLUMNS", "NUM_COHORTS", "RENDERER_VERSION", "SPLIT_IDENTITY_BASE",
    "IdentityParams", "NuisanceParams", "RenderOutput", "SynthFace", "cohort_of",
    "sample_identity", "sample_nuisance", "save_preview",
]
