"""The CPU twin's task (toy_level=search) and its teachers: the mechanisms the twin studies rely on.

These tests check the mechanism, not an outcome: disjoint splits whose overlap the eval reports, seeds
that change the draws, a long teacher that walks the map in order, whose checks catch its own slips and
whose walks end at the answer, a short teacher that answers directly, a walk that is more often
right the further it goes, and restated checks that add length and change no answer.
"""

from __future__ import annotations

import random
import re

import pytest

from longcot.data import twin
from longcot.data.toy import toy_problems
from longcot.generation import search_teacher as st
from longcot.generation.base import SamplingParams
from longcot.generation.synthetic import SyntheticGenerator
from longcot.grading import extract_answer

_LINE = re.compile(r"^(\d)>(\d)(?: wait (\d)>(\d))?;(\d) (is|not) (\d)\.(?: \\boxed\{(\d)\})?$")


def _problems(n: int, seed: int = 0) -> list[twin.Lookup]:
    rng = random.Random(seed)
    return [twin.random_problem(rng) for _ in range(n)]


def test_a_problem_is_a_permutation_its_text_parses_back_and_has_one_answer() -> None:
    p = twin.Lookup(((9, 6), (4, 3), (8, 9), (6, 2), (0, 7), (1, 8), (7, 0), (2, 1), (3, 5), (5, 4)), 4)
    assert p.text() == "Map: 9>6;4>3;8>9;6>2;0>7;1>8;7>0;2>1;3>5;5>4; Find x with x>4."
    assert p.answer() == 5 and twin.parse(f"{p.text()}\n\nPlease reason step by step") == p
    with pytest.raises(ValueError, match="permutation"):
        twin.Lookup(((0, 1), (1, 1)) + tuple((k, k) for k in range(2, 10)), 1)
    assert twin.parse("Compute $1+2$.") is None
    answers = [p.answer() for p in _problems(2000)]
    assert all(200 - 60 < answers.count(d) < 200 + 60 for d in range(10))  # answers balanced: chance is 10%


@pytest.mark.parametrize("split_seed", [0, 1])
def test_pools_are_disjoint_and_the_eval_pool_is_fixed(split_seed: int) -> None:
    held = twin.draw(300, 0, "eval", split_seed)
    train = twin.draw(5000, 0, "train", split_seed)
    assert len({p.text() for p in held}) == 300 and len({p.text() for p in train}) == 5000
    assert not {p.text() for p in held} & {p.text() for p in train}
    assert {p.text() for p in twin.draw(300, 7, "eval", split_seed)} == {p.text() for p in held}  # reordered only
    with pytest.raises(ValueError, match="eval pool has 300"):
        twin.draw(301, 0, "eval", split_seed)
    with pytest.raises(ValueError, match="valid: train, eval"):
        twin.draw(3, 0, "test", split_seed)


def test_split_and_draw_seeds_change_the_problems() -> None:
    assert {p.text() for p in twin.draw(300, 0, "eval", 0)} != {p.text() for p in twin.draw(300, 0, "eval", 1)}
    assert [p.text() for p in twin.draw(50, 0, "train", 0)] != [p.text() for p in twin.draw(50, 1, "train", 0)]
    assert [p.text() for p in twin.draw(50, 0, "train", 0)] == [p.text() for p in twin.draw(50, 0, "train", 0)]


def test_toy_problems_of_the_search_level_never_overlap_the_benchmark() -> None:
    train = toy_problems(2000, 0, prefix="twin", level="search", split="train", split_seed=4)
    held = toy_problems(300, 1, prefix="twin", level="search", split="eval", split_seed=4)
    assert not {p.problem for p in train} & {p.problem for p in held}
    for p in held[:20]:
        lookup = twin.parse(p.problem)
        assert lookup is not None and str(lookup.answer()) == p.answer


def test_train_overlap_is_reported_for_toy_data() -> None:
    from omegaconf import OmegaConf

    from longcot.data import load_benchmark, train_overlap

    data = OmegaConf.create({"name": "twin", "kind": "toy", "toy_level": "search", "toy_size": 2000, "toy_seed": 0,
                             "toy_split_seed": 3, "limit": None})
    bench = OmegaConf.create({"name": "twin", "kind": "toy", "toy_level": "search", "toy_size": 300, "toy_seed": 1,
                              "toy_split_seed": 3, "limit": None})
    assert train_overlap(load_benchmark(bench), data) == {"data": "twin", "toy_level": "search", "problems": 0}
    # the count is real: the easy level's benchmark and prompts are drawn independently from 60 problems
    easy = OmegaConf.create({"name": "easy", "kind": "toy", "toy_level": "easy", "toy_size": 200, "toy_seed": 0,
                             "toy_split_seed": 0, "limit": None})
    assert train_overlap(load_benchmark(OmegaConf.merge(easy, {"toy_seed": 1})), easy)["problems"] > 0


