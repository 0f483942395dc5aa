"""SFT examples: load (prompt, response) pairs and tokenise them with the model's chat template.

Sources: a distill output file (``.parquet`` / ``.jsonl`` rows with ``prompt`` = the user turn and
``response``, :mod:`longcot.distill.dataset`), any local ``.jsonl`` / ``.json`` / ``.parquet`` file
or hub dataset id with prompt + response fields, or chat ``messages`` (the last turn must be the
assistant's: it is the response, every earlier turn is the prompt).

Tokenisation matches generation exactly: the prompt is rendered and encoded as
:func:`longcot.generation.hf.encode_prompt` does (chat template with the generation prompt), and the
completion is the rest of the templated conversation (the response, the end-of-turn token and any
template suffix), encoded separately and appended -- so the model is trained on the token sequence
it will see when it generates from that prompt. Loss on completion tokens only (TRL's
``completion_only_loss`` convention).

Targets are stored already shifted: ``targets[i]`` is the token position ``i`` must predict
(``input_ids[i + 1]``) or ``IGNORE``. The last prompt position predicts the first response token;
the last position of a sample predicts nothing, so in a packed row no sample's first token is ever
a target of the previous sample's last position.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Sequence

from longcot.data.loading import DataError, _hub_records, read_records
from longcot.generation.hf import render_prompt

if TYPE_CHECKING:  # pragma: no cover
    from transformers import PreTrainedTokenizerBase

    from longcot.sft.config import SFTConfig

log = logging.getLogger(__name__)

IGNORE = -100  # torch.nn.functional.cross_entropy's default ignore_index


@dataclass(frozen=True)
class SFTExample:
    """One training pair: chat turns before the response, and the response text."""

    messages: tuple[dict[str, str], ...]
    response: str


@dataclass(frozen=True)
class TokenizedExample:
    input_ids: tuple[int, ...]
    targets: tuple[int, ...]  # shifted labels: targets[i] = input_ids[i + 1] on completion tokens, else IGNORE
    prompt_tokens: int

    def __len__(self) -> int:
        return len(self.input_ids)

    @property
    def num_targets(self) -> int:
        return sum(t != IGNORE for t in self.targets)


# --------------------------------------------------------------------------- loading
def examples_from_rows(
    rows: Iterable[dict[str, Any]],
    *,
    source: str,
    prompt_field: str = "prompt",
    response_field: str = "response",
    messages_field: str = "messages",
    system_prompt: str | None = None,
) -> list[SFTExample]:
    """Rows with ``prompt_field`` + ``response_field`` (strings) or ``messages_field`` (chat turns)."""
    out = []
    for i, row in enumerate(rows):
        where = f"{source}: row {row.get('_line', i)}"
        if prompt_field in row and response_field in row:
            prompt, response = row[prompt_field], row[response_field]
            if not isinstance(prompt, str) or not isinstance(response, str):
                raise DataError(f"{where}: fields {prompt_field!r} and {response_field!r} must be strings")
            messages = [{"role": "user", "content": prompt}]
        elif messages_field in row:
            turns = [dict(m) for m in row[messages_field]]
            if len(turns) < 2 or turns[-1].get("role") != "assistant":
                raise DataError(f"{where}: {messages_field!r} must end with an assistant turn after at least one other turn")
            messages, response = turns[:-1], turns[-1]["content"]
        else:
            raise DataError(f"{where}: needs fields {prompt_field!r} + {response_field!r} or {messages_field!r}; "
                            f"has {sorted(k for k in row if not k.startswith('_'))}")
        if system_prompt and messages[0].get("role") != "system":
            messages = [{"role": "system", "content": system_prompt}, *messages]
        out.append(SFTExample(tuple({"role": m["role"], "content": m["content"]} for m in messages), response))
    return out


def load_examples(dataset: str, sft_cfg: "SFTConfig | None" = None) -> list[SFTExample]:
    """Examples of a local file (``.jsonl``/``.json``/``.parquet``) or a hub dataset id."""
    from longcot.sft.config import SFTConfig

    cfg = sft_cfg or SFTConfig()
    path = Path(dataset).expanduser()
    if path.suffix.lower() in (".jsonl", ".json", ".parquet") or path.exists():
        if not path.is_file():
            raise DataError(f"sft.dataset: file not found: {path}")
        rows = read_records(path)
    else:
        rows = _hub_records(dataset, None, cfg.dataset_split)
    examples = examples_from_rows(rows, source=str(dataset), prompt_field=cfg.prompt_field,
                                  response_field=cfg.response_field, messages_field=cfg.messages_field,
                                  system_prompt=cfg.system_prompt)
    if not examples:
        raise DataError(f"sft.dataset: {dataset} has no rows")
    return examples


# --------------------------------------------------------------------------- tokenising
def completion_text(tokenizer: "PreTrainedTokenizerBase", example: SFTExample, prompt_text: str) -> str:
    """What follows the rendered prompt in the templated conversation (response + end of turn)."""
    if getattr(tokenizer, "chat_template", None):
        full = tokenizer.apply_chat_template(
            [*example.messages, {"role": "assistant", "content": example.response}], tokenize=False
        )
        if not full.startswith(prompt_text):
            raise ValueError("the chat template does not render the conversation as prompt + completion "
                             "(the generation prompt is not a prefix of the full conversation)")
        return full[len(prompt_text):]
    return example.response + (tokenizer.eos_token or "")


def tokenize_example(tokenizer: "PreTrainedTokenizerBase", example: SFTExample) -> TokenizedExample:
    prompt_text = render_prompt(tokenizer, list(example.messages))
    prompt_ids = list(tokenizer(prompt_text, add_special_tokens=False)["input_ids"])
    completion_ids = list(tokenizer(completion_text(tokenizer, example, prompt_text), add_special_tokens=False)["input_ids"])
    if not completion_ids:
        raise ValueError("an SFT example has an empty completion")
    ids = prompt_ids + completion_ids
    p = len(prompt_ids)
    # Position i predicts ids[i + 1]; only completion tokens (index >= p) are targets.
    targets = [ids[i + 1] if i + 1 >= p else IGNORE for i in range(len(ids) - 1)] + [IGNORE]
    return TokenizedExample(tuple(ids), tuple(targets), p)


def fit_length(example: TokenizedExample, max_length: int, overlong: str) -> TokenizedExample | None:
    """``example`` if it fits ``max_length``; else None (``drop``) or its first ``max_length`` tokens (``truncate``)."""
    if len(example) <= max_length:
        return example
    if overlong == "drop" or example.prompt_tokens >= max_length:
        return None
    ids = example.input_ids[:max_length]
    targets = example.targets[: max_length - 1] + (IGNORE,)
    return TokenizedExample(ids, targets, example.prompt_tokens)


def tokenize_examples(
    tokenizer: "PreTrainedTokenizerBase", examples: Sequence[SFTExample], *, max_length: int, overlong: str = "drop"
) -> tuple[list[TokenizedExample], dict[str, int]]:
    """Tokenised examples that fit ``max_length`` and counts (kept, dropped, truncated)."""
    out: list[TokenizedExample] = []
    dropped = truncated = 0
    for ex in examples:
        tok = tokenize_example(tokenizer, ex)
        fitted = fit_length(tok, max_length, overlong)
        if fitted is None:
            dropped += 1
            continue
        truncated += fitted is not tok
        out.append(fitted)
    if dropped or truncated:
        log.warning("SFT data: %d of %d examples longer than max_length=%d were %s",
                    dropped + truncated, len(examples), max_length, "dropped" if dropped else "truncated")
    if not out:
        raise ValueError(f"sft.max_length={max_length}: every example is longer; raise it or set sft.overlong=truncate")
    return out, {"examples": len(examples), "kept": len(out), "dropped": dropped, "truncated": truncated}


def toy_examples(size: int, seed: int, *, style: str = "short", error_rate: float = 0.0) -> list[SFTExample]:
    """A toy SFT set: :func:`longcot.data.toy.toy_problems` answered the way the synthetic teacher
    does (:mod:`longcot.generation.synthetic`, ``style`` long or short), with the benchmark prompt."""
    import random

    from longcot.data.prompts import problem_text
    from longcot.data.toy import toy_problems
    from longcot.generation.synthetic import _EXPR, parse_expression, write_long, write_short

    writer = {"long": write_long, "short": write_short}.get(style)
    if writer is None:
        raise ValueError(f"style={style!r}; valid: long, short")
    out = []
    for i, p in enumerate(toy_problems(size, seed)):
        expr = parse_expression(_EXPR.search(p.problem).group(1))
        response = writer(expr, random.Random(seed * 1_000_003 + i), error_rate)
        out.append(SFTExample(({"role": "user", "content": problem_text(p)},), response))
    return out
