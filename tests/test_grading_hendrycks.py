"""The official §4 rule grader (``--math_rule_common_score_fn hendrycks``; eddycmu/demystify-long-cot @ e90cf9b,
openrlhf/openrlhf/reward/common.py ``score_hendrycks``): verdicts worked out by hand from that code,
including its quirks (a failing normalisation falls back to comparing the raw strings)."""

from __future__ import annotations

import pytest

from longcot.grading.hendrycks import hendrycks_equal, is_equiv, last_boxed, strip_string

CASES = [
    # (response, reference, verdict, why)
    ("so the answer is $\\boxed{\\frac{1}{2}}$", "\\boxed{\\frac12}", True, "gold unboxed, \\frac12 -> \\frac{1}{2}"),
    ("Thus $x = 5$.", "5", True, "one span: the text after its last '='"),
    ("We get $x = 4$ and then $y = 5$", "5", True, "the LAST $...$ span"),
    ("We get $x = 5$ and then $y = 4$", "5", False, "only the last span counts"),
    ("\\boxed{0.5}", "\\frac{1}{2}", True, "0.5 -> \\frac{1}{2}"),
    ("The answer is: 12.", "12", True, "MetaMath 'the answer is:'"),
    ("final: \\boxed{10\\%}", "10", True, "\\% removed"),
    ("\\boxed{x/2}", "x/2", True, "int('x') raises: raw strings compared, equal"),
    ("\\boxed{x / 2}", "x/2", False, "int('x') raises: raw strings compared, not equal"),
    ("\\boxed{3\\text{ cm}}", "3", True, "units on the right removed"),
    ("\\boxed{1,000}", "1000", True, "thousands separator"),
    ("no answer here", "7", False, "nothing to compare"),
    ("\\[ y = 9 \\] done", "9", False, "one delimiter: the whole text after '=' is compared"),
    ("\\boxed{\\dfrac{3}{4}}", "\\frac34", True, "dfrac -> frac"),
    ("\\boxed{(2, 3)}", "(2,3)", True, "outer parentheses and spaces removed"),
    ("\\boxed{\\sqrt2}", "\\sqrt{2}", True, "\\sqrt2 -> \\sqrt{2}"),
    ("\\boxed{k = 3}", "3", True, "'k =' dropped (left side of at most 2 characters)"),
    ("\\boxed{\\left( 1,2 \\right)}", "(1,2)", True, "\\left / \\right removed"),
]


@pytest.mark.parametrize("response,reference,verdict,why", CASES)
def test_official_verdicts(response, reference, verdict, why):
    assert hendrycks_equal(response, reference) is verdict, why


def test_helpers_by_hand():
    assert last_boxed("a \\boxed{1} b \\boxed{{2}} c") == "\\boxed{{2}}"
    assert last_boxed("\\boxed{unclosed") is None and last_boxed("\\fbox{4}") == "\\fbox{4}"
    assert strip_string(" .5") == "\\frac{1}{2}"  # " .5" -> " 0.5" -> "0.5" -> \frac{1}{2}
    assert strip_string("\\frac1b") == "\\frac{1}{b}" and strip_string("\\frac{a}b") == "\\frac{a}b"
    assert is_equiv(None, None) and not is_equiv("1", None)
    with pytest.raises(ValueError):  # two "\\text{ " units: the official assert fails (is_equiv falls back)
        strip_string("1\\text{ m}\\text{ s}")


def test_rl_reward_uses_the_chosen_rule_grader():
    """reward.rule_grader picks the RL loop's correctness: math-verify accepts '\\boxed{x / 2}' for x/2,
    the official hendrycks grader does not (its normalisation raises and the raw strings differ)."""
    from longcot.data.records import Problem
    from longcot.rewards.config import to_reward_config
    from longcot.rl.recipe import _correctness

    problems = [Problem("0", "q", "x/2", "math", {}), Problem("1", "q", "\\frac{1}{2}", "math", {})]
    texts = ["so \\boxed{x / 2}", "so \\boxed{0.5}"]
    official = to_reward_config({"name": "t", "rule_grader": "hendrycks"})
    assert _correctness(official, problems, texts, None) == [False, True]
    assert _correctness(to_reward_config({"name": "t"}), problems, texts, None)[0] is True
    with pytest.raises(ValueError, match="valid: math_verify, hendrycks"):
        to_reward_config({"name": "t", "rule_grader": "symeval"})


# ---------------------------------------------------------------------------------------------------------
# Oracle: a plain transcription of score_hendrycks and its helpers (eddycmu/demystify-long-cot @ e90cf9b,
# openrlhf/openrlhf/reward/common.py), structured as the original, to compare with on many strings.
# ---------------------------------------------------------------------------------------------------------
import re  # noqa: E402

_SUBS = [("an ", ""), ("a ", ""), (".$", "$"), ("\\$", ""), ("$$", "$"), ("\\ ", ""), ("mbox", "text"),
         (",\\text{and}", ","), ("\\text{and}", ","), ("\\text{m}", "\\text{}"), ("\\le", "<")]
