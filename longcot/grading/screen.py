"""A cheap structural screen for recognisably pathological answers, run before math-verify.

math-verify (its ANTLR LaTeX parser and sympy) can spend seconds to forever on a short hostile
text: the parse time roughly doubles with every extra level of brace nesting (`\\boxed{{{...}}}` 14
deep overruns a 5 s budget), sympy evaluates `9^{9^{9}}` or `(10^{7})!` to a number with hundreds
of millions of digits, and a megabyte of text runs its regexes over every character. In the
worker pool each such answer holds a worker for the full timeout (plus a restart), and a burst of
them queues every other verdict behind it. `screen` recognises them from their structure alone
(pure string scanning and float arithmetic on the literals; the text is never evaluated or
parsed as code) so that they are judged False in microseconds.

What is screened, on the *region* math-verify parses first: the content of the last complete
`\\boxed{}` when the text has one (a response may discuss `7^{7^{7}}` and box `3`), else the whole
text. A side is pathological when:

* the whole text is longer than `MAX_CHARS` (16,384 generated tokens x 16 characters, the longest
  tokens of common BPE vocabularies);
* the box content is longer than `MAX_BOX_CHARS` (real boxed answers are < 200 characters);
* brackets (`{ ( [` against `} ) ]`, escaped ones ignored) nest deeper than `MAX_BOX_DEPTH`
  inside the box or `MAX_TEXT_DEPTH` in an unboxed text (real data: <= 3 and <= 7);
* it holds a run of more than `MAX_EXPR_RUN` plain-expression characters without a space
  (`1+1+...+1`: math-verify's expression parser takes ~2 s on 120 kB; real data: <= 54);
* a numeric subexpression -- literals combined with `+ - * / ^ ** ! \\frac \\cdot \\times` --
  has an estimated value (or exponent of a tiny value) of more than `MAX_DIGITS` decimal digits
  (a tower `9^{9^{9}}`, a factorial `(10^{10})!`); symbolic parts (`x^{100}`) are never estimated,
  and in a long unboxed text only the last 16,384 characters are read (bounding the screen's own
  cost to ~40 ms; an earlier tower is left to the worker timeout);
* it holds a Python dunder name (`__import__`, `__class__`): code, never an answer.

Bounds on real data (MATH-500 answers and solutions, the 333 shared grader cases, the 7,500 MATH
training solutions) leave a wide margin, and `tests/test_grading_screen.py` checks that the screen
changes no verdict there. What it cannot keep: a genuinely equal answer that trips a rule (a box
holding a value of more than a million digits, or an unboxed response that mentions one) is
judged False unless the string fast path already matched it; a side longer than `MAX_CHARS` is
False before even the fast path reads it (`math_equal_batch`).
"""

from __future__ import annotations

import math
import re

from longcot.grading.extract import extract_boxed

__all__ = ["MAX_BOX_CHARS", "MAX_BOX_DEPTH", "MAX_CHARS", "MAX_DIGITS", "MAX_EXPR_RUN", "MAX_TEXT_DEPTH", "screen"]

MAX_CHARS = 16_384 * 16
MAX_BOX_CHARS = 4_096
MAX_BOX_DEPTH = 12
MAX_TEXT_DEPTH = 32
MAX_DIGITS = 1_000_000
MAX_EXPR_RUN = 1_024

_BRACKET = re.compile(r"\\.|[{}()\[\]]", re.DOTALL)  # an escaped character is skipped as a whole
_DUNDER = re.compile(r"__[A-Za-z]\w*__")
_EXPR_CHAR = r"[\d.+\-*/^()×÷]"
_EXPR_RUN = re.compile(r"(?<!%s)%s{%d}" % (_EXPR_CHAR, _EXPR_CHAR, MAX_EXPR_RUN + 1))  # tried once per run: linear
# Only a text with a number raised to something or followed by `!` needs the magnitude estimate.
_ESTIMATE_CHARS = 16_384  # the magnitude estimate reads at most this many final characters
_NUMERIC_SITE = re.compile(r"\d\s*[)}\]]*\s*(?:\^|\*\*|!)")


def screen(text: str) -> str | None:
    """Why `text` (one side of a pair) is pathological, in a few words; None for an ordinary text."""
    if len(text) > MAX_CHARS:
        return f"longer than {MAX_CHARS} characters"
    boxed = extract_boxed(text)
    region, depth_limit = (text, MAX_TEXT_DEPTH) if boxed is None else (boxed, MAX_BOX_DEPTH)
    if boxed is not None and len(boxed) > MAX_BOX_CHARS:
        return f"boxed answer longer than {MAX_BOX_CHARS} characters"
    if _nesting(region, depth_limit) > depth_limit:
        return f"brackets nested deeper than {depth_limit}"
    if _DUNDER.search(region):
        return "holds a Python dunder name"
    if _EXPR_RUN.search(region):
        return f"an expression of more than {MAX_EXPR_RUN} characters without a space"
    tail = region[-_ESTIMATE_CHARS:]  # bounds the in-process cost; an answer sits at the end
    if _NUMERIC_SITE.search(tail) and _Magnitudes(tail).largest() > MAX_DIGITS:
        return f"a numeric value of more than {MAX_DIGITS} digits"
    return None


