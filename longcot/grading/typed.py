"""Typed graders for TheoremQA, MMLU-Pro and AIME: pure string parsing, in-process, linear time.

None of them uses sympy or evaluates text, so they need no worker pool. Each takes the model
response (a full response or an already extracted answer): the answer is `extract_answer(response)`
(last complete box, else the text after the last answer phrase), or the response itself when it
is a short single line (an already extracted answer).
"""

from __future__ import annotations

import math
import re
from fractions import Fraction
from typing import Any

from longcot.grading.extract import extract_answer, extract_boxed

__all__ = ["THEOREMQA_ANSWER_TYPES", "THEOREMQA_REL_TOL", "grade_aime", "grade_mmlu_pro", "grade_theoremqa"]

THEOREMQA_ANSWER_TYPES = ("bool", "integer", "float", "list of integer", "list of float", "option")
# Relative tolerance of TheoremQA's official scorer: `within_eps` in wenhuchen/TheoremQA
# predict_accuracy.py accepts |pred - gt| <= 0.04 * |gt| (so gt == 0 must be matched exactly).
THEOREMQA_REL_TOL = 0.04
_MAX_ANSWER_CHARS = 500  # longer "answers" are not parsed as numbers/lists (keeps parsing cheap)
_MAX_EXPONENT = 400  # |exponent| beyond this is rejected rather than materialised as a Fraction


def _final_answer(response: Any) -> str | None:
    if not isinstance(response, str):
        return None
    answer = extract_answer(response)
    if answer is None:
        s = response.strip()
        if s and len(s) <= 200 and "\n" not in s:
            answer = s
    return answer


# ------------------------------------------------------------------------------ cleaning

_TEXT_CMD = re.compile(r"\\(?:text|textbf|textrm|textnormal|textit|mathrm|mathbf|mathit|mbox|operatorname)\s*\{([^{}]*)\}")
_SPACING = re.compile(r"\\[,;:! ]|\\(?:left|right|displaystyle|quad|qquad)(?![A-Za-z])")
_SPACED_THOUSANDS = re.compile(r"(?<=\d) +(?=\d{3}(?!\d))")  # "1 000" / "1\,000" -> "1000"


def _clean(text: str) -> str:
    """Unwrap `\\text{..}`-like commands, drop `$`, spacing, `\\left`/`\\right`, markdown `*`."""
    s = text
    for _ in range(3):
        t = _TEXT_CMD.sub(r"\1", s)
        if t == s:
            break
        s = t
    s = s.replace("{,}", ",")
    s = _SPACING.sub(" ", s)
    for old, new in (("\\$", ""), ("$", ""), ("*", ""), ("−", "-"), ("\\dfrac", "\\frac"), ("\\tfrac", "\\frac")):
        s = s.replace(old, new)
    return s.strip().rstrip(".").strip()


# ------------------------------------------------------------------------------ numbers

_SIGNED = r"[-+]?\s*"
_MANTISSA = r"(?:\d{1,3}(?:,\d{3})+(?:\.\d*)?|\d+(?:\.\d*)?|\.\d+)"
_NUMBER = re.compile(rf"(?P<sign>[-+]?)\s*(?P<mant>{_MANTISSA})(?:[eE](?P<exp>[-+]?\d+))?")
_TIMES_TEN = re.compile(
    r"\s*(?:\\times|\\cdot|×|x|\*)\s*10\s*\^\s*(?:\{\s*(?P<e1>[-+]?\d+)\s*\}|\(\s*(?P<e2>[-+]?\d+)\s*\)|(?P<e3>[-+]?\d+))"
)
_POW_TEN = re.compile(r"(?P<sign>[-+]?)\s*10\s*\^\s*(?:\{\s*(?P<e1>[-+]?\d+)\s*\}|(?P<e3>[-+]?\d+))")
_FRAC = re.compile(rf"(?P<sign>[-+]?)\s*\\frac\s*\{{\s*(?P<a>{_MANTISSA})\s*\}}\s*\{{\s*(?P<b>{_MANTISSA})\s*\}}")
_SLASH = re.compile(rf"(?P<a>{_SIGNED}{_MANTISSA})\s*/\s*(?P<b>{_MANTISSA})(?![\d.])")
# What may follow a number: nothing, a percent sign, or a unit / word (not an operator or digit).
_UNIT_TAIL = re.compile(r"(?:%|\\%|°|\\circ|\\(?:Omega|mu|AA|ohm|degree)\b|[A-Za-zµΩÅ])")


def _exp_ok(exp: str | None) -> bool:
    return exp is None or abs(int(exp)) <= _MAX_EXPONENT


def _fraction(mantissa: str, exp: str | None = None, sign: str = "") -> Fraction:
    value = Fraction(mantissa.replace(",", "")) * (Fraction(10) ** int(exp) if exp else 1)
    return -value if sign == "-" else value


def _tail_ok(rest: str) -> bool:
    rest = rest.strip()
    return not rest or _UNIT_TAIL.match(rest) is not None