_GONE = ["square", "ways", "integers", "dollars", "mph", "inches", "ft", "hours", "km", "units", "\\ldots", "sue",
         "points", "feet", "minutes", "digits", "cents", "degrees", "cm", "gm", "pounds", "meters", "meals", "edges",
         "students", "childrentickets", "multiples", "\\text{s}", "\\text{.}", "\\text{\ns}", "\\text{}^2", "\\text{}^3",
         "\\text{\n}", "\\text{}", r"\mathrm{th}", r"^\circ", r"^{\circ}", r"\;", r",\!", "{,}", '"', "\\dots", "\n",
         "\r", "\f"]


def ref_last_boxed_only_string(string):
    idx = string.rfind("\\boxed")
    if idx < 0:
        idx = string.rfind("\\fbox")
        if idx < 0:
            return None
    i, right, depth = idx, None, 0
    while i < len(string):
        if string[i] == "{":
            depth += 1
        if string[i] == "}":
            depth -= 1
            if depth == 0:
                right = i
                break
        i += 1
    return None if right is None else string[idx:right + 1]


def ref_remove_boxed(s):
    left = "\\boxed{"
    try:
        assert s[:len(left)] == left
        assert s[-1] == "}"
        return s[len(left):-1]
    except Exception:
        return s


def ref_postprocess(text):
    def normalize_final_answer(final_answer):
        for before, after in _SUBS:
            final_answer = final_answer.replace(before, after)
        for expr in _GONE:
            final_answer = final_answer.replace(expr, "")
        final_answer = re.sub(r"(\\text\{)(.*?)(\})", "\\2", final_answer)
        final_answer = re.sub(r"(\\textbf\{)(.*?)(\})", "\\2", final_answer)
        final_answer = re.sub(r"(\\overline\{)(.*?)(\})", "\\2", final_answer)
        final_answer = re.sub(r"(\\boxed\{)(.*)(\})", "\\2", final_answer)
        if len(re.findall(r"finalansweris(.*)", final_answer)) > 0:
            final_answer = re.findall(r"finalansweris(.*)", final_answer)[-1]
        if len(re.findall(r"oxed\{(.*?)\}", final_answer)) > 0:
            final_answer = re.findall(r"oxed\{(.*?)\}", final_answer)[-1]
        if len(re.findall(r"\$(.*?)\$", final_answer)) > 0:
            final_answer = re.findall(r"\$(.*?)\$", final_answer)[-1]
        final_answer = final_answer.strip()
        if "rac" in final_answer and "\\frac" not in final_answer:
            final_answer = final_answer.replace("rac", "\\frac")
        final_answer = re.sub(r"(frac)([^{])(.)", "frac{\\2}{\\3}", final_answer)
        final_answer = re.sub(r"(sqrt)([^{])", "sqrt{\\2}", final_answer)
        final_answer = final_answer.replace("$", "")
        if final_answer.replace(",", "").isdigit():
            final_answer = final_answer.replace(",", "")
        return final_answer

    for maybe_ans in text.split("."):
        if "targets" in maybe_ans.lower():
            return normalize_final_answer(maybe_ans)
    return normalize_final_answer(text.split(".")[0])


def ref_fix_fracs(string):
    substrs = string.split("\\frac")
    new_str = substrs[0]
    if len(substrs) > 1:
        for substr in substrs[1:]:
            new_str += "\\frac"
            if substr[0] == "{":
                new_str += substr
            else:
                try:
                    assert len(substr) >= 2
                except AssertionError:
                    return string
                a, b = substr[0], substr[1]
                if b != "{":
                    new_str += "{" + a + "}{" + b + "}" + (substr[2:] if len(substr) > 2 else "")
                else:
                    new_str += "{" + a + "}" + b + (substr[2:] if len(substr) > 2 else "")
    return new_str


def ref_fix_a_slash_b(string):
    if len(string.split("/")) != 2:
        return string
    a, b = string.split("/")
    try:
        a, b = int(a), int(b)
        assert string == "{}/{}".format(a, b)
        return "\\frac{" + str(a) + "}{" + str(b) + "}"
    except AssertionError:
        return string


def ref_fix_sqrt(string):
    if "\\sqrt" not in string:
        return string
    splits = string.split("\\sqrt")
    new_string = splits[0]
    for split in splits[1:]:
        new_string += ("\\sqrt{" + split[0] + "}" + split[1:]) if split[0] != "{" else "\\sqrt" + split
    return new_string


