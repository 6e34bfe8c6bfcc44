"""The papers' own numbers, stored as data to print beside ours.

Each table of a paper is one tidy CSV in ``fkdlib/report/references/`` with the columns

``setting``  a grouping the paper uses (backbone, dataset, teacher/student pair; may be empty)
``method``   the row as the paper labels it
``metric``   the column (``LFW``, ``TAR@FAR=1e-4``, ``Top-1`` ...)
``value``    the number as published (empty where the paper prints "–")
``unit``     ``%``, ``fraction``, ``M`` ...
``source``   paper, table, datasets and models
``note``     transcription remarks, e.g. a value taken from a caption or a doubtful digit

Names follow ``<paper>_table_<chapter>_<n>`` for the thesis chapters (``fanface_`` for
chapter 3, ``srrl_`` for 4, ``condface_`` for 5) and a short description otherwise
(``arcface_combined_margin``, ``vargfacenet_official``, ``insightface_model_sizes``).
"""

from __future__ import annotations

import re
from importlib import resources

import pandas as pd

from ..errors import ConfigError, DataFormatError

REFERENCE_COLUMNS = ("setting", "method", "metric", "value", "unit", "source", "note")
_TEXT_COLUMNS = ("setting", "method", "metric", "unit", "source", "note")


def _folder():
    return resources.files("fkdlib.report").joinpath("references")


def list_references() -> list[str]:
    """Names of the stored reference tables in natural order (``srrl_table_4_2`` before 4_10)."""
    names = [entry.name[:-4] for entry in _folder().iterdir() if entry.name.endswith(".csv")]
    return sorted(names, key=lambda name: [int(part) if part.isdigit() else part
                                           for part in re.split(r"(\d+)", name)])


def load_reference(name: str) -> pd.DataFrame:
    """One paper table as a tidy DataFrame with the columns of :data:`REFERENCE_COLUMNS`.

    Text columns hold ``""`` rather than NaN where empty; ``value`` is float (NaN = "–").

    Raises:
        ConfigError: for an unknown name (the message lists the available ones).
        DataFormatError: if the stored file does not have the expected columns.
    """
    available = list_references()
    if name not in available:
        raise ConfigError(f"unknown reference table {name!r}; available: {', '.join(available)}")
    entry = _folder().joinpath(f"{name}.csv")
    with entry.open("r", encoding="utf-8") as handle:
        frame = pd.read_csv(handle, dtype={c: str for c in _TEXT_COLUMNS}, keep_default_na=False,
                            na_values={"value": [""]})
    if tuple(frame.columns) != REFERENCE_COLUMNS:
        raise DataFormatError(
            f"reference table {entry} has columns {list(frame.columns)}; "
            f"expected {list(REFERENCE_COLUMNS)}"
        )
    frame["value"] = pd.to_numeric(frame["value"], errors="raise").astype(float)
    return frame


def reference_table(name: str, setting: str | None = None) -> pd.DataFrame:
    """A reference table in the paper's wide layout: one row per method, one column per metric.

    Rows and columns keep the paper's order. If the table has several settings, choose one
    with ``setting``; otherwise ``setting`` becomes a leading index level.
    """
    frame = load_reference(name)
    if setting is not None:
        settings = list(dict.fromkeys(frame["setting"]))
        if setting not in settings:
            raise ConfigError(
                f"reference table {name!r} has no setting {setting!r}; its settings are {settings}"
            )
        frame = frame[frame["setting"] == setting]
    index = ["method"] if frame["setting"].nunique() == 1 else ["setting", "method"]
    wide = frame.pivot(index=index, columns="metric", values="value")
    order = list(dict.fromkeys(frame[index].itertuples(index=False, name=None)))
    rows = (pd.Index([key[0] for key in order], name="method") if len(index) == 1
            else pd.MultiIndex.from_tuples(order, names=index))
    wide = wide.reindex(index=rows, columns=list(dict.fromkeys(frame["metric"])))
    wide.columns.name = None
    return wide.reset_index()