def _check_walk(p: twin.Lookup, text: str) -> list[int]:
    """Every line copies the next pair (a caught slip is corrected to it) and checks its value against
    the target; returns the keys checked, in order."""
    f = dict(p.pairs)
    checked = []
    for line in text.splitlines():
        if line.startswith(("Alternatively", "None matched")):
            continue
        m = _LINE.match(line)
        assert m, line
        k, v, wk, wv, stated, verdict, t, boxed = m.groups()
        k, v = int(k), int(v)
        if wk is not None:  # "4>2 wait 4>3": the slip was wrong, the correction right
            assert int(wk) == k and v != f[k] and int(wv) == f[k]
            v = int(wv)
        assert v == f[k] and int(stated) == v and int(t) == p.target
        assert verdict == ("is" if v == p.target else "not")
        assert (boxed is not None) == (verdict == "is") and (boxed is None or int(boxed) == k)
        checked.append(k)
    return checked


def test_the_long_teacher_walks_the_map_in_order_and_its_checks_catch_its_slips() -> None:
    caught = 0
    for i, p in enumerate(_problems(300)):
        text = st.write_long(p, random.Random(i), error_rate=0.0, giveup=0.0)
        caught += text.count(" wait ")
        keys = [k for k, _ in p.pairs]
        assert _check_walk(p, text) == keys[: keys.index(p.answer()) + 1]  # in listed order, stopped at the answer
        assert extract_answer(text) == str(p.answer())
    assert caught > 50  # slips happen (SLIP_RATE), and every one was corrected


def test_an_uncaught_slip_can_make_the_long_teacher_wrong_and_the_short_one_is_direct() -> None:
    probs = _problems(400)
    wrong = sum(extract_answer(st.write_long(p, random.Random(i), error_rate=1.0, giveup=0.0)) != str(p.answer())
                for i, p in enumerate(probs))
    assert wrong > 0.05 * len(probs)  # a slip at the answer (or a false match) makes the answer wrong
    for i, p in enumerate(probs[:30]):
        assert st.write_short(p, random.Random(i), error_rate=0.0) == f"\\boxed{{{p.answer()}}}"
    assert sum(st.write_short(p, random.Random(i), error_rate=1.0) != f"\\boxed{{{p.answer()}}}"
               for i, p in enumerate(probs)) == len(probs)


def test_a_longer_walk_is_more_often_right() -> None:
    """Give-ups cut the walk short and guess: walking on (longer) is right, giving up mostly is not --
    the length/correctness link a correctness-only RL reward exploits (§4.1)."""
    rows = []
    for i, p in enumerate(_problems(3000)):
        text = st.write_long(p, random.Random(i), error_rate=0.0)
        rows.append(("Alternatively" in text, extract_answer(text) == str(p.answer())))
    gave_up = [r for r in rows if r[0]]
    walked = [r for r in rows if not r[0]]
    assert len(gave_up) > 100 and walked
    assert sum(r[1] for r in walked) / len(walked) == 1.0
    assert sum(r[1] for r in gave_up) / len(gave_up) < 0.3


@pytest.mark.parametrize("style", ["long", "short"])
def test_the_synthetic_backend_answers_twin_prompts_in_its_style(style: str) -> None:
    probs = toy_problems(12, 0, level="search", split="eval")
    gen = SyntheticGenerator(style=style, error_rate=0.0)
    template = "{problem}\n\nPlease reason step by step, and put your final answer within \\boxed{{}}."
    prompts = [[{"role": "user", "content": template.format(problem=p.problem)}] for p in probs]
    outs = gen.generate(prompts, SamplingParams(n=2, max_new_tokens=4096, temperature=1.0), progress=False)
    for p, o in zip(probs, outs):
        for c in o:
            assert (";" in c.text) == (style == "long")
            if style == "short":
                assert c.text == f"\\boxed{{{p.answer}}}"


