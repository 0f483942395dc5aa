"""Typed dataclass schemas for every config group, registered with Hydra's ConfigStore.

Each group's YAML files in ``conf/`` are validated against the dataclass of that group, so a
misspelled key, a wrong type or an unknown option fails fast with one message.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from omegaconf import MISSING

from longcot.config.fields import at_least, in_range, option
from longcot.data.toy import LEVELS as TOY_LEVELS
from longcot.distill.config import DistillConfig
from longcot.generation.config import GenerationConfig
from longcot.models.config import ModelConfig
from longcot.rewards.config import RewardConfig
from longcot.rl.config import AlgorithmConfig, RLConfig
from longcot.sft.config import SFTConfig


# the stages a run can execute (longcot/stages/<name>.py, registered by longcot.stages from this list)
STAGE_NAMES = ("eval", "distill", "sft", "rl")


@dataclass
class DataConfig:
    """A training prompt set (rejection sampling, SFT, RL)."""

    name: str = MISSING
    kind: str = option("math", ("math", "toy", "webinstruct"))
    # Local file (.jsonl/.json/.parquet) or public dataset id; None = the shared default if present.
    path: Optional[str] = None
    shared_file: Optional[str] = None  # relative to the shared data folder (tests, local runs)
    dataset_id: Optional[str] = None
    dataset_config: Optional[str] = None
    split: str = "train"
    limit: Optional[int] = at_least(None, 1)  # first N prompts; None = all
    levels: Optional[list[int]] = None  # kind=math: only MATH levels k (the records' "level": "Level k"); None = all
    problem_field: str = "problem"
    answer_field: Optional[str] = None  # None: last \boxed{} of solution_field
    solution_field: Optional[str] = "solution"
    id_field: Optional[str] = "unique_id"
    toy_size: int = at_least(1000, 1)  # kind=toy: number of synthetic problems
    toy_seed: int = 0
    toy_level: str = option("standard", TOY_LEVELS)  # kind=toy: standard | easy | search (see longcot/data/toy.py)
    toy_split_seed: int = 0  # toy_level=search: which problems are held out for eval (longcot/data/twin.py)


@dataclass
class BenchmarkConfig:
    """An evaluation set with the paper's evaluation settings (App. E: t=0.7, top-p=0.95, 16k)."""

    name: str = MISSING
    kind: str = option(MISSING, ("math", "aime", "theoremqa", "mmlu_pro", "toy"))
    path: Optional[str] = None  # local .jsonl/.json/.parquet file; wins over the others
    shared_file: Optional[str] = None  # relative to the shared data folder (tests, local runs)
    dataset_id: Optional[str] = None  # public dataset id, used when no local file is found
    dataset_config: Optional[str] = None
    split: str = "test"
    limit: Optional[int] = at_least(None, 1)  # first N problems (after the fixed order); None = all
    num_samples: int = at_least(4, 1)
    temperature: float = at_least(0.7, 0)
    top_p: float = in_range(0.95, 0, 1, open_=True)
    max_new_tokens: int = at_least(16384, 1)
    seed: int = 0
    system_prompt: Optional[str] = None
    prompt_template: str = "{problem}\n\nPlease reason step by step, and put your final answer within \\boxed{{}}."
    toy_size: int = at_least(200, 1)
    toy_seed: int = 1
    toy_level: str = option("standard", TOY_LEVELS)
    toy_split_seed: int = 0  # toy_level=search: the held-out pool (must equal the training data's)


@dataclass
class ClusterConfig:
    """Where grid points run: ``local`` (this machine) or ``slurm`` (via submitit)."""

    name: str = option("local", ("local", "slurm"))
    # local studies: how many independent parts (runs that read none of each other's outputs, e.g. seeds)
    # run at once, each in its own process (set torch_threads so that workers x threads fits the cores)
    local_workers: int = at_least(1, 1)
    partition: Optional[str] = None
    account: Optional[str] = None
    qos: Optional[str] = None
    gpus_per_node: int = 0
    cpus_per_task: int = 2
    mem_gb: int = 16
    timeout_min: int = 60
    nodes: int = 1
    array_parallelism: int = 64
    additional_parameters: dict[str, Any] = field(default_factory=dict)
    # study jobs: processes per node; None = one per GPU for sft/rl (torch DDP / DeepSpeed), 1 for the others
    tasks_per_node: Optional[int] = at_least(None, 1)
    scratch_dir: Optional[str] = None  # study jobs: a node-local directory for temp files / caches (never outputs)
    setup: list[str] = field(default_factory=list)  # shell lines before a study job (modules, conda)
    max_num_timeout: int = at_least(3, 0)  # submitit requeues after a time limit / preemption (USR2)
    # per-stage overrides of the fields above for study jobs, e.g. {sft: {gpus_per_node: 8, tasks_per_node: 8}}
    stages: dict[str, Any] = field(default_factory=dict)


