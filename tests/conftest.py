"""Shared test fixtures: the shared data folder, a private model cache, and skip helpers."""

from __future__ import annotations

import os
from pathlib import Path

# The tiny model gains nothing from intra-op threads, and on a busy 2-core CI box OpenMP spin-waiting
# makes a CLI subprocess 20x+ slower (an eval that takes 20 s timed out at 300 s): every process the
# tests start inherits one thread, unless the caller set OMP_NUM_THREADS.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest
from hypothesis import settings

from longcot.data import shared_data_dir

# Wall-clock deadlines flake on a loaded 2-core CI machine; properties are checked, not speed.
settings.register_profile("longcot", deadline=None)
settings.load_profile("longcot")

REPO = Path(__file__).resolve().parents[1]
SHARED = shared_data_dir()


def shared_file(relative: str) -> Path:
    """A file of the shared data folder, or skip the test with the reason."""
    path = SHARED / relative
    if not path.is_file():
        pytest.skip(f"shared data file not found: {path} (set LONGCOT_SHARED_DATA)")
    return path


@pytest.fixture(scope="session", autouse=True)
def _model_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Build the tiny model once per session in a private cache, unless LONGCOT_CACHE is set."""
    if "LONGCOT_CACHE" not in os.environ:
        os.environ["LONGCOT_CACHE"] = str(tmp_path_factory.mktemp("longcot-cache"))
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("WANDB_SILENT", "true")


@pytest.fixture(scope="module")
def one_torch_thread():
    """The tiny model gains nothing from intra-op threads, and on a busy 2-core box OpenMP
    spin-waiting makes it 20x+ slower; restored after the module."""
    import torch

    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)


# ----------------------------------------------------------------------------- the slow tier
# `python -m pytest -q` (the README's command) runs the fast tier; tests marked `slow` (real SLURM jobs,
# multi-process training, the README's commands end to end, long CPU runs) are skipped with this reason
# unless LONGCOT_SLOW=1, a `-m` expression names `slow`, or the test is named on the command line.
SLOW_REASON = "slow tier: run with LONGCOT_SLOW=1 (or -m slow, or name the test)"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.environ.get("LONGCOT_SLOW") == "1" or "slow" in (config.getoption("markexpr") or ""):
        return
    named = {a.split("[")[0] for a in config.args if "::" in a}
    skip = pytest.mark.skip(reason=SLOW_REASON)
    for item in items:
        if "slow" in item.keywords and item.nodeid.split("[")[0] not in named:
            item.add_marker(skip)
