"""The model-based verifier (§5): judge prompt, verdict parsing, batched judging, correctness sources."""


import pytest

from longcot.generation.base import Completion, SamplingParams
from longcot.rewards.correctness import score_correctness
from longcot.rewards.verifier import (
    JUDGE_SYSTEM_PROMPT,
    OFFICIAL_MAX_NEW_TOKENS,
    build_judge_prompt,
    official_tail,
    judge_batch,
    parse_judgement,
    tail_lines,
)


@pytest.mark.parametrize(
    "text,expected",
    [
        ("Judgement: correct", "correct"),
        ("Judgement: wrong", "wrong"),
        ("Judgement: not_found", "not_found"),
        ("judgement: CORRECT", "correct"),
        ("JUDGMENT: Wrong", "wrong"),  # the other spelling
        ("**Judgement:** Correct", "correct"),
        ("**Judgement**: wrong", "wrong"),
        ("Judgement: **not_found**", "not_found"),
        ("`Judgement: correct`", "correct"),
        ("Judgement: `wrong`", "wrong"),
        ("Judgement: correct. The final answers agree.", "correct"),
        ("Judgement: Not found", "not_found"),
        ("Judgement: not-found", "not_found"),
        ("Judgement: incorrect", "wrong"),
        ("Judgement: not correct", "wrong"),
        ("Judgement is correct", "correct"),
        ("Final judgment - [Correct]", "correct"),
        ("Judgement:\n\n**wrong**", "wrong"),
        ("The boxed value is 5 while the reference is 6.\nJudgement: wrong", "wrong"),
        # words before the verdict on the judgement line
        ("Judgement: The answer is correct", "correct"),
        ("Judgement: correctly answered", "correct"),
        ("Judgement: partially correct", "wrong"),
        ("**Judgement:** the response is not correct", "wrong"),
        # the last occurrence wins
        ("Judgement: correct\nOn reflection...\nJudgement: wrong", "wrong"),
        ("Judgement: wrong\nJudgement: not_found\nJudgement: Correct", "correct"),
        # missing or unusable -> not_found
        ("", "not_found"),
        ("The answer is correct.", "not_found"),
        ("Correct", "not_found"),
        ("Judgement: correctness cannot be established", "not_found"),
        ("Judgement: unsure", "not_found"),
    ],
)
def test_parse_judgement(text, expected):
    assert parse_judgement(text) == expected


def test_tail_lines():
    text = "\n".join(f"line {i}" for i in range(1, 31)) + "\n\n\n"
    tail = tail_lines(text, 20)
    assert tail.splitlines() == [f"line {i}" for i in range(11, 31)]
    assert tail_lines("a\nb", 20) == "a\nb"
    with pytest.raises(ValueError):
        tail_lines("a", 0)


def test_official_judge_prompt_exact():
    """The paper's prompt (official openrlhf/reward/judge.py PROMPT_TEMPLATE), character for character."""
    response = "\n".join(f"step {i}" for i in range(1, 31)) + "\nSo the answer is \\boxed{42}.\n"
    msgs = build_judge_prompt("The product is \\boxed{42}.", response, "What is 6*7?")
    assert [m["role"] for m in msgs] == ["user"]  # one user turn; the problem is not shown
    tail = "\n".join(["step 13"] + [f"step {i}" for i in range(14, 31)] + ["So the answer is \\boxed{42}.", ""])
    expected = (
        "Given the following last 20 lines of the LLM response to a math question\n"
        "and the reference solution to that question, evaluate if the LLM response is correct based only on the LLM's final answer.\n"
        "\n"
        "LLM response (last 20 lines):\n"
        "...\n"
        f"{tail}\n"
        "\n"
        "Reference solution:\n"
        "The product is \\boxed{42}.\n"
        "\n"
        "Explain your thought process step-by-step before responding with `Judgement: <correct/wrong/not_found>`\n"
    )
    assert msgs[0]["content"] == expected
    assert "What is 6*7?" not in msgs[0]["content"]
    # the official cut keeps a trailing empty line (split on "\n", no strip): 19 text lines + ""
    assert official_tail("a\nb\n", 2) == "b\n" and official_tail("a\nb", 5) == "a\nb"
    with pytest.raises(ValueError, match="official, concise"):
        build_judge_prompt("1", "x", style="terse")


def test_build_judge_prompt_concise():
    response = "\n".join(f"step {i}" for i in range(1, 31)) + "\nSo the answer is \\boxed{42}."
    msgs = build_judge_prompt("42", response, "What is 6*7?", style="concise")
    assert [m["role"] for m in msgs] == ["system", "user"]
    assert msgs[0]["content"] == JUDGE_SYSTEM_PROMPT
    user = msgs[1]["content"]
    assert "What is 6*7?" in user and "42" in user and "\\boxed{42}" in user
    # only the last 20 lines of the response: steps 12..30 and the final line
    assert "step 12\n" in user and "step 11\n" not in user and "step 1\n" not in user
    for verdict in ("Judgement: correct", "Judgement: wrong", "Judgement: not_found"):
        assert verdict in user
    assert "Problem" not in build_judge_prompt("42", response, style="concise")[1]["content"]
    assert "last 5 lines" in build_judge_prompt("42", response, last_lines=5, style="concise")[1]["content"]