def _parse_number(text: str) -> Fraction | None:
    """A real number written as `-1,234.5`, `1.2e-3`, `1.2 \\times 10^{-3}`, `10^{5}`, `\\frac{1}{4}`,
    `3/4`, optionally followed by a unit or `%` (ignored, as in TheoremQA); after `=` or
    `\\approx` only the last part counts. Anything else (symbols, `\\sqrt`, `\\pi`...) is None."""
    s = _clean(text)
    if not s or len(s) > _MAX_ANSWER_CHARS:
        return None
    for sep in ("\\approx", "≈", "="):
        if sep in s:
            s = s.rsplit(sep, 1)[1].strip()
    s = _SPACED_THOUSANDS.sub("", s)
    m = _FRAC.match(s)
    if m:
        b = Fraction(m["b"].replace(",", ""))
        return _fraction(m["a"], sign=m["sign"]) / b if b and _tail_ok(s[m.end() :]) else None
    m = _SLASH.match(s)
    if m:
        b = Fraction(m["b"].replace(",", ""))
        a = Fraction(re.sub(r"[\s,]", "", m["a"]))
        return a / b if b and _tail_ok(s[m.end() :]) else None
    m = _POW_TEN.fullmatch(s)
    if m:
        exp = m["e1"] or m["e3"]
        return _fraction("1", exp, m["sign"]) if _exp_ok(exp) else None
    m = _NUMBER.match(s)
    if not m:
        return None
    exp, end = m["exp"], m.end()
    sci = _TIMES_TEN.match(s, end)
    if sci and exp is None:
        exp, end = sci["e1"] or sci["e2"] or sci["e3"], sci.end()
    if not _exp_ok(exp) or not _tail_ok(s[end:]):
        return None
    return _fraction(m["mant"], exp, m["sign"])


def _parse_list(text: str) -> list[Fraction] | None:
    """`[1, 2]`, `(1, 2)`, `\\{1, 2\\}` or `1, 2` (`;` also separates) -> numbers; None if any fails."""
    s = _clean(text)
    if not s or len(s) > _MAX_ANSWER_CHARS:
        return None
    for open_, close in (("\\{", "\\}"), ("[", "]"), ("(", ")"), ("{", "}")):
        if s.startswith(open_) and s.endswith(close):
            s = s[len(open_) : -len(close)]
            break
    values = [_parse_number(x) for x in s.split(";" if ";" in s else ",")]
    if not values or any(v is None for v in values):
        return None
    return values  # type: ignore[return-value]


def _close(pred: Fraction, gold: Fraction, rel_tol: float) -> bool:
    return abs(pred - gold) <= Fraction(rel_tol) * abs(gold)


def _is_integer(value: Fraction) -> bool:
    return value.denominator == 1


# ------------------------------------------------------------------------------ words & letters

_BOOL_WORDS = {"true": True, "yes": True, "false": False, "no": False}


def _parse_bool(text: str) -> bool | None:
    s = _clean(text).strip("()[]{}.,!: ").lower()
    return _BOOL_WORDS.get(s)


def _parse_option(text: str) -> str | None:
    """`(c)`, `c`, `(C)`, `\\text{(c)}`, `(c) some text` -> "c" (TheoremQA options are a-e)."""
    m = re.match(r"\(?([a-eA-E])\)?(?:$|[\s.:,)])", _clean(text))
    return m.group(1).lower() if m else None


# ------------------------------------------------------------------------------ graders


def grade_theoremqa(gold: Any, answer_type: str, response: Any, *, rel_tol: float = THEOREMQA_REL_TOL) -> bool:
    """Grade a TheoremQA response against `gold` (the dataset's `Answer`: a JSON value or its text).

    By `answer_type` (the dataset's `Answer_type`):

    * "bool": True/False/yes/no (case-insensitive) must match.
    * "integer": the answer must parse to exactly the gold integer (`5.0`, `5,000`, `5 \\text{ m}`
      parse; `4.6` for 5 does not -- stricter than the official `round(pred) == gt`).
    * "float": |pred - gold| <= rel_tol * |gold| (official TheoremQA tolerance 0.04, relative).
    * "list of integer" / "list of float": same length, both sorted (as the official scorer does),
      then elementwise as above.
    * "option": the letter of `(a)`..`(e)` must match.

    Numbers may be written as `1.2e-3`, `1.2 \\times 10^{-3}`, `\\frac{1}{4}`, `3/4`, with trailing
    units; expressions (`\\sqrt{2}`, `\\pi/2`) are not evaluated and grade False.
    """
    if answer_type not in THEOREMQA_ANSWER_TYPES:
        raise ValueError(f"unknown TheoremQA Answer_type {answer_type!r}; valid: {', '.join(THEOREMQA_ANSWER_TYPES)}")
    answer = _final_answer(response)
    if answer is None:
        return False
    if answer_type == "bool":
        want = gold if isinstance(gold, bool) else _parse_bool(str(gold))
        if want is None:
            raise ValueError(f"bool gold must be True/False, got {gold!r}")
        return _parse_bool(answer) is want
    if answer_type == "option":
        want_letter = _parse_option(str(gold))
        if want_letter is None:
            raise ValueError(f"option gold must look like '(a)', got {gold!r}")
        return _parse_option(answer) == want_letter
    if answer_type in ("integer", "float"):
        want_num = _gold_number(gold)
        got = _parse_number(answer)
        if got is None:
            return False
        if answer_type == "integer":
            return _is_integer(got) and got == want_num
        return _close(got, want_num, rel_tol)
    # lists
    want_list = [_gold_number(x) for x in gold] if isinstance(gold, (list, tuple)) else _parse_list(str(gold))
    if want_list is None:
        raise ValueError(f"list gold must be a list of numbers, got {gold!r}")
    got_list = _parse_list(answer)
    if got_list is None or len(got_list) != len(want_list):
        return False
    if answer_type == "list of integer":
        return sorted(got_list) == sorted(want_list) and all(map(_is_integer, got_list))
    return all(_close(p, g, rel_tol) for p, g in zip(sorted(got_list), sorted(want_list)))


