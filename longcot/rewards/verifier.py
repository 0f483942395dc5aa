r"""The model-based verifier of §5: an LLM judge compares a response's final answer with the reference.

Two prompt styles (``style``):

* ``official`` (default): the paper's judge prompt, transcribed from the official
  ``openrlhf/reward/judge.py`` (``PROMPT_TEMPLATE``): one user turn with the response's last 20
  lines (split on ``\n``, unstripped, after a ``...`` line) and the reference solution; the judge is
  asked to "Explain your thought process step-by-step before responding with
  `Judgement: <correct/wrong/not_found>`". Greedy, up to 1,024 new tokens
  (:data:`OFFICIAL_MAX_NEW_TOKENS`), as the official ``SamplingParams(temperature=0, max_tokens=1024)``.
* ``concise``: this project's earlier prompt: a grader system turn, the optional problem, and a
  request for exactly one verdict line (fits a 256-token budget).

Either way the judge's reply ends with ``Judgement: correct``, ``Judgement: wrong`` or
``Judgement: not_found``; :func:`parse_judgement` reads that line robustly (the official regex
``.*Judgement:\s+(correct|wrong|not_found).*`` misses markdown, "Judgment" and "incorrect");
:func:`judge_batch` judges a whole batch with one ``Generator.generate`` call.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Literal, Optional, Sequence

if TYPE_CHECKING:  # pragma: no cover
    from longcot.generation.base import Generator

Judgement = Literal["correct", "wrong", "not_found"]
JUDGEMENTS: tuple[str, ...] = ("correct", "wrong", "not_found")

JUDGE_STYLES = ("official", "concise")
OFFICIAL_MAX_NEW_TOKENS = 1024  # official judge.py: SamplingParams(temperature=0, top_p=1, max_tokens=1024)
OFFICIAL_LAST_LINES = 20  # official judge.py: TRUNCATED_LINES

# Verbatim from the official openrlhf/reward/judge.py (PROMPT_TEMPLATE), placeholders renamed.
OFFICIAL_JUDGE_TEMPLATE = """Given the following last {num_lines} lines of the LLM response to a math question
and the reference solution to that question, evaluate if the LLM response is correct based only on the LLM's final answer.

LLM response (last {num_lines} lines):
...
{response}

Reference solution:
{reference}

Explain your thought process step-by-step before responding with `Judgement: <correct/wrong/not_found>`
"""

JUDGE_SYSTEM_PROMPT = (
    "You are a meticulous grader. You compare the final answer of a student's response with a "
    "reference answer and decide whether they agree. You do not solve the problem yourself and you "
    "do not judge the reasoning, only the final answer."
)

JUDGE_USER_TEMPLATE = """\
Decide whether the final answer in the response below agrees with the reference answer.
{problem_block}
## Reference answer
{reference}

## Response (its last {num_lines} lines)
{response}

## How to judge
- Find the final answer the response commits to (for example inside \\boxed{{...}} or after \
"final answer"). Ignore the reasoning before it.
- "correct": the final answer is equivalent to the reference answer. Equivalent forms count as \
equal: 1/2, 0.5 and \\frac{{1}}{{2}}; reordered or simplified expressions; the same option of a \
multiple-choice question (letter or its content); a missing unit when the number is right.
- "wrong": the final answer differs from the reference answer, or the response gives several \
conflicting final answers.
- "not_found": the response states no final answer (for example it stops mid-reasoning).

