"""The papermill process of ``fkd reproduce``: papermill's command line, plus what the parent
needs to show progress and to stop a notebook cleanly.

``python -m fkdlib.papermill_child ARGS`` runs ``papermill ARGS`` with these additions:

* Before each cell it prints one line ``fkd-cell {json}`` to stdout: the cell's index in the
  executed notebook, its number among the code cells, their count and its first source line.
  ``papermill --log-output`` would give cell markers too, but also every output of every
  cell; the parent turns these lines into one terminal line per cell and keeps them out of
  ``papermill.log``.
* When the kernel has started it prints ``fkd-kernel <process group>``: jupyter_client starts
  the kernel in a session of its own, out of reach of a signal to papermill's process group,
  so the parent needs its group to make sure that it ends.
* SIGTERM interrupts the running cell (SIGINT to the kernel's group, as Jupyter's "interrupt"
  does, repeated while the cell runs: a kernel ignores SIGINT while idle, so one sent just
  before the cell's code reached it would be lost) and runs no further cell; papermill
  then saves the executed notebook with the interruption in that cell, shuts the kernel
  down, and the process exits with :data:`STOPPED`.
* The executed notebook is written atomically (:mod:`fkdlib.io`): a notebook killed while
  papermill saves leaves the previous save, never a truncated file.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any

from .io import atomic_write_text

CELL_MARKER = "fkd-cell "
KERNEL_MARKER = "fkd-kernel "
STOPPED = 130
"""Exit status after a SIGTERM (128 + SIGINT, as a shell reports an interrupted command)."""


class _Stop:
    """The SIGTERM handler and its state: whether a stop was asked for, the kernel's group,
    whether a cell is running."""

    requested = False
    kernel_group: int | None = None
    cell_running = False
    INTERRUPT_EVERY_S = 0.5

    @classmethod
    def handle(cls, signum: int, frame: Any) -> None:
        if not cls.requested:
            cls.requested = True
            threading.Thread(target=cls._interrupt_the_cell, daemon=True).start()

    @classmethod
    def _interrupt_the_cell(cls) -> None:
        # Runs until the process ends (a daemon thread): a cell that starts after the signal,
        # the handler having run between execute_cell's check and the cell's start, is
        # interrupted too; once the interrupted cell has ended no further cell starts.
        while True:
            if cls.cell_running and cls.kernel_group is not None:
                try:
                    os.killpg(cls.kernel_group, signal.SIGINT)
                except ProcessLookupError:
                    return  # the kernel has already ended
            time.sleep(cls.INTERRUPT_EVERY_S)


def first_line(source: str | Sequence[str]) -> str:
    """The first non-blank line of a cell's source, stripped."""
    text = source if isinstance(source, str) else "".join(source)
    return next((line.strip() for line in text.splitlines() if line.strip()), "")


def _emit(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def _install() -> None:
    """Point papermill at the reporting client and the atomic notebook writer.

    papermill has no hook for either: its engine builds ``PapermillNotebookClient`` by name
    and its local I/O handler opens the output for writing in place. Replacing both module
    attributes affects nothing else, as this process only runs papermill."""
    from nbclient.exceptions import CellExecutionError
    from papermill import engines, iorw
    from papermill.clientwrap import PapermillNotebookClient
    from papermill.utils import chdir

    class ReportingClient(PapermillNotebookClient):
        def start_new_kernel(self, **kwargs: Any) -> None:
            super().start_new_kernel(**kwargs)
            group = getattr(getattr(self.km, "provisioner", None), "pgid", None)
            if group is not None:
                _Stop.kernel_group = group
                _emit(f"{KERNEL_MARKER}{group}")

        def execute_cell(self, cell: Any, cell_index: int, *args: Any, **kwargs: Any) -> Any:
            if _Stop.requested:
                # papermill records a cell error as the notebook's failure and runs no more
                raise CellExecutionError("", "Interrupted", "stopped before this cell")
            if cell.cell_type != "code":
                return super().execute_cell(cell, cell_index, *args, **kwargs)
            code = [i for i, c in enumerate(self.nb.cells) if c.cell_type == "code"]
            _Stop.cell_running = True  # before the marker: the parent may stop us on seeing it
            try:
                _emit(CELL_MARKER + json.dumps({
                    "index": cell_index, "number": code.index(cell_index) + 1,
                    "count": len(code), "line": first_line(cell.source)}))
                return super().execute_cell(cell, cell_index, *args, **kwargs)
            finally:
                _Stop.cell_running = False

    def atomic_write(handler: iorw.LocalHandler, buf: str, path: str) -> None:
        with chdir(handler._cwd):
            atomic_write_text(path, buf)

    engines.PapermillNotebookClient = ReportingClient
    iorw.LocalHandler.write = atomic_write


def main(argv: Sequence[str] | None = None) -> int:
    """Run papermill's command line on ``argv``; :data:`STOPPED` after a SIGTERM."""
    from papermill.cli import papermill
    from papermill.exceptions import PapermillExecutionError

    _install()
    signal.signal(signal.SIGTERM, _Stop.handle)
    try:
        papermill.main(args=list(sys.argv[1:] if argv is None else argv),
                       prog_name="papermill", standalone_mode=False)
    except PapermillExecutionError:
        if not _Stop.requested:
            raise  # a failing cell: its traceback goes to papermill.log, as with papermill
    if _Stop.requested:
        print("papermill: stopped by SIGTERM; the executed notebook shows where",
              file=sys.stderr)
        return STOPPED
    return 0


if __name__ == "__main__":
    sys.exit(main())
