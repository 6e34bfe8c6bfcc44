"""Notebook 05 — FAN-Face (thesis ch. 3; Yang, Bulat and Tzimiropoulos, "FAN-Face: a Simple
Orthogonal Improvement to Deep Face Recognition", AAAI 2020).

Size and cost (thesis Table 3.2): the integration layers are the claim's whole cost, so the
table prints, for IResNet-34 and -50, the recognition network's parameters and multiply-adds
with each integration variant, the FAN left out as the thesis's numbers evidently do, beside
the thesis's values and the increments over each baseline. Our IResNets are insightface's,
whose counts differ from the thesis's ResNets (34.1M against 31.8M for the 34-layer network),
so the increments are what compare.
"""

from __future__ import annotations

import pandas as pd
import torch

from ..evaluation.complexity import count_flops, count_parameters
from ..models import create_model
from ..report.references import reference_table

FAN_FACE_VARIANTS: dict[str, dict[str, str]] = {
    "H2, 1-1, BL": {"heatmaps": "h2", "integration": "basic", "connectivity": "1-1"},
    "H2, 1-M, BL": {"heatmaps": "h2", "integration": "basic", "connectivity": "1-M"},
    "H2, 1-1, SL": {"heatmaps": "h2", "integration": "simple", "connectivity": "1-1"},
    "H2, 1-1, AL": {"heatmaps": "h2", "integration": "advanced", "connectivity": "1-1"},
}
BASELINE = "ArcFace (baseline)"
THESIS_NETWORKS = {34: "ResNet34", 50: "ResNet50"}


def _frn_cost(name: str, input_size: int, **options) -> tuple[int, int]:
    """(parameters, multiply-adds) of a recognition network, its FAN (if any) left out."""
    with torch.device("meta"):
        model = create_model(name, input_size=input_size, **options)
    report = count_flops(model, input_size)
    params, macs = report.params, report.macs
    fan = getattr(model, "fan", None)
    if fan is not None:
        side = -(-input_size // fan.input_multiple) * fan.input_multiple
        params -= count_parameters(fan)
        macs -= count_flops(fan, side).macs
    return params, macs


def complexity_table(input_size: int = 112) -> pd.DataFrame:
    """Thesis Table 3.2 beside ours: one row per network and variant with our parameters (M)
    and multiply-adds (G) at ``input_size`` and their increments over the baseline, and the
    thesis's parameters (M), flops (G) and increments."""
    rows = []
    for depth, network in THESIS_NETWORKS.items():
        published = reference_table("fanface_table_3_2", setting=network).set_index("method")
        base_params, base_macs = _frn_cost(f"iresnet{depth}", input_size)
        variants = {BASELINE: (base_params, base_macs)}
        variants.update({name: _frn_cost("fan_face", input_size, depth=depth, **options)
                         for name, options in FAN_FACE_VARIANTS.items()})
        for name, (params, macs) in variants.items():
            rows.append({
                "network": network, "variant": name,
                "params_M": params / 1e6, "params_added_M": (params - base_params) / 1e6,
                "GMACs": macs / 1e9, "GMACs_added": (macs - base_macs) / 1e9,
                "thesis_params_M": published.loc[name, "Parameters"],
                "thesis_params_added_M": (published.loc[name, "Parameters"]
                                          - published.loc[BASELINE, "Parameters"]),
                "thesis_GFLOPs": published.loc[name, "FLOPs"],
                "thesis_GFLOPs_added": (published.loc[name, "FLOPs"]
                                        - published.loc[BASELINE, "FLOPs"]),
            })
    return pd.DataFrame(rows)
