"""Typed settings of the distill stage (paper §3 rejection sampling, §3.3 constructed CoT, §5 silver data).

``distill.*`` of the root config. The sampling settings (``temperature``, ``top_p``,
``max_new_tokens``, ``n``, ``derive_n``) resolve in the order ``generation.*`` (where it has the
key) > ``distill.*`` (when set, i.e. not null) > ``distill.teachers[<model.name>]`` >
:data:`SAMPLING_DEFAULTS`. The ``distill.*`` sampling keys are null by default, so one sweep over
``model=`` gives each teacher its own settings (§3) while an explicit ``distill.temperature=0.6``
on the command line still wins for any teacher.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from longcot.config.fields import at_least, in_range, option

MATH_TEMPLATE = "{problem}\n\nPlease reason step by step, and put your final answer within \\boxed{{}}."
MODES = ("sample", "constructed", "silver")
FORMATS = ("parquet", "jsonl")
BUDGET_UNITS = ("sft", "response")
# Built-in sampling settings: used when neither distill.* nor distill.teachers[model.name] sets a key
# (the paper's long-CoT settings, §3: t=1.0, top-p 0.95, 8,192 new tokens).
SAMPLING_DEFAULTS: dict = {"temperature": 1.0, "top_p": 0.95, "max_new_tokens": 8192, "n": 32, "derive_n": []}


@dataclass
class TeacherSettings:
    """One teacher's sampling settings; an explicit ``distill.*`` value wins (None: not set here)."""

    temperature: Optional[float] = None
    top_p: Optional[float] = None
    max_new_tokens: Optional[int] = None
    n: Optional[int] = None
    derive_n: Optional[list[int]] = None


def _default_transitions() -> dict[str, dict[str, float]]:
    return {
        "clarify": {"decompose": 1.0},
        "decompose": {"solution_step": 1.0},
        "solution_step": {"solution_step": 0.5, "reflection": 0.3, "answer": 0.2},
        "reflection": {"solution_step": 0.6, "answer": 0.4},
    }


def _default_instructions() -> dict[str, str]:
    return {
        "clarify": "Restate the problem in your own words: what is given and what is asked. Do not solve it yet.",
        "decompose": "Break the problem into smaller sub-problems and plan the order in which to solve them. Do not solve them yet.",
        "solution_step": "Carry out the next step of the solution, and only that step.",
        "reflection": "Reflect on the solution so far: recheck the most recent step carefully and correct it if it is wrong. Start with 'Wait'.",
        "answer": "State the final answer within \\boxed{}.",
    }


@dataclass
class ConstructedConfig:
    """§3.3 constructed long CoT: an action-prompting state machine (Table 1, "constructed").

    Each action's text is written by ``action_model`` (an instruct model; None: the run's
    ``model``) except ``reflection_action``, written by ``reflection_model`` (None: the action
    model). ``transitions[a][b]`` is the weight of going from action ``a`` to ``b`` (0 disables
    it; a YAML override merges into these defaults). ``max_actions`` and ``min_reflections`` can
    force a move: a reflection while there are too few, then the terminal action.
    """

    action_model: Optional[str] = None
    reflection_model: Optional[str] = None
    start: str = "clarify"
    terminal: str = "answer"
    reflection_action: str = "reflection"
    transitions: dict[str, dict[str, float]] = field(default_factory=_default_transitions)
    instructions: dict[str, str] = field(default_factory=_default_instructions)
    max_actions: int = at_least(12, 1)
    min_reflections: int = at_least(1, 0)
    action_max_new_tokens: int = at_least(1024, 1)
    system_prompt: str = "You solve a math problem one action at a time. Write only the text of the requested action."
    action_template: str = "Problem: {problem}\n\nSolution so far:\n{so_far}\n\n{instruction}\n\nAction: {action}"
    separator: str = "\n\n"


