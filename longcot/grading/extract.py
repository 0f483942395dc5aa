"""Answer extraction from model responses: pure string operations, linear time, no exceptions.

Everything here is safe to run in-process on untrusted text: no regex with nested quantifiers
(every pattern starts with a literal or scans a bounded window), no evaluation of the text.
"""

from __future__ import annotations

import re

__all__ = ["extract_answer", "extract_boxed", "normalize_answer"]

# `\boxed{`, `\boxed {`, `\fbox{` (the command must not continue with letters, e.g. `\boxedx`).
_BOX_OPEN = re.compile(r"\\(?:boxed|fbox)(?![A-Za-z])\s*\{")
# MATH-style `\boxed 5` (no braces): the token runs to whitespace or `$`.
_BOX_SPACE = re.compile(r"\\boxed[ \t]+([^\s${}]+)")
# One token of brace scanning: an escaped character (so `\{`, `\}` and `\\` are not grouping) or a brace.
_BRACE_TOKEN = re.compile(r"\\.|[{}]", re.DOTALL)
# Answer phrases for the fallback; case-insensitive, each starts with a literal word.
_ANSWER_PHRASE = re.compile(
    r"(?i)\b(?:final\s+answer\s*(?:is\b|:)|the\s+answer\s+is\b|answer\s*:)[ \t]*:?"
)
_PHRASE_WINDOW = 300  # characters after the phrase that may hold the answer


def _close_brace(text: str, open_pos: int, limit: int) -> int | None:
    """Index of the `}` matching the `{` at `open_pos`, searching before `limit`; None if unbalanced."""
    depth = 0
    for tok in _BRACE_TOKEN.finditer(text, open_pos, limit):
        c = tok.group()
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return tok.start()
    return None


def extract_boxed(text: str) -> str | None:
    """Content of the last *complete* `\\boxed{...}` / `\\boxed {...}` / `\\fbox{...}` in `text`, else None.

    Boxes are ordered by where they start, so `\\boxed{\\boxed{1}}` gives `1`. Braces nest; `\\{`
    and `\\}` are literal. A box whose braces never close (e.g. a response cut off inside
    `\\boxed{\\frac{1}{2`) is skipped and the previous complete box is used. MATH's brace-less
    form `\\boxed 5` counts as a box too. Linear time: a box that is still open when the next
    (later) unbalanced box starts cannot close afterwards, so each character is scanned once.
    """
    if "\\boxed" not in text and "\\fbox" not in text:
        return None
    spans: list[tuple[int, int, bool]] = [(m.start(), m.end() - 1, True) for m in _BOX_OPEN.finditer(text)]
    spans += [(m.start(), m.start(1), False) for m in _BOX_SPACE.finditer(text)]
    spans.sort()
    limit = len(text)
    for start, body, braced in reversed(spans):
        if not braced:
            return _BOX_SPACE.match(text, start).group(1)
        close = _close_brace(text, body, limit)
        if close is not None:
            return text[body + 1 : close].strip()
        limit = start
    return None


def _clean_phrase_answer(window: str) -> str | None:
    """Answer text right after an answer phrase: one line, one math span or one sentence."""
    s = window.split("\n", 1)[0].strip().strip("*").strip()
    for opener, closer in (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]")):
        if s.startswith(opener):
            end = s.find(closer, len(opener))
            if end > len(opener):
                s = s[len(opener) : end]
                break
    else:
        # Plain text: stop at the end of the sentence (". ", not a decimal point) or a clause break.
        for stop in (". ", "; ", ", so", " because", " since"):
            cut = s.find(stop)
            if cut > 0:
                s = s[:cut]
    s = s.strip().rstrip(".").strip().strip("*").strip()
    return s or None


def extract_answer(response: str) -> str | None:
    """The final answer of a model response, or None.

    Order (first that applies wins):

    1. the content of the last complete `\\boxed{...}` / `\\fbox{...}` (see `extract_boxed`);
    2. the text after the LAST answer phrase -- "final answer is", "final answer:",
       "the answer is", "answer:" (any case) -- limited to the rest of that line, and to its
       first `$...$` / `\\(...\\)` / `\\[...\\]` span when it starts with one, else to its first
       sentence; markdown `**` and a trailing period are stripped.

    There is deliberately no unanchored fallback (last number, last `$...$`): a response with
    neither a box nor an answer phrase yields None. Never raises; linear time in `len(response)`.
    """
    if not isinstance(response, str) or not response:
        return None
    boxed = extract_boxed(response)
    if boxed is not None:
        return boxed
    last = None
    for last in _ANSWER_PHRASE.finditer(response):
        pass
    if last is None:
        return None
    return _clean_phrase_answer(response[last.end() : last.end() + _PHRASE_WINDOW])


# ---------------------------------------------------------------- cheap normalization (fast path)

_TEXT_CMD = re.compile(r"\\(?:text|textbf|textrm|textnormal|mathrm|mathbf|mbox)\s*\{([^{}]*)\}")
_LEFT_RIGHT = re.compile(r"\\(?:left|right)(?![A-Za-z])")
# Spacing commands `\, \; \: \! \ ` (a `\\` row break is matched first so that it is kept).
_SPACING = re.compile(r"\\\\|\\[,;:! ]")
_DROP_TOKENS = ("\\displaystyle", "^\\circ", "^{\\circ}", "\\$", "$")
# "1,234" (one number) and "1, 234" (two) must stay different once whitespace is removed.
_DIGIT_COMMA_SPACE = re.compile(r"(?<=\d),\s+(?=\d)")


def normalize_answer(answer: str) -> str:
    """Cheap, sound-for-equality canonical form of an answer string (pure string ops).

    Removes spacing commands, `\\left`/`\\right`, `$`, degree marks and whitespace (except that a
    comma followed by space between digits stays distinct from a thousands comma), maps
    `\\dfrac`/`\\tfrac` to `\\frac`, unwraps `\\text{...}`-like commands (keeping their content, so
    `\\text{odd}` and `\\text{oddd}` stay different) and strips a trailing period. Two answers with
    equal non-empty normal forms are the same answer; different forms prove nothing.
    """
    s = answer
    for _ in range(3):  # nested \text{\textbf{..}}; a few rounds suffice for real answers
        t = _TEXT_CMD.sub(r"\1", s)
        if t == s:
            break
        s = t
    s = _LEFT_RIGHT.sub("", s.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac"))
    s = _SPACING.sub(lambda m: m.group() if m.group() == "\\\\" else "", s)
    for tok in _DROP_TOKENS:
        s = s.replace(tok, "")
    s = "".join(_DIGIT_COMMA_SPACE.sub(",\x00", s).split())
    return s.rstrip(".")