def _gold_number(gold: Any) -> Fraction:
    if isinstance(gold, bool):
        raise ValueError(f"numeric gold expected, got {gold!r}")
    if isinstance(gold, int):
        return Fraction(gold)
    if isinstance(gold, float):
        if not math.isfinite(gold):
            raise ValueError(f"numeric gold must be finite, got {gold!r}")
        return Fraction(repr(gold))  # the decimal the dataset wrote, not the binary float
    value = _parse_number(str(gold))
    if value is None:
        raise ValueError(f"numeric gold expected, got {gold!r}")
    return value


_MMLU_LETTERS = "ABCDEFGHIJ"
_LETTER_IN_BOX = re.compile(r"\(?([A-J])\)?(?:$|[\s.:,)])")
_ANSWER_IS_LETTER = re.compile(r"answer is:?\s*\(?([A-J])\)?(?![A-Za-z0-9])")
_ANSWER_COLON_LETTER = re.compile(r"[aA]nswer:\s*\(?([A-J])\)?(?![A-Za-z0-9])")


def _box_letter(content: str) -> str | None:
    s = _clean(content)
    if len(s) == 1 and s.upper() in _MMLU_LETTERS:  # `\boxed{c}`: a lone letter in a box
        return s.upper()
    if len(s) == 3 and s[0] == "(" and s[2] == ")" and s[1].upper() in _MMLU_LETTERS:
        return s[1].upper()
    m = _LETTER_IN_BOX.match(s)
    return m.group(1) if m else None


def _last_group(pattern: re.Pattern[str], text: str) -> str | None:
    found = None
    for found in pattern.finditer(text):
        pass
    return found.group(1) if found else None


def grade_mmlu_pro(gold_letter: str, response: Any) -> bool:
    """Grade an MMLU-Pro response: its option letter (A-J) must equal `gold_letter`.

    The letter is, in order: the last complete `\\boxed{}` if it holds a letter (`\\boxed{C}`,
    `\\boxed{(C)}`, `\\boxed{\\text{C}}`, `\\boxed{C) 0.35 ft}`); else the last "answer is (X)";
    else the last "Answer: X" (MMLU-Pro's own patterns, with a word boundary after the letter);
    else the response itself when it is just a letter. No unanchored "last capital letter" guess.
    """
    if not (isinstance(gold_letter, str) and len(gold_letter.strip()) == 1 and gold_letter.strip().upper() in _MMLU_LETTERS):
        raise ValueError(f"MMLU-Pro gold must be one letter A-J, got {gold_letter!r}")
    if not isinstance(response, str):
        return False
    boxed = extract_boxed(response)
    letter = _box_letter(boxed) if boxed is not None else None
    if letter is None:
        letter = _last_group(_ANSWER_IS_LETTER, response) or _last_group(_ANSWER_COLON_LETTER, response)
    if letter is None and len(response.strip()) <= 5:
        letter = _box_letter(response)
    return letter == gold_letter.strip().upper()


_AIME_INT = re.compile(r"\+?(\d{1,12})(?:\.0*)?")


def grade_aime(gold: Any, response: Any) -> bool:
    """Grade an AIME response: integer answers 0-999 compared as integers (`"033"` == `33`).

    The answer must be a plain integer once `$`, `\\text{}` and spacing are removed (`33`, `033`,
    `33.0`); anything else (`\\frac{66}{2}`, `33 + 0`) grades False.
    """
    if isinstance(gold, bool) or not isinstance(gold, (int, str)):
        raise ValueError(f"AIME gold must be an integer or a digit string, got {gold!r}")
    g = _AIME_INT.fullmatch(str(gold).strip())
    if g is None:
        raise ValueError(f"AIME gold must be an integer or a digit string, got {gold!r}")
    answer = _final_answer(response)
    if answer is None:
        return False
    m = _AIME_INT.fullmatch(_clean(answer).replace(" ", ""))
    return m is not None and int(m.group(1)) == int(g.group(1))
