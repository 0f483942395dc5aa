"""Training metrics: a ``metrics.jsonl`` log (one record per optimizer step), the tracker, a tqdm
progress bar and a loss plot.

Resume-safe: records are appended as steps finish, and a resumed run first cuts the log back to
the checkpoint's step (:meth:`MetricsLog.truncate`), so a killed-and-resumed run's log has every
step exactly once -- the same records as an uninterrupted run (up to timing fields).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

from longcot import runs

if TYPE_CHECKING:  # pragma: no cover
    from longcot.tracking import Tracker

log = logging.getLogger(__name__)

METRICS = "metrics.jsonl"
TIMING_KEYS = ("tokens_per_s", "step_time_s", "elapsed_s")  # differ between runs; everything else is deterministic


class MetricsLog:
    """Append-only JSONL of step records, mirrored to a tracker (which may be None)."""

    def __init__(self, path: Path, tracker: "Tracker | None" = None, *, enabled: bool = True):
        self.path = Path(path)
        self.tracker = tracker
        self.enabled = enabled

    def records(self) -> list[dict[str, Any]]:
        """Every complete record (a line cut short by a kill is ignored)."""
        if not self.path.is_file():
            return []
        out = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return out

    def truncate(self, step: int) -> None:
        """Keep only the records of steps ``<= step`` (atomic rewrite)."""
        if not self.enabled or not self.path.is_file():
            return
        kept = [r for r in self.records() if int(r.get("step", 0)) <= step]
        runs.write_jsonl(self.path, kept)

    def log(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(record, sort_keys=True) + "\n")
            fh.flush()
        if self.tracker is not None:
            self.tracker.log({f"train/{k}": v for k, v in record.items() if k != "step"}, step=int(record["step"]))


def progress_bar(total: int, initial: int = 0, *, desc: str = "train", disable: bool = False):
    """A tqdm bar over optimizer steps (starts at ``initial`` on resume)."""
    from longcot.progress import bar

    return bar(total=total, initial=initial, desc=desc, unit="step", disable=disable, dynamic_ncols=True)


def summarize(records: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """First/last/min loss, steps, tokens and mean throughput of a run's records."""
    recs = list(records)
    if not recs:
        return {"steps": 0}
    losses = [r["loss"] for r in recs]
    tps = [r["tokens_per_s"] for r in recs if r.get("tokens_per_s")]
    return {
        "steps": int(recs[-1]["step"]),
        "first_loss": losses[0],
        "final_loss": losses[-1],
        "min_loss": min(losses),
        "tokens": int(sum(r.get("tokens", 0) for r in recs)),
        "mean_tokens_per_s": sum(tps) / len(tps) if tps else None,
        "padding_fraction": sum(r.get("padding_fraction", 0.0) for r in recs) / len(recs),
    }


def tail_loss(records: Iterable[dict[str, Any]], fraction: float = 0.1) -> float | None:
    """Mean training loss over the last ``fraction`` of the steps (at least one step): where a run ended,
    less noisy than its last step's loss. None for a run with no steps."""
    losses = [float(r["loss"]) for r in records]
    if not losses:
        return None
    tail = losses[-max(1, round(fraction * len(losses))):]
    return sum(tail) / len(tail)


def plot_loss(records: Iterable[dict[str, Any]], path: Path, *, title: str = "training loss") -> None:
    """``loss.png``: loss per optimizer step (and lr on a second axis)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    recs = list(records)
    fig, ax = plt.subplots(figsize=(7, 4))
    if recs:
        steps = [r["step"] for r in recs]
        ax.plot(steps, [r["loss"] for r in recs], color="tab:blue", label="loss")
        ax2 = ax.twinx()
        ax2.plot(steps, [r["lr"] for r in recs], color="tab:orange", alpha=0.6, label="lr")
        ax2.set_ylabel("lr")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss (mean per response token)")
    ax.set_title(title)
    fig.tight_layout()
    with runs.atomic_path(Path(path)) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
