"""Result tables: one DataFrame written as CSV, Markdown, LaTeX (booktabs) and provenance.

The CSV keeps full precision (it is the data); the Markdown and LaTeX renderings round floats
with ``float_format`` (they are for reading). Every file is written atomically. Markdown is
rendered here rather than with ``DataFrame.to_markdown`` because that needs ``tabulate``,
which is not a dependency; LaTeX uses pandas' ``Styler.to_latex`` (jinja2 comes with Jupyter).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import ConfigError
from ..io import atomic_write_json, atomic_write_text, sha256_file
from ..runtime import provenance as current_provenance

FloatFormat = str | Callable[[float], str]

_LATEX_SPECIALS = {
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
    "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
}


def _formatter(float_format: FloatFormat) -> Callable[[float], str]:
    """Turn ``"{:.2f}"`` or a callable into a checked float -> str function."""
    if callable(float_format):
        formatter = float_format
    elif isinstance(float_format, str):
        formatter = float_format.format
    else:
        raise ConfigError(
            f"float_format must be a format string such as '{{:.2f}}' or a callable, "
            f"got {float_format!r}"
        )
    try:
        sample = formatter(1.5)
    except (ValueError, TypeError, IndexError, KeyError) as error:
        raise ConfigError(
            f"float_format {float_format!r} cannot format a float ({error}); "
            "use a str.format pattern such as '{:.2f}'"
        ) from None
    if not isinstance(sample, str):
        raise ConfigError(f"float_format must produce a str, got {type(sample).__name__}")
    return formatter


def _flat(df: pd.DataFrame) -> pd.DataFrame:
    """Columns flattened to strings; a meaningful index becomes ordinary leading columns."""
    if not isinstance(df, pd.DataFrame):
        raise ConfigError(f"expected a pandas DataFrame, got {type(df).__name__}")
    out = df.copy()
    if isinstance(out.columns, pd.MultiIndex):
        out.columns = [" / ".join(str(level) for level in col if str(level)) for col in out.columns]
    default_index = (isinstance(out.index, pd.RangeIndex) and out.index.start == 0
                     and out.index.step == 1 and out.index.name is None)
    if not default_index:
        out = out.reset_index()
    out.columns = [str(c) for c in out.columns]
    if len(set(out.columns)) != len(out.columns):
        duplicated = sorted({c for c in out.columns if list(out.columns).count(c) > 1})
        raise ConfigError(f"table has duplicated column names {duplicated}; rename them first")
    return out


def _display(df: pd.DataFrame, float_format: FloatFormat, na_rep: str) -> pd.DataFrame:
    """Every cell as the string a reader sees."""
    formatter = _formatter(float_format)

    def cell(value: Any) -> str:
        if pd.api.types.is_scalar(value) and pd.isna(value):
            return na_rep
        if isinstance(value, (float, np.floating)):
            return formatter(float(value))
        return str(value)

    return df.apply(lambda column: column.map(cell)).astype(str)


def _numeric_columns(df: pd.DataFrame) -> list[bool]:
    return [pd.api.types.is_numeric_dtype(df[c]) and not pd.api.types.is_bool_dtype(df[c])
            for c in df.columns]


def markdown_table(df: pd.DataFrame, float_format: FloatFormat = "{:.2f}",
                   na_rep: str = "–") -> str:
    """A GitHub-flavoured Markdown pipe table; numeric columns are right-aligned."""
    flat = _flat(df)
    shown = _display(flat, float_format, na_rep)

    def escape(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", " ")

    header = "| " + " | ".join(escape(c) for c in shown.columns) + " |"
    rule = "|" + "|".join("---:" if numeric else ":---"
                          for numeric in _numeric_columns(flat)) + "|"
    rows = ["| " + " | ".join(escape(v) for v in row) + " |"
            for row in shown.itertuples(index=False)]
    return "\n".join([header, rule, *rows]) + "\n"


def latex_escape(text: str) -> str:
    """Escape LaTeX's special characters (``_``, ``%``, ``&``, ...) in plain text."""
    return "".join(_LATEX_SPECIALS.get(char, char) for char in str(text))


def latex_table(df: pd.DataFrame, caption: str | None = None,
                float_format: FloatFormat = "{:.2f}", na_rep: str = "--") -> str:
    """A booktabs (``\\toprule``/``\\midrule``/``\\bottomrule``) LaTeX table with escaped text."""
    flat = _flat(df)
    shown = _display(flat, float_format, na_rep)
    column_format = "".join("r" if numeric else "l" for numeric in _numeric_columns(flat))
    styler = (shown.style.hide(axis="index")
              .format(escape="latex")
              .format_index(escape="latex", axis=1))
    return styler.to_latex(
        hrules=True, column_format=column_format, position_float="centering",
        caption=latex_escape(caption) if caption else None,
        environment="table" if caption else None,
    )