def ref_strip_string(string):
    string = string.replace("\n", "").replace("\\!", "").replace("\\\\", "\\")
    string = string.replace("tfrac", "frac").replace("dfrac", "frac").replace("\\left", "").replace("\\right", "")
    string = string.replace("^{\\circ}", "").replace("^\\circ", "").replace("\\$", "")
    if "\\text{ " in string:
        splits = string.split("\\text{ ")
        assert len(splits) == 2
        string = splits[0]
    string = string.replace("\\%", "").replace("\\%", "").replace(" .", " 0.").replace("{.", "{0.")
    if string.replace(",", "").isdigit():
        string = string.replace(",", "")
    match = re.search(r"^\((.*?)\)$", string)
    if match:
        string = match.group(1)
    if len(string) == 0:
        return string
    if string[0] == ".":
        string = "0" + string
    if len(string.split("=")) == 2 and len(string.split("=")[0]) <= 2:
        string = string.split("=")[1]
    string = ref_fix_sqrt(string).replace(" ", "")
    string = ref_fix_fracs(string)
    if string == "0.5":
        string = "\\frac{1}{2}"
    return ref_fix_a_slash_b(string)


def ref_is_equiv(str1, str2):
    if str1 is None and str2 is None:
        return True
    if str1 is None or str2 is None:
        return False
    try:
        return ref_strip_string(str1) == ref_strip_string(str2)
    except Exception:
        return str1 == str2


def ref_extract(answer):
    extracted = answer.strip()
    if extracted[-1] == ".":
        extracted = extracted[:-1]
    if extracted[:2] == r"\(" and extracted[-2:] == r"\)":
        extracted = extracted[2:-2]
    if extracted[:2] == "$$" and extracted[-2:] == r"$$":
        extracted = extracted[2:-2]
    if extracted[0] == "$":
        extracted = extracted[1:]
    if extracted[-1] == "$":
        extracted = extracted[:-1]
    return extracted.strip()


def ref_score_hendrycks(predict, gold_raw):
    gold = ref_remove_boxed(ref_last_boxed_only_string(gold_raw))
    if gold is None:
        gold = gold_raw
    answer = ref_postprocess(predict)
    extracted_answer = answer
    if "answer is" in predict.lower():
        idx = predict.lower().rfind("answer is") + len("answer is")
        extracted_answer = ref_postprocess(predict.lower()[idx:])
    before_predict = "\\" + predict[:-1]
    post_predict = predict[1:] + "\\"
    indices = [pos for pos, (char, before_char, post_char) in enumerate(zip(predict, before_predict, post_predict))
               if (char == "$" and (before_char != "\\" or pos == 0)) or (char == "\\" and post_char == "]")]
    if len(indices) <= 1:
        answer = predict
        if answer.rfind("=") >= 0:
            answer = answer[answer.rfind("=") + 1:]
    else:
        for i in range(len(indices) - 1):
            answer = predict[indices[i] + 1: indices[i + 1]]
            if answer.rfind("=") >= 0:
                answer = answer[answer.rfind("=") + 1:]
    answer_rmboxed = ref_remove_boxed(ref_last_boxed_only_string(answer))
    answer_extract = ref_remove_boxed(ref_last_boxed_only_string(extracted_answer))
    match = re.search(r"\\boxed\{(.+)\}", predict)
    answer_re = match.group(1) if match is not None else ""
    try:
        lowered = predict.lower()
        meta = ref_extract(predict[lowered.index("the answer is:") + len("the answer is:"):])
    except Exception:
        meta = "ANSWER_NOT_FOUND"
    return float(max(ref_is_equiv(answer, gold), ref_is_equiv(answer_rmboxed, gold), ref_is_equiv(answer_extract, gold),
                     ref_is_equiv(answer_re, gold), ref_is_equiv(meta, gold)))


def _shared(*parts: str):
    from pathlib import Path

    path = Path(__file__).resolve().parents[2].joinpath("shared", "data", *parts)
    if not path.exists():
        pytest.skip(f"{path} not present")
    return path


def test_equals_the_transcribed_official_grader_on_shared_cases():
    """Every grader case of ../shared/data/grader_cases, as given and wrapped the ways responses write
    them (boxed, in $...$ with an '=', 'The answer is:'), and MATH-500 gold answers against each other's
    solutions: our verdicts equal the transcription's."""
    import json

    cases = [json.loads(line) for line in _shared("grader_cases", "equiv_cases.jsonl").open()]
    pairs = []
    for c in cases:
        pred, gold = str(c["pred"]), str(c["gold"])
        pairs += [(pred, gold), (f"so \\boxed{{{pred}}}", gold), (f"We get $x = {pred}$.", f"\\boxed{{{gold}}}"),
                  (f"The answer is: {pred}", gold), (f"Thus the answer is {pred}. Done", gold)]
    math500 = [json.loads(line) for line in _shared("math500", "test.jsonl").open()][:120]
    for a, b in zip(math500, math500[1:] + math500[:1]):
        pairs += [(a["solution"], a["solution"]), (a["solution"], b["solution"])]
    ours = [hendrycks_equal(p, g) for p, g in pairs]
    ref = [ref_score_hendrycks(p, g) == 1.0 for p, g in pairs]
    mismatched = [(p, g, o) for (p, g), o, r in zip(pairs, ours, ref) if o != r]
    assert not mismatched, mismatched[:5]
    assert 0.05 < sum(ours) / len(ours) < 0.95  # both verdicts occur