@dataclass
class LoggerConfig:
    """Experiment tracking: ``none`` or ``wandb`` (offline by default)."""

    name: str = option("none", ("none", "wandb"))
    project: str = "longcot"
    entity: Optional[str] = None
    mode: str = option("offline", ("online", "offline", "disabled"))
    tags: list[str] = field(default_factory=list)


@dataclass
class ScaleConfig:
    """Caps on every stage's work: ``smoke`` (the CPU default) or ``full`` (no caps)."""

    name: str = MISSING
    max_problems: Optional[int] = at_least(None, 1)  # problems / prompts per benchmark or prompt set
    max_new_tokens: Optional[int] = at_least(None, 1)
    max_samples: Optional[int] = at_least(None, 1)  # samples per problem (eval)
    max_train_steps: Optional[int] = at_least(None, 1)  # optimizer steps of a training stage (sft, rl)


@dataclass
class StageConfig:
    """Which stage a run executes."""

    name: str = option(MISSING, STAGE_NAMES)


@dataclass
class EvalConfig:
    """Settings of the eval stage (beyond each benchmark's own sampling settings)."""

    benchmarks: list[str] = field(default_factory=list)  # extra benchmark config names to run too
    grader_timeout: float = at_least(5.0, 0, open_=True)
    grader_workers: int = at_least(2, 1)
    # Problems per resumable chunk: each graded chunk is saved as soon as it is done.
    chunk_problems: int = at_least(64, 1)
    reflection_keywords: list[str] = field(
        default_factory=lambda: ["wait", "recheck", "alternatively", "retry", "however"]
    )
    print_table: bool = True


@dataclass
class StudyConfig:
    """A study (an ``experiments/`` file): grid points, each a chain distill -> sft -> rl -> eval of stage
    runs composed from Hydra override strings (see longcot/study/)."""

    name: Optional[str] = None  # None: not a study (a single stage run)
    description: str = ""
    base: list[str] = field(default_factory=list)  # overrides of every stage run of every point
    stages: dict[str, list[str]] = field(default_factory=dict)  # stage -> overrides common to every point
    points: list[dict[str, Any]] = field(default_factory=list)  # {name, distill?, sft?, rl?, eval?: [overrides]}
    paper: dict[str, Any] = field(default_factory=dict)  # the paper's reported numbers (null: to copy from the PDF)
    # Every point repeated once per seed (longcot/study/spec.py); seed_overrides: what a seed sets, with
    # {seed} in each value (None: spec.DEFAULT_SEED_OVERRIDES: data draw, split, order, sampling, init).
    seeds: Optional[list[int]] = None
    seed_overrides: Optional[list[str]] = None
    # arms compared per seed, with the paper's direction (longcot/study/seeds.py)
    compare: list[dict[str, Any]] = field(default_factory=list)
    # run only these points (names as the study file gives them; None: every point). The plan, status and
    # collect then cover only these; comparisons of a left-out arm show as not run.
    only: Optional[list[str]] = None


@dataclass
class LongcotConfig:
    """The root config a run composes."""

    model: ModelConfig = MISSING
    data: DataConfig = MISSING
    reward: RewardConfig = MISSING
    algorithm: AlgorithmConfig = MISSING
    benchmark: BenchmarkConfig = MISSING
    generation: GenerationConfig = MISSING
    cluster: ClusterConfig = MISSING
    logger: LoggerConfig = MISSING
    stage: StageConfig = MISSING
    scale: ScaleConfig = MISSING
    eval: EvalConfig = field(default_factory=EvalConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    sft: SFTConfig = field(default_factory=SFTConfig)
    rl: RLConfig = field(default_factory=RLConfig)
    study: StudyConfig = field(default_factory=StudyConfig)
    output_root: str = "runs"
    # CPU threads of torch in a run (None: torch's default). 1 is much faster for the tiny model on a
    # busy machine (OpenMP spin-waiting); a resource setting, not part of any run identity.
    torch_threads: Optional[int] = at_least(None, 1)
    force: bool = False  # re-run even if an identical finished run exists


SCHEMAS: dict[str, type] = {
    "model": ModelConfig,
    "reward": RewardConfig,
    "data": DataConfig,
    "algorithm": AlgorithmConfig,
    "benchmark": BenchmarkConfig,
    "generation": GenerationConfig,
    "cluster": ClusterConfig,
    "logger": LoggerConfig,
    "stage": StageConfig,
    "scale": ScaleConfig,
}


def register_configs() -> None:
    """Register the typed root schema with the ConfigStore; ``conf/config.yaml`` extends it, so
    every group's YAML is merged onto (and checked against) its dataclass field."""
    from hydra.core.config_store import ConfigStore

    ConfigStore.instance().store(name="longcot_schema", node=LongcotConfig)
