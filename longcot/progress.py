"""Progress bars that suit where they go: tqdm on a terminal; when stderr is not a terminal (a log
file, a SLURM job), one plain line per update interval (``LONGCOT_PROGRESS_INTERVAL`` seconds,
default 30) and one at the end -- no carriage returns filling the log.

:func:`quiet_libraries` turns the libraries' own bars (transformers, Hugging Face hub, datasets) off
in that case; the CLI calls it at startup.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any, Iterable, Optional, TextIO

DEFAULT_INTERVAL = 30.0


def is_terminal() -> bool:
    return bool(getattr(sys.stderr, "isatty", lambda: False)())


def interval() -> float:
    return float(os.environ.get("LONGCOT_PROGRESS_INTERVAL", DEFAULT_INTERVAL))


class _Lines:
    """A file for tqdm off a terminal: a refresh becomes one line (carriage returns and cursor moves
    removed), at most one per ``every`` seconds (tqdm refreshes on each ``set_postfix`` too); the
    last state is written when the bar closes."""

    def __init__(self, stream: TextIO, every: float) -> None:
        self.stream, self.every = stream, every
        self.last = float("-inf")
        self.pending: Optional[str] = None

    def write(self, text: str) -> None:
        line = text.replace("\x1b[A", "").replace("\r", "").strip()
        now = time.monotonic()
        if line and now - self.last >= self.every:
            self.stream.write(line + "\n")
            self.last, self.pending = now, None
        elif line:
            self.pending = line
        elif "\n" in text and self.pending:  # the bar closes: its final state
            self.stream.write(self.pending + "\n")
            self.pending = None

    def flush(self) -> None:
        self.stream.flush()


def bar(iterable: Optional[Iterable[Any]] = None, **kwargs: Any) -> Any:
    """``tqdm(iterable, **kwargs)``, or off a terminal a tqdm that writes one line per interval."""
    from tqdm.auto import tqdm

    if not is_terminal() and not kwargs.get("disable"):
        kwargs.update(file=_Lines(sys.stderr, interval()), mininterval=interval(), maxinterval=interval(), ascii=True,
                      dynamic_ncols=False, ncols=100, position=None, leave=True)
    return tqdm(iterable, **kwargs)


def quiet_libraries() -> None:
    """Off a terminal, turn off the progress bars of transformers, the hub client and datasets."""
    if is_terminal():
        return
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TQDM_MININTERVAL", str(interval()))  # any other tqdm (vLLM): one refresh per interval
    if "transformers" in sys.modules:  # else transformers reads HF_HUB_DISABLE_PROGRESS_BARS when imported
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