def test_the_giveup_rate_sets_how_often_the_long_teacher_gives_up_and_enters_the_identity() -> None:
    """``generation.giveup_rate`` reaches the long teacher through the synthetic backend (0: never gives
    up; higher: more often), and a distill run's identity carries it only when it differs from the
    built-in rate, so runs made before the key existed keep their identities."""
    from longcot.stages.base import generation_identity
    from longcot.study.spec import compose as compose_config

    probs = toy_problems(200, 0, level="search", split="eval")
    prompts = [[{"role": "user", "content": p.problem}] for p in probs]
    params = SamplingParams(n=2, max_new_tokens=4096, temperature=1.0)
    rates = {}
    for g in (0.0, st.GIVEUP_RATE, 0.4):
        outs = SyntheticGenerator(style="long", error_rate=0.0, giveup_rate=g).generate(prompts, params, progress=False)
        rates[g] = sum("Alternatively" in c.text for o in outs for c in o) / (2 * len(probs))
    assert rates[0.0] == 0.0 < rates[st.GIVEUP_RATE] < rates[0.4]
    with pytest.raises(ValueError, match="generation.giveup_rate must be in"):
        SyntheticGenerator(giveup_rate=1.5)

    base = ["stage=distill", "generation=synthetic", "data=twin"]
    default = generation_identity(compose_config(base))
    assert "giveup_rate" not in default
    assert generation_identity(compose_config([*base, f"generation.giveup_rate={st.GIVEUP_RATE}"])) == default
    assert generation_identity(compose_config([*base, "generation.giveup_rate=0.3"])) == {**default, "giveup_rate": 0.3}


def test_restated_checks_repeat_the_line_before_add_length_and_change_no_answer() -> None:
    """``recheck`` (generation.recheck_rate): after a checked line the teacher may state the same check
    again, up to MAX_RECHECKS times: free length for the rewards to value (the third §4 design). At 0 it
    draws nothing, so every earlier run's walks are byte-identical."""
    probs = _problems(1500)
    for i, p in enumerate(probs[:300]):
        assert st.write_long(p, random.Random(i), 0.1, 0.3, recheck=0.0) == st.write_long(p, random.Random(i), 0.1, 0.3)
    plain, padded, restated = [], [], 0
    for i, p in enumerate(probs):
        plain.append(len(st.write_long(p, random.Random(i), error_rate=0.0, giveup=0.0)))
        text = st.write_long(p, random.Random(i), error_rate=0.0, giveup=0.0, recheck=0.3)
        padded.append(len(text))
        assert extract_answer(text) == str(p.answer())  # rechecks never change the answer
        lines = text.splitlines()
        walk = [line for line in lines if not line.startswith("recheck ")]
        if lines[-1].startswith("recheck "):  # the answer follows the last restatement
            walk[-1] += " \\boxed" + lines[-1].split(" \\boxed")[1]
        keys = [k for k, _ in p.pairs]
        assert _check_walk(p, "\n".join(walk)) == keys[: keys.index(p.answer()) + 1]  # the walk underneath
        run = 0
        for before, line in zip(lines, lines[1:]):
            if not line.startswith("recheck "):
                run = 0
                continue
            run += 1
            restated += 1
            said = re.sub(r"^recheck |^\d>\d wait ", "", before).split(" \\boxed")[0]
            assert line.split(" \\boxed")[0] == f"recheck {said}"  # the same check, restated
            assert run <= st.MAX_RECHECKS
    assert restated > 1000 and sum(padded) > 1.3 * sum(plain)


def test_the_recheck_rate_reaches_the_teacher_and_enters_the_identity_only_when_set() -> None:
    from longcot.stages.base import generation_identity
    from longcot.study.spec import compose as compose_config

    prompts = [[{"role": "user", "content": p.problem}] for p in toy_problems(50, 0, level="search", split="eval")]
    params = SamplingParams(n=2, max_new_tokens=4096, temperature=1.0)
    counts = {r: sum(c.text.count("recheck ") for o in SyntheticGenerator(style="long", recheck_rate=r).generate(
        prompts, params, progress=False) for c in o) for r in (0.0, 0.3)}
    assert counts[0.0] == 0 < counts[0.3]
    with pytest.raises(ValueError, match="generation.recheck_rate must be in"):
        SyntheticGenerator(recheck_rate=-0.1)
    base = ["stage=distill", "generation=synthetic", "data=twin"]
    default = generation_identity(compose_config(base))
    assert "recheck_rate" not in default
    assert generation_identity(compose_config([*base, "generation.recheck_rate=0.0"])) == default
    assert generation_identity(compose_config([*base, "generation.recheck_rate=0.3"])) == {**default, "recheck_rate": 0.3}
