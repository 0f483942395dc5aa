"""The official §4 rule grader, ``--math_rule_common_score_fn hendrycks`` (eddycmu/demystify-long-cot @
e90cf9b, ``openrlhf/openrlhf/reward/common.py``: ``score_hendrycks`` with ``postprocess``,
``strip_string`` and ``is_equiv``), re-implemented step by step (``reward.rule_grader=hendrycks``).

The gold is the last ``\\boxed{}`` of the reference (or the reference itself). Five candidate answers
are taken from the response and each compared with the gold by ``is_equiv`` (equal after
``strip_string``'s normalisation; if that normalisation raises, the raw strings are compared -- e.g.
``"x/2"``, where the official ``int("x")`` raises):

1. the text after the last ``=`` of the last ``$...$`` / ``\\[...\\]`` span (of the whole response when
   it has at most one delimiter);
2. that text's last ``\\boxed{}`` content;
3. the last ``\\boxed{}`` of the opencompass-normalised text after the last "answer is" (usually none);
4. the greedy ``\\boxed{(.+)}`` match on the first line holding a ``\\boxed{``;
5. the text after "the answer is:" (MetaMath style).

Difference: the official grader reads the decoded prompt + response (``queries``); here the response
alone (the prompt's text is not in the RL loop's grading call). They agree whenever the prompt has no
``\\boxed{``, ``$`` or "answer is" of its own.
"""

from __future__ import annotations

import re
from typing import Optional

_SUBSTITUTIONS = (("an ", ""), ("a ", ""), (".$", "$"), ("\\$", ""), ("$$", "$"), ("\\ ", ""), ("mbox", "text"),
                  (",\\text{and}", ","), ("\\text{and}", ","), ("\\text{m}", "\\text{}"), ("\\le", "<"))
_REMOVED = ("square", "ways", "integers", "dollars", "mph", "inches", "ft", "hours", "km", "units", "\\ldots", "sue",
            "points", "feet", "minutes", "digits", "cents", "degrees", "cm", "gm", "pounds", "meters", "meals", "edges",
            "students", "childrentickets", "multiples", "\\text{s}", "\\text{.}", "\\text{\ns}", "\\text{}^2",
            "\\text{}^3", "\\text{\n}", "\\text{}", "\\mathrm{th}", "^\\circ", "^{\\circ}", "\\;", ",\\!", "{,}", '"',
            "\\dots", "\n", "\r", "\f")


def last_boxed(text: Optional[str]) -> Optional[str]:
    """``\\boxed{...}`` (or ``\\fbox{...}``) of the last occurrence, braces matched; None if absent/unclosed."""
    if text is None:
        return None
    start = text.rfind("\\boxed")
    if start < 0:
        start = text.rfind("\\fbox")
        if start < 0:
            return None
    depth = 0
    for i in range(start, len(text)):
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            depth -= 1
            if depth == 0:
                return text[start : i + 1]
    return None


def unbox(s: Optional[str]) -> Optional[str]:
    """The content of ``\\boxed{...}``; anything else unchanged."""
    if s is not None and s.startswith("\\boxed{") and s.endswith("}"):
        return s[len("\\boxed{") : -1]
    return s


def _normalize_final(s: str) -> str:
    for old, new in _SUBSTITUTIONS:
        s = s.replace(old, new)
    for gone in _REMOVED:
        s = s.replace(gone, "")
    for cmd in ("text", "textbf", "overline"):
        s = re.sub(r"(\\" + cmd + r"\{)(.*?)(\})", r"\2", s)
    s = re.sub(r"(\\boxed\{)(.*)(\})", r"\2", s)
    for pattern in (r"finalansweris(.*)", r"oxed\{(.*?)\}", r"\$(.*?)\$"):
        found = re.findall(pattern, s)
        if found:
            s = found[-1]
    s = s.strip()
    if "rac" in s and "\\frac" not in s:
        s = s.replace("rac", "\\frac")
    s = re.sub(r"(frac)([^{])(.)", r"frac{\2}{\3}", s)
    s = re.sub(r"(sqrt)([^{])", r"sqrt{\2}", s)
    s = s.replace("$", "")
    if s.replace(",", "").isdigit():
        s = s.replace(",", "")
    return s


def opencompass_postprocess(text: str) -> str:
    """The sentence mentioning "targets", else the first sentence, normalised (opencompass's math post-processing)."""
    for part in text.split("."):
        if "targets" in part.lower():
            return _normalize_final(part)
    return _normalize_final(text.split(".")[0])