@dataclass
class SilverConfig:
    """§5 silver supervision from noisy web data (WebInstruct-style question + scraped solution).

    An instruct model (``extractor``, greedy, ``extract_max_new_tokens``) extracts a short-form
    reference answer; teacher responses (``distill.n``; 2 in the paper) are kept when they match
    it. ``near_dedup`` drops near-duplicate questions (MinHash LSH over character shingles, needs
    ``datasketch``) before sampling. ``data=toy`` builds noisy web records from the toy task.
    """

    extractor: Optional[str] = "qwen2.5-7b-instruct"  # conf/model name; None: the run's model
    extract_max_new_tokens: int = at_least(512, 1)
    extract_template: str = (
        "Extract the final answer from the solution below. Answer with the short-form answer only, "
        "in exactly this format: The final answer is $\\boxed{{ANSWER}}$.\n\n"
        "Question: {question}\n\nSolution: {solution}"
    )
    near_dedup: bool = False
    minhash_threshold: float = in_range(0.8, 0, 1)
    minhash_num_perm: int = 128
    shingle_size: int = 5
    toy_noise: float = in_range(0.2, 0, 1)  # data=toy: fraction of scraped solutions whose final number is wrong
    toy_missing: float = in_range(0.05, 0, 1)  # data=toy: fraction of scraped solutions without an answer


@dataclass
class DistillConfig:
    """Rejection-sampled SFT data (§3): N candidates per prompt, graded, correct ones kept.

    One sampling at ``n`` serves every ``derive_n`` (the first N candidates of each prompt; a
    candidate's seed depends only on the prompt and its index). Prompts split into
    ``num_shards`` independent jobs (``shard``: one of them; None: all, ``workers`` at a time).
    """

    mode: str = option("sample", MODES)
    # Sampling settings: null = the teacher's entry in ``teachers``, else SAMPLING_DEFAULTS
    # (n=32, derive_n=[], t=1.0, top-p 0.95, 8,192 new tokens); generation.* overrides win over all.
    n: Optional[int] = at_least(None, 1)
    derive_n: Optional[list[int]] = None
    temperature: Optional[float] = at_least(None, 0)
    top_p: Optional[float] = in_range(None, 0, 1, open_=True)
    max_new_tokens: Optional[int] = at_least(None, 1)
    teachers: dict[str, TeacherSettings] = field(default_factory=dict)  # keyed by model.name
    seed: int = 0
    system_prompt: Optional[str] = None
    prompt_template: str = MATH_TEMPLATE
    # sharding
    num_shards: int = at_least(1, 1)
    shard: Optional[int] = at_least(None, 0)
    workers: int = at_least(1, 1)  # shard=null: local processes running shards in parallel
    chunk_prompts: int = at_least(64, 1)  # prompts generated and graded (and written) at a time within a shard
    grader_timeout: float = at_least(5.0, 0, open_=True)
    grader_workers: int = at_least(2, 1)
    # selection of the SFT datasets (does not change the sampling)
    dedupe: bool = True  # drop identical responses of a prompt (keeps the first)
    max_per_prompt: Optional[int] = at_least(None, 1)  # keep at most this many responses per prompt
    keep_truncated: bool = False  # keep correct responses that hit max_new_tokens
    student: str = "tiny"  # conf/model name, hub id or path of the tokenizer counting SFT tokens
    token_budgets: list[str] = field(default_factory=list)  # e.g. ["250M", "1B", "3.5B"]
    budget_n: Optional[int] = None  # the N whose dataset the budgets select from (None: largest)
    budget_unit: str = option("sft", BUDGET_UNITS)  # sft (prompt + response tokens) | response
    budget_seed: int = 0
    format: str = option("parquet", FORMATS)
    # force=true with one job per shard: the jobs of one force run share this token (None: the
    # SLURM array job id, else the Hydra multirun sweep dir, else one per process); the merge
    # only accepts shard markers carrying it. See longcot.stages.distill.
    force_token: Optional[str] = None
    print_table: bool = True
    constructed: ConstructedConfig = field(default_factory=ConstructedConfig)
    silver: SilverConfig = field(default_factory=SilverConfig)