class FakeJudge:
    """A Generator stand-in that replies from a script and records its calls."""

    def __init__(self, replies):
        self.replies = list(replies)
        self.calls = []

    def generate(self, prompts, params, *, seeds=None, first_sample=0, progress=True):
        self.calls.append((list(prompts), params))
        assert len(prompts) == len(self.replies)
        return [
            [Completion(text=r, token_ids=(1, 2), finish_reason="stop", prompt_tokens=10)] for r in self.replies
        ]

    def count_tokens(self, texts):
        return [len(t.split()) for t in texts]


def test_judge_batch_one_greedy_call():
    judge = FakeJudge(["Judgement: correct", "**Judgement:** Wrong", "I cannot tell."])
    out = judge_batch(
        judge, ["p1", None, "p3"], ["1", "2", "3"], ["r1", "r2", "r3"], max_new_tokens=64, style="concise"
    )
    assert out == ["correct", "wrong", "not_found"]
    assert len(judge.calls) == 1
    prompts, params = judge.calls[0]
    assert isinstance(params, SamplingParams)
    assert params.temperature == 0.0 and params.n == 1 and params.max_new_tokens == 64
    assert "p1" in prompts[0][1]["content"] and "Problem" not in prompts[1][1]["content"]


def test_judge_batch_defaults_are_official():
    """Default: the official prompt, greedy, 1,024 new tokens; step-by-step replies parse robustly."""
    replies = [
        "The response ends with 42 and the reference is 42.\n**Judgement:** correct",
        "Step 1: the final answer is 7.\nStep 2: the reference is 8.\nJudgement: wrong",
        "The response stops mid-way, no final answer.\nJudgement: not_found",
    ]
    judge = FakeJudge(replies)
    out = judge_batch(judge, None, ["42", "8", "1"], ["\\boxed{42}", "\\boxed{7}", "so"])
    assert out == ["correct", "wrong", "not_found"]
    prompts, params = judge.calls[0]
    assert OFFICIAL_MAX_NEW_TOKENS == 1024 and params.max_new_tokens == 1024 and params.temperature == 0.0
    assert [m["role"] for m in prompts[0]] == ["user"]
    assert prompts[0][0]["content"].startswith("Given the following last 20 lines of the LLM response")


def test_judge_batch_edge_cases():
    judge = FakeJudge([])
    assert judge_batch(judge, None, [], []) == []
    assert judge.calls == []
    with pytest.raises(ValueError):
        judge_batch(judge, None, ["1"], ["a", "b"])
    with pytest.raises(ValueError):
        judge_batch(judge, ["p"], ["1", "2"], ["a", "b"])


def test_score_correctness_model():
    judge = FakeJudge(["Judgement: correct", "Judgement: not_found", "Judgement: wrong"])
    cfg = {"name": "t", "correctness": "model", "verifier": {"max_new_tokens": 32, "last_lines": 3}}
    res = score_correctness(cfg, ["1", "2", "3"], ["a", "b", "c"], judge=judge)
    assert res.correct == [True, False, False]
    assert res.judgements == ["correct", "not_found", "wrong"]
    assert judge.calls[0][1].max_new_tokens == 32
    with pytest.raises(ValueError, match="judge"):
        score_correctness(cfg, ["1"], ["a"])


def test_score_correctness_rule_real_grader():
    res = score_correctness({"name": "t"}, ["42", "\\frac{1}{2}", "7"], ["The answer is \\boxed{42}.", "so \\boxed{0.5}", "\\boxed{8}"], workers=1)
    assert res.correct == [True, True, False] and res.judgements is None


def test_judge_batch_through_the_real_hf_backend():
    """The judge path end to end on the tiny model: one greedy batch, a verdict per response, deterministic."""
    from longcot.generation.config import GenerationConfig
    from longcot.models.config import ModelConfig
    from longcot.generation import build_generator

    gen = build_generator(ModelConfig(name="tiny", path="tiny"), GenerationConfig(backend="hf", device="cpu"))
    args = (["p1", "p2"], ["1", "2"], ["so \\boxed{1}", "maybe 3"])
    first = judge_batch(gen, *args, max_new_tokens=8, progress=False)
    assert first == judge_batch(gen, *args, max_new_tokens=8, progress=False)
    assert len(first) == 2 and set(first) <= {"correct", "wrong", "not_found"}
