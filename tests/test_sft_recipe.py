"""The recipe's bookkeeping: metrics records, the final HF checkpoint, a finished run is skipped,
max_steps, and a resume with a different data layout is refused with a clear error."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from longcot.models.config import ModelConfig
from longcot.sft.config import SFTConfig
from longcot.sft.data import toy_examples
from longcot.sft.recipe import train

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY = OmegaConf.structured(ModelConfig(name="tiny", path="tiny"))


def _cfg(**kw) -> SFTConfig:
    base = dict(global_batch_sequences=4, max_length=256, max_tokens_per_micro_batch=256, learning_rate=1e-3,
                epochs=2, warmup_ratio=0.0, save_every_steps=1, max_steps=3)
    return SFTConfig(**{**base, **kw})


class RecordingTracker:
    """Stands in for longcot.tracking.Tracker (same log/summary interface) and keeps what it gets."""

    def __init__(self) -> None:
        self.logged: list[tuple[int, dict]] = []
        self.summaries: list[dict] = []

    def log(self, metrics: dict, step: int | None = None) -> None:
        self.logged.append((step, metrics))

    def summary(self, metrics: dict) -> None:
        self.summaries.append(metrics)


def test_records_final_skip_and_layout_guard(tmp_path: Path) -> None:
    run = tmp_path / "run"
    ex = toy_examples(10, 0)  # 3 steps per epoch (4, 4, 2); max_steps=3 stops at the end of epoch 1
    tracker = RecordingTracker()
    result = train(ex, TINY, _cfg(), run, tracker=tracker, progress=False)
    assert [s for s, _ in tracker.logged] == [1, 2, 3]
    assert {"train/loss", "train/lr", "train/grad_norm", "train/tokens_per_s", "train/padding_fraction",
            "train/epoch"} <= tracker.logged[0][1].keys()
    assert tracker.summaries[-1]["sft/final_loss"] == result["metrics"]["final_loss"]
    assert result["steps"] == 3 and result["total_steps"] == 6
    recs = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in recs] == [1, 2, 3] and [r["sequences"] for r in recs] == [4, 4, 2]
    assert recs[-1]["epoch"] == pytest.approx(1.0) and recs[0]["epoch"] == pytest.approx(1 / 3)
    for r in recs:
        assert {"loss", "lr", "grad_norm", "tokens_per_s", "padding_fraction", "fill", "micro_batches"} <= r.keys()
        assert 0 < r["fill"] <= 1 and r["target_tokens"] < r["tokens"]
    assert recs[0]["lr"] == pytest.approx(1e-3)  # no warmup: the first update at the peak
    assert (run / "loss.png").is_file() and (run / "final" / "model" / "model.safetensors").is_file()
    assert result["checkpoint"] == str(run / "final" / "model")
    # finished: the same call returns the saved result, nothing is retrained
    mtime = (run / "metrics.jsonl").stat().st_mtime_ns
    assert train(ex, TINY, _cfg(), run, progress=False)["metrics"] == result["metrics"]
    assert (run / "metrics.jsonl").stat().st_mtime_ns == mtime
    # an unfinished run resumed with another data layout is refused
    shutil.rmtree(run / "final")
    with pytest.raises(ValueError, match="different data layout"):
        train(ex, TINY, _cfg(global_batch_sequences=5), run, progress=False)