Reply with exactly one line and nothing else, one of:
Judgement: correct
Judgement: wrong
Judgement: not_found"""


def tail_lines(text: str, num_lines: int = 20) -> str:
    """The last ``num_lines`` lines of ``text``, after stripping leading and trailing blank space."""
    if num_lines < 1:
        raise ValueError(f"num_lines must be >= 1, got {num_lines}")
    return "\n".join(text.strip().splitlines()[-num_lines:])


def official_tail(text: str, num_lines: int = OFFICIAL_LAST_LINES) -> str:
    r"""The official cut: ``"\n".join(text.split("\n")[-num_lines:])`` (no stripping)."""
    if num_lines < 1:
        raise ValueError(f"num_lines must be >= 1, got {num_lines}")
    return "\n".join(text.split("\n")[-num_lines:])


def build_judge_prompt(
    reference: str,
    response: str,
    problem: Optional[str] = None,
    *,
    last_lines: int = OFFICIAL_LAST_LINES,
    style: str = "official",
) -> list[dict[str, str]]:
    """The judge's chat prompt for one response: ``official`` (one user turn; the problem is not
    shown, as in the paper) or ``concise`` (system + user, with the problem when given)."""
    if style not in JUDGE_STYLES:
        raise ValueError(f"reward.verifier.prompt: unknown value {style!r}; valid: {', '.join(JUDGE_STYLES)}")
    if style == "official":
        user = OFFICIAL_JUDGE_TEMPLATE.format(
            num_lines=last_lines, response=official_tail(response, last_lines), reference=str(reference)
        )
        return [{"role": "user", "content": user}]
    problem_block = f"\n## Problem\n{problem.strip()}\n" if problem else ""
    tail = tail_lines(response, last_lines)
    user = JUDGE_USER_TEMPLATE.format(
        problem_block=problem_block,
        reference=str(reference).strip(),
        num_lines=last_lines,
        response=tail if tail else "(empty response)",
    )
    return [{"role": "system", "content": JUDGE_SYSTEM_PROMPT}, {"role": "user", "content": user}]


# "Judgement"/"Judgment" (any case), then separators and markdown (":", "=", "-", "**", backticks,
# brackets, whitespace), then the rest of that line; the first verdict phrase in it decides.
# Negative phrases are tried before "correct" so that "incorrect", "not correct" and "partially
# correct" are not read as correct; a few words may come first ("Judgement: the answer is correct").
_SEP = r"[\s*_`~\"'\[\](){}<>|#:=\-]*"
_JUDGEMENT_RE = re.compile(r"judge?ment" + _SEP + r"([^\n]{0,160})", re.IGNORECASE)
_VERDICT_RE = re.compile(
    r"\b(?:(?P<not_found>not[\s_\-]*found)"
    r"|(?P<wrong>not[\s_\-]*correct|incorrect|wrong|(?:partial(?:ly)?|partly)[\s_\-]*correct)"
    r"|(?P<correct>correct(?:ly)?))\b",
    re.IGNORECASE,
)


def parse_judgement(text: str) -> Judgement:
    """The verdict of a judge reply: ``"correct"``, ``"wrong"`` or ``"not_found"``.

    Case-insensitive; tolerates markdown (``**Judgement:** Correct``, backticks), the "Judgment"
    spelling, words before and after the verdict on the judgement line. The last ``Judgement: ...``
    line with a verdict wins; "incorrect", "not correct" and "partially correct" mean wrong; a reply
    without a judgement line is ``"not_found"``.

    >>> parse_judgement("The answers agree.\\n**Judgement:** Correct")
    'correct'
    >>> parse_judgement("Judgment: incorrect"), parse_judgement("I think it is right.")
    ('wrong', 'not_found')
    >>> parse_judgement("Judgement: the answer is correct"), parse_judgement("Judgement: partially correct")
    ('correct', 'wrong')
    """
    if not text:
        return "not_found"
    for line in reversed(list(_JUDGEMENT_RE.finditer(text))):
        verdict = _VERDICT_RE.search(line.group(1))
        if verdict:
            return verdict.lastgroup  # type: ignore[return-value]
    return "not_found"


def judge_batch(
    generator: "Generator",
    problems: Optional[Sequence[Optional[str]]],
    references: Sequence[str],
    responses: Sequence[str],
    *,
    last_lines: int = OFFICIAL_LAST_LINES,
    max_new_tokens: int = OFFICIAL_MAX_NEW_TOKENS,
    temperature: float = 0.0,
    seed: int = 0,
    progress: bool = False,
    style: str = "official",
) -> list[Judgement]:
    """Judge ``responses[i]`` against ``references[i]`` in one generate call (``problems[i]`` is
    shown by the ``concise`` style only).

    Greedy (``temperature=0``), 1,024 new tokens and the official prompt by default. A reply
    without a verdict line counts as ``"not_found"``.
    """
    from longcot.generation.base import SamplingParams

    if len(references) != len(responses):
        raise ValueError(f"{len(references)} references but {len(responses)} responses")
    if problems is not None and len(problems) != len(responses):
        raise ValueError(f"{len(problems)} problems but {len(responses)} responses")
    if not responses:
        return []
    probs = problems if problems is not None else [None] * len(responses)
    prompts = [
        build_judge_prompt(ref, resp, prob, last_lines=last_lines, style=style)
        for prob, ref, resp in zip(probs, references, responses)
    ]
    params = SamplingParams(
        temperature=temperature, top_p=1.0, max_new_tokens=max_new_tokens, n=1, seed=seed
    )
    outputs = generator.generate(prompts, params, progress=progress)
    if len(outputs) != len(prompts):
        raise RuntimeError(f"generator returned {len(outputs)} results for {len(prompts)} prompts")
    return [parse_judgement(out[0].text if out else "") for out in outputs]