def _nesting(text: str, stop_above: int) -> int:
    """Maximum bracket depth (any opener against any closer, so `[0, 1)` balances); stops early."""
    depth = deepest = 0
    for m in _BRACKET.finditer(text):
        c = m.group()
        if c in "{([":
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > stop_above:
                    break
        elif c in "})]":
            depth = max(0, depth - 1)
    return deepest


# ------------------------------------------------------------------------ magnitude estimate

_TOKEN = re.compile(
    r"(?P<num>\d+(?:\.\d+)?|\.\d+)"
    r"|(?P<frac>\\[dt]?frac(?![A-Za-z]))"
    r"|(?P<mul>\\cdot(?![A-Za-z])|\\times(?![A-Za-z])|\*(?!\*)|×)"
    r"|(?P<pow>\^|\*\*)"
    r"|(?P<op>[-+/!])"
    r"|(?P<open>[{(\[])|(?P<close>[})\]])"
    r"|(?P<skip>\\(?:left|right|[,;:! ])(?![A-Za-z])|\s+)"
    r"|(?P<other>\\[A-Za-z]+|\\.|.)",
    re.DOTALL,
)
_LOG2 = math.log10(2)
_MAX_RECURSION = 64  # nested groups / \\frac arguments read before giving up on a subexpression


class _Magnitudes:
    """A tolerant recursive-descent reading of `text` as arithmetic on numeric literals.

    Each numeric subexpression gets an upper bound of log10|value|; `largest()` is the largest
    number of digits any of them needs (its value's, or a tiny value's denominator's). Anything
    that is not a literal or one of the operators is an unknown factor (None), which makes the
    enclosing sum/product unknown but still visits its parts. Never raises on any input; nesting
    is bounded by `screen`'s depth check before this runs, and operator chains are iterative.
    """

    def __init__(self, text: str) -> None:
        self.toks = [(m.lastgroup, m.group()) for m in _TOKEN.finditer(text) if m.lastgroup != "skip"]
        self.i = 0
        self.depth = 0  # open groups and \\frac arguments being read (bounded, see _atom)
        self.max_digits = 0.0

    def largest(self) -> float:
        while self.i < len(self.toks):
            self._sum()
            if self.i < len(self.toks):  # a stray closer
                self.i += 1
        return self.max_digits

    def _peek(self) -> str | None:
        return self.toks[self.i][0] if self.i < len(self.toks) else None

    def _note(self, mag: float | None) -> float | None:
        if mag is not None:
            self.max_digits = max(self.max_digits, abs(mag))
        return mag

    def _sum(self) -> float | None:
        mag = self._product()
        while self._peek() == "op" and self.toks[self.i][1] in "+-":
            self.i += 1
            rhs = self._product()
            mag = None if mag is None or rhs is None else self._note(max(mag, rhs) + _LOG2)
        return mag

    def _product(self) -> float | None:
        mag = self._unary()
        while True:
            kind = self._peek()
            if kind in ("mul", "op") and self.toks[self.i][1] not in "+-!":  # *, /, \cdot, \times
                self.i += 1
            elif kind not in ("num", "frac", "open", "other"):  # juxtaposition: 2x, 2(3), x y
                return mag
            rhs = self._unary()
            mag = None if mag is None or rhs is None else self._note(abs(mag) + abs(rhs))

    def _unary(self) -> float | None:
        while self._peek() == "op" and self.toks[self.i][1] in "+-":
            self.i += 1
        return self._power()

    def _power(self) -> float | None:
        """`a ^ b ^ c` is `a ^ (b ^ c)`; folded from the right without recursion."""
        chain = [self._postfix()]
        while self._peek() == "pow":
            self.i += 1
            while self._peek() == "op" and self.toks[self.i][1] in "+-":  # 10^{-5}: sign of the exponent
                self.i += 1
            chain.append(self._postfix())
        mag = chain.pop()
        while chain:
            base = chain.pop()
            if base is None or mag is None:
                mag = None
                continue
            exponent = math.inf if mag > 300 else 10.0**mag  # upper bound of |exponent|
            mag = self._note(0.0 if base == 0 else base * exponent)
        return mag

    def _postfix(self) -> float | None:
        mag = self._atom()
        while self._peek() == "op" and self.toks[self.i][1] == "!":
            self.i += 1
            if mag is not None:
                n = math.inf if mag > 300 else 10.0**mag
                mag = self._note(math.inf if n > 1e300 else math.lgamma(n + 1) / math.log(10))
        return mag

    def _atom(self) -> float | None:
        kind = self._peek()
        if kind is None or kind == "close":  # a closer ends the group that is being read
            return None
        text = self.toks[self.i][1]
        self.i += 1
        if kind == "num":
            whole = text.split(".", 1)[0].lstrip("0")
            if len(whole) > 15:  # float() would round a long literal to inf: count its digits
                return self._note(float(len(whole)))
            value = float(text)
            return self._note(math.log10(value)) if value > 0 else 0.0
        if kind in ("open", "frac") and self.depth >= _MAX_RECURSION:
            return None  # `\\frac\\frac\\frac...` without braces: stop descending
        self.depth += 1
        try:
            if kind == "open":
                mag = self._sum()
                if self._peek() == "close":
                    self.i += 1
                return mag
            if kind == "frac":  # \\frac{a}{b} = a / b
                num, den = self._atom(), self._atom()
                return None if num is None or den is None else self._note(abs(num) + abs(den))
        finally:
            self.depth -= 1
        return None  # a letter, a command, punctuation, a stray operator
