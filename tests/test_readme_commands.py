"""Every ``longcot`` command of the README is planned here exactly as the CLI plans it (overrides
checked, composed, validated, every stage run and post-training evaluation planned; a study's
``--dry-run``; ``status`` / ``collect``), with ``output_root`` in a temporary folder: a README command
that would fail before running fails here. The CPU ones are run too (``slow``); the GPU / cluster
ones are only planned (their dry run).

Placeholders: ``...`` stands for the previous command's arguments; ``/ckpt/my-sft-model`` and
``/data/my_cot.jsonl`` are made here (the tiny model, a two-line SFT file)."""

from __future__ import annotations

import re
import shlex
import shutil
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
# needs a GPU, a cluster, a hub model or hours: planned only
# planned only: GPU, cluster or paper-scale commands, and the twin studies (scale=full: hours on a CPU)
PLAN_ONLY = ("generation=vllm", "cluster=slurm", "scale=full", "fig1_sft_scaling", "model=qwen2.5-math-7b", "twin_")


def readme_commands() -> list[str]:
    """The ``longcot`` command lines of the README's code blocks (continuations joined, comments cut,
    ``...`` replaced by the previous command's arguments)."""
    out: list[str] = []
    inblock, buf = False, ""
    for line in README.read_text().splitlines():
        if line.startswith("```"):
            inblock = not inblock
            continue
        if not (inblock or line.startswith("    ")):
            continue
        text = (buf + " " + line.strip()).strip() if buf else line.strip()
        buf = ""
        if text.endswith("\\"):
            buf = text[:-1].strip()
            continue
        text = re.split(r"\s+#", text)[0].strip()
        text = text.split("&& ")[-1] if "&& longcot" in text else text
        if text == "longcot" or text.startswith("longcot "):
            if " ... " in text:
                prev = out[-1].split(" ", 1)[1]
                first = text.split(" ... ")[0].split(" ", 1)[1]
                text = f"longcot {prev} {text.split(' ... ')[1]}" if prev.startswith(first) else text
            out.append(text)
    return out


COMMANDS = readme_commands()


def test_the_readme_has_the_commands_it_should() -> None:
    assert "longcot +experiment=demo" in COMMANDS and "longcot status +experiment=fig1_sft_scaling" in COMMANDS
    assert not [c for c in COMMANDS if "..." in c]  # every placeholder resolved


@pytest.fixture
def placeholders(tmp_path: Path) -> dict[str, str]:
    from longcot.models.config import ModelConfig
    from longcot.models.tiny import ensure_tiny

    ckpt = tmp_path / "ckpt" / "my-sft-model"
    shutil.copytree(ensure_tiny(ModelConfig(name="tiny", path="tiny")), ckpt)
    data = tmp_path / "my_cot.jsonl"
    data.write_text('{"prompt": "1+1?", "response": "2"}\n{"prompt": "2+2?", "response": "4"}\n')
    return {"/ckpt/my-sft-model": str(ckpt), "/data/my_cot.jsonl": str(data)}


def _argv(command: str, tmp_path: Path, placeholders: dict[str, str]) -> list[str]:
    for old, new in placeholders.items():
        command = command.replace(old, new)
    return [*shlex.split(command)[1:], f"output_root={tmp_path / 'runs'}"]


def plan(argv: list[str]) -> int:
    """What ``longcot ARGV`` does before it runs anything; the exit code it would have there (0: it
    would go on to run)."""
    from longcot.config.overrides import check_overrides
    from longcot.config.validate import validate
    from longcot.stages import plan_all, plan_follow_ups
    from longcot.study.cli import COMMANDS as STUDY_COMMANDS, maybe_study
    from longcot.study.spec import compose

    flags = [a for a in argv if a.startswith("-")]
    overrides = [a for a in argv if not a.startswith("-") and a not in STUDY_COMMANDS]
    check_overrides(overrides)
    if argv[0] in STUDY_COMMANDS:
        return maybe_study(argv)
    cfg = compose(overrides)
    if cfg.study.name:
        return maybe_study([*overrides, *[f for f in flags if f == "-m"], "--dry-run"])
    validate(cfg)
    plan_all(cfg)
    plan_follow_ups(plan_all(cfg))
    return 0


@pytest.mark.parametrize("command", COMMANDS)
def test_readme_command_plans(command: str, tmp_path: Path, placeholders: dict[str, str], monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    argv = _argv(command, tmp_path, placeholders)
    assert plan(argv) == 0
    if "--dry-run" in argv or not any(k in command for k in ("status", "collect")):
        assert not (tmp_path / "runs" / "sft").exists() and not (tmp_path / "runs" / "rl").exists()


CPU = [c for c in COMMANDS if not any(k in c for k in PLAN_ONLY) and c.split()[1:2] not in (["status"], ["collect"])]


@pytest.mark.slow
def test_readme_cpu_commands_run_in_order(tmp_path: Path, placeholders: dict[str, str], monkeypatch) -> None:
    """The README's CPU commands, in README order (the distill before the SFT before its RL), each
    through the real CLI entry point: exit 0."""
    from tests.conftest import shared_file

    shared_file("math500/test.jsonl")  # the default benchmark: skips without the shared data folder
    from longcot import cli

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for command in CPU:
        monkeypatch.setattr(sys, "argv", ["longcot", *_argv(command, tmp_path, placeholders)])
        try:
            cli.main()
            code = 0
        except SystemExit as exc:
            code = int(exc.code or 0)
        assert code == 0, command