def save_table(df: pd.DataFrame, path_stem: str | os.PathLike, caption: str | None = None,
               provenance: dict[str, Any] | None = None,
               float_format: FloatFormat = "{:.2f}") -> dict[str, Path]:
    """Write ``<stem>.csv``, ``<stem>.md``, ``<stem>.tex`` and ``<stem>.provenance.json``.

    Args:
        df: the table. A non-default index is written as leading columns.
        path_stem: path without extension, e.g. ``results/01_arcface/verification``.
        caption: shown above the Markdown table and as the LaTeX caption.
        provenance: what produced the table (profile, seed, ...); when ``None`` the current
            :func:`fkdlib.runtime.provenance` (code version, packages, machine) is recorded.
        float_format: ``str.format`` pattern or callable for floats in ``.md`` and ``.tex``.

    Returns:
        The written paths keyed ``csv``, ``md``, ``tex``, ``provenance``. The provenance file
        also records each table file's SHA-256.
    """
    flat = _flat(df)
    stem = Path(path_stem)
    if stem.name in ("", ".", ".."):
        raise ConfigError(f"path_stem must name a file (without extension), got {path_stem!r}")
    paths = {ext: stem.with_name(f"{stem.name}.{ext}") for ext in ("csv", "md", "tex")}
    paths["provenance"] = stem.with_name(f"{stem.name}.provenance.json")

    markdown = markdown_table(flat, float_format)
    if caption:
        markdown = f"{caption}\n\n{markdown}"
    latex = latex_table(flat, caption, float_format)
    atomic_write_text(paths["csv"], flat.to_csv(index=False))
    atomic_write_text(paths["md"], markdown)
    atomic_write_text(paths["tex"], latex)
    record = {
        "caption": caption,
        "columns": list(flat.columns),
        "rows": len(flat),
        "files": {paths[ext].name: sha256_file(paths[ext]) for ext in ("csv", "md", "tex")},
        "provenance": provenance if provenance is not None else current_provenance(),
    }
    atomic_write_json(paths["provenance"], record)
    return paths


def side_by_side(ours: pd.DataFrame, paper: pd.DataFrame, on: str | Sequence[str],
                 suffixes: tuple[str, str] = ("ours", "paper")) -> pd.DataFrame:
    """Our table beside the paper's, matched on the key column(s) ``on``.

    Each value column appears as ``"<column> (<suffix>)"``, ours immediately followed by the
    paper's when both tables have it. Rows keep our order, then rows only the paper has;
    cells missing on one side are NaN.
    """
    keys = [on] if isinstance(on, str) else list(on)
    if len(suffixes) != 2 or suffixes[0] == suffixes[1]:
        raise ConfigError(f"suffixes must be two different labels, got {suffixes!r}")
    for label, frame in (("ours", ours), ("paper", paper)):
        missing = [k for k in keys if k not in frame.columns]
        if missing:
            raise ConfigError(
                f"key column(s) {missing} not in the {label} table; its columns are "
                f"{list(map(str, frame.columns))}"
            )
        duplicated = frame.duplicated(keys)
        if duplicated.any():
            rows = frame.loc[duplicated, keys].drop_duplicates().to_dict("records")
            raise ConfigError(f"key(s) {keys} are not unique in the {label} table: {rows}")
    ours_values = [c for c in ours.columns if c not in keys]
    paper_values = [c for c in paper.columns if c not in keys]

    def tagged(frame: pd.DataFrame, columns: list, suffix: str) -> pd.DataFrame:
        return frame[keys + columns].rename(columns={c: f"{c} ({suffix})" for c in columns})

    merged = tagged(ours, ours_values, suffixes[0]).merge(
        tagged(paper, paper_values, suffixes[1]), on=keys, how="outer", sort=False)
    our_order = pd.MultiIndex.from_frame(ours[keys].astype(object))
    paper_order = pd.MultiIndex.from_frame(paper[keys].astype(object))
    order = list(our_order) + [key for key in paper_order if key not in set(our_order)]
    position = {key: i for i, key in enumerate(order)}
    merged_keys = pd.MultiIndex.from_frame(merged[keys].astype(object))
    merged = merged.iloc[np.argsort([position[k] for k in merged_keys], kind="stable")]

    columns = list(keys)
    for column in ours_values:
        columns.append(f"{column} ({suffixes[0]})")
        if column in paper_values:
            columns.append(f"{column} ({suffixes[1]})")
    columns += [f"{c} ({suffixes[1]})" for c in paper_values if c not in ours_values]
    return merged[columns].reset_index(drop=True)
