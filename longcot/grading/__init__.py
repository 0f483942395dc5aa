"""Answer extraction and grading.

* `extract_answer(response)` -- the final answer of a response (last complete `\\boxed{}`, else
  the text after the last answer phrase); pure string ops, linear time.
* `math_equal(gold, prediction)` / `math_equal_batch(pairs, timeout, workers)` -- MATH-style
  equivalence: a string fast path in-process, then math-verify in a pool of killable worker
  processes with a hard per-answer timeout (an overrun is False and counted in `grading_stats()`).
* `grade_theoremqa`, `grade_mmlu_pro`, `grade_aime` -- typed graders (pure string ops, in-process).
"""

from longcot.grading.equivalence import math_equal, math_equal_batch
from longcot.grading.extract import extract_answer
from longcot.grading.pool import DEFAULT_TIMEOUT, GradeStats, GraderPool, grading_stats, shutdown_default_pool
from longcot.grading.typed import THEOREMQA_ANSWER_TYPES, grade_aime, grade_mmlu_pro, grade_theoremqa

__all__ = [
    "DEFAULT_TIMEOUT",
    "GradeStats",
    "GraderPool",
    "THEOREMQA_ANSWER_TYPES",
    "extract_answer",
    "grade_aime",
    "grade_mmlu_pro",
    "grade_theoremqa",
    "grading_stats",
    "math_equal",
    "math_equal_batch",
    "shutdown_default_pool",
]
