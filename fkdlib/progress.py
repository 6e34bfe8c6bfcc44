"""Progress bars that help a person and stay out of logs.

In a terminal or an interactive JupyterLab session a tqdm bar is shown (a widget in Jupyter,
via ``tqdm.auto``). Where nobody watches — CI, a pipe, or a notebook executed by papermill
(``fkd reproduce`` sets ``FKD_PROGRESS=0`` for its kernels) — bars are disabled, so logs get
one summary line per epoch instead of thousands of carriage-return updates.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from typing import Any

from tqdm.auto import tqdm


def progress_enabled() -> bool:
    """Whether bars should render here (``FKD_PROGRESS=0/1`` forces the answer)."""
    forced = os.environ.get("FKD_PROGRESS")
    if forced is not None:
        return forced.strip() not in ("", "0", "false", "no")
    if os.environ.get("CI"):
        return False
    if "ipykernel" in sys.modules:
        return True
    return bool(getattr(sys.stderr, "isatty", lambda: False)())


def progress(iterable: Iterable | None = None, *, desc: str | None = None,
             total: int | None = None, leave: bool = False, **kwargs: Any) -> tqdm:
    """A ``tqdm`` bar, disabled where :func:`progress_enabled` says nobody watches."""
    kwargs.setdefault("disable", not progress_enabled())
    kwargs.setdefault("dynamic_ncols", True)
    return tqdm(iterable, desc=desc, total=total, leave=leave, **kwargs)
