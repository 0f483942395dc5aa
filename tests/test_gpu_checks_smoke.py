"""The prepared GPU check (tests/perf/gpu_checks.py) runs on CPU at tiny sizes: every check produces
its JSON section, and its numerical cross-checks hold (packed vs padded SFT, and packed under
DeepSpeed ZeRO-2 where installed: the same samples and weights give the same losses step after step;
chunked vs unchunked log-probs: identical)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def test_gpu_checks_quick_on_cpu(tmp_path: Path) -> None:
    out = tmp_path / "gpu_checks.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("OUT", None)
    proc = subprocess.run([sys.executable, str(REPO / "tests" / "perf" / "gpu_checks.py"), "--device", "cpu", "--quick",
                           "--checks", "sft,logprobs", "--json", str(out)], capture_output=True, text=True, env=env,
                          timeout=600, cwd=REPO)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    checks = json.loads(out.read_text())["checks"]
    sft = checks["sft"]
    packed, padded = sft["arms"]["packed"], sft["arms"]["padded"]
    assert packed["padding_fraction"] == 0.0 and 0.0 < padded["padding_fraction"] < 1.0
    assert len(packed["losses"]) == len(padded["losses"]) == 3  # 1 warm-up + 2 timed steps
    for a, b in zip(packed["losses"], padded["losses"]):
        assert a == pytest.approx(b, rel=1e-4)  # float32 on CPU: varlen packing == padded attention
    assert packed["tokens_per_s"] > 0 and packed["mfu"] is None  # no peak FLOP/s for a CPU
    zero2 = sft["arms"]["packed_zero2"]  # DeepSpeed ZeRO-2, one process: the same steps as torch
    if "skipped" not in zero2:
        assert zero2["losses"] == pytest.approx(packed["losses"], rel=1e-4)
    lp = checks["logprobs"]
    assert lp["max_abs_logprob_diff"] < 1e-5 and set(lp["runs"]) == {"chunked", "unchunked"}
