"""Chat prompts for each benchmark kind; every prompt asks for the final answer in ``\\boxed{}``."""

from __future__ import annotations

from longcot.data.loading import MMLU_LETTERS
from longcot.data.records import Problem
from longcot.generation.base import Message

MATH_TEMPLATE = "{problem}\n\nPlease reason step by step, and put your final answer within \\boxed{{}}."
MMLU_TEMPLATE = (
    "{problem}\n\nOptions:\n{options}\n\n"
    "Please reason step by step, and put the letter of the correct option within \\boxed{{}}."
)
THEOREMQA_HINTS = {
    "bool": "The answer is True or False.",
    "integer": "The answer is an integer.",
    "float": "The answer is a number.",
    "list of integer": "The answer is a list of integers, e.g. [1, 2].",
    "list of float": "The answer is a list of numbers, e.g. [1.5, 2.0].",
    "option": "The answer is one of the options, e.g. (a).",
}


def problem_text(problem: Problem, template: str = MATH_TEMPLATE) -> str:
    """The user turn for ``problem``."""
    if problem.kind == "mmlu_pro":
        options = "\n".join(f"{MMLU_LETTERS[i]}. {opt}" for i, opt in enumerate(problem.meta["options"]))
        return MMLU_TEMPLATE.format(problem=problem.problem, options=options)
    text = template.format(problem=problem.problem)
    if problem.kind == "theoremqa":
        hint = THEOREMQA_HINTS.get(problem.meta.get("answer_type", ""), "")
        text = f"{text}\n{hint}".rstrip()
    return text


def chat_prompt(problem: Problem, system_prompt: str | None = None, template: str = MATH_TEMPLATE) -> list[Message]:
    """Chat messages (optional system turn, then the user turn)."""
    messages: list[Message] = []
    if system_prompt:
        messages.append({"role": "system", "content": system_prompt})
    messages.append({"role": "user", "content": problem_text(problem, template)})
    return messages