def _fix_fracs(s: str) -> str:
    head, *rest = s.split("\\frac")
    out = head
    for sub in rest:
        out += "\\frac"
        if sub[0] == "{":  # an empty piece raises IndexError: is_equiv then compares the raw strings
            out += sub
            continue
        if len(sub) < 2:
            return s
        a, b, tail = sub[0], sub[1], sub[2:]
        out += "{" + a + "}{" + b + "}" + tail if b != "{" else "{" + a + "}" + b + tail
    return out


def _fix_a_slash_b(s: str) -> str:
    parts = s.split("/")
    if len(parts) != 2:
        return s
    a, b = int(parts[0]), int(parts[1])  # ValueError propagates (official: only AssertionError is caught)
    return "\\frac{" + str(a) + "}{" + str(b) + "}" if s == f"{a}/{b}" else s


def _fix_sqrt(s: str) -> str:
    if "\\sqrt" not in s:
        return s
    head, *rest = s.split("\\sqrt")
    out = head
    for sub in rest:
        out += "\\sqrt" + sub if sub[0] == "{" else "\\sqrt{" + sub[0] + "}" + sub[1:]  # empty: IndexError
    return out


def strip_string(s: str) -> str:
    """The official MATH normalisation (Hendrycks et al.); raises where the official one raises."""
    s = s.replace("\n", "").replace("\\!", "").replace("\\\\", "\\").replace("tfrac", "frac").replace("dfrac", "frac")
    s = s.replace("\\left", "").replace("\\right", "").replace("^{\\circ}", "").replace("^\\circ", "").replace("\\$", "")
    if "\\text{ " in s:  # units on the right
        parts = s.split("\\text{ ")
        if len(parts) != 2:
            raise ValueError("more than one \\text{ ")
        s = parts[0]
    s = s.replace("\\%", "").replace(" .", " 0.").replace("{.", "{0.")
    if s.replace(",", "").isdigit():
        s = s.replace(",", "")
    m = re.search(r"^\((.*?)\)$", s)
    if m:
        s = m.group(1)
    if not s:
        return s
    if s[0] == ".":
        s = "0" + s
    eq = s.split("=")
    if len(eq) == 2 and len(eq[0]) <= 2:
        s = eq[1]
    s = _fix_sqrt(s).replace(" ", "")
    s = _fix_fracs(s)
    if s == "0.5":
        s = "\\frac{1}{2}"
    return _fix_a_slash_b(s)


def is_equiv(a: Optional[str], b: Optional[str]) -> bool:
    if a is None or b is None:
        return a is None and b is None
    try:
        return strip_string(a) == strip_string(b)
    except Exception:  # noqa: BLE001 (the official fallback: compare the raw strings)
        return a == b


def _meta_math(text: str) -> str:
    try:
        s = text[text.lower().index("the answer is:") + len("the answer is:"):].strip()
        if s[-1] == ".":
            s = s[:-1]
        if s[:2] == "\\(" and s[-2:] == "\\)":
            s = s[2:-2]
        if s[:2] == "$$" and s[-2:] == "$$":
            s = s[2:-2]
        if s[0] == "$":
            s = s[1:]
        if s[-1] == "$":
            s = s[:-1]
        return s.strip()
    except (ValueError, IndexError):
        return "ANSWER_NOT_FOUND"


def hendrycks_equal(response: str, reference: str) -> bool:
    """Whether ``response`` answers ``reference`` (a gold answer or a solution with a ``\\boxed{}``)."""
    gold = unbox(last_boxed(reference))
    if gold is None:
        gold = reference
    lowered = response.lower()
    extracted = opencompass_postprocess(response)
    if "answer is" in lowered:
        extracted = opencompass_postprocess(lowered[lowered.rfind("answer is") + len("answer is"):])
    marks = [i for i, ch in enumerate(response)
             if (ch == "$" and (i == 0 or response[i - 1] != "\\")) or (ch == "\\" and response[i + 1 : i + 2] == "]")]
    answer = response if len(marks) <= 1 else response[marks[-2] + 1 : marks[-1]]
    if "=" in answer:
        answer = answer[answer.rfind("=") + 1:]
    m = re.search(r"\\boxed\{(.+)\}", response)
    candidates = (answer, unbox(last_boxed(answer)), unbox(last_boxed(extracted)), m.group(1) if m else "",
                  _meta_math(response))
    return any(is_equiv(c, gold) for c in candidates)


__all__ = ["hendrycks_equal", "is_equiv", "strip_string", "last_boxed", "unbox", "opencompass_postprocess"]
