"""Every paper experiment (``experiments/<name>.yaml``, a study) gives each stage run the official
hyperparameters of eddycmu/demystify-long-cot, and its chains plan (distill -> sft -> rl -> eval).

Each stage config is composed by the study driver's own code (``longcot.study.spec.compose_stage``:
``+experiment=NAME``, ``study.base``, ``study.stages[S]``, ``point[S]``, ``stage=S``, later wins) and
each chain planned by it (``longcot.study.graph.plan_point``).
The expected values are transcribed from the official scripts (paths in each experiment file) and
checked against the COMPOSED config, so a wrong option file, a wrong override or a wrong default all
fail here. Cosine end points are checked through the official parameterisation
(``CosineScaledSparseReward(min_value_wrong, max_value_wrong, min_value_correct, max_value_correct)``:
reward ``hi`` at length 0 and ``lo`` at the limit; for wrong answers ``lo, hi = max_wrong, min_wrong``).
"""

from __future__ import annotations

import math
from functools import lru_cache
from pathlib import Path
from typing import Any

import pytest
from omegaconf import DictConfig, OmegaConf

from longcot.study.spec import STAGE_ORDER

REPO = Path(__file__).resolve().parents[1]
STUDIES = ("fig1_sft_scaling", "table1_emergent_vs_constructed", "sec4_classic_baseline", "sec4_cosine_vs_classic",
           "sec4_context_window", "sec4_reward_hparams", "table5_discount", "table2_webinstruct_mix",
           "table3_verifier_filtering", "table4_qwen_direct_rl")


# --------------------------------------------------------------------------- composition
@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The output root of every study in this module (planning must write nothing under it)."""
    return tmp_path_factory.mktemp("study-plans")


@lru_cache(maxsize=None)
def study(name: str, root: Path) -> Any:
    """The study as the driver loads it (``longcot.study.spec.load_study``)."""
    from longcot.study.spec import load_study

    return load_study([f"+experiment={name}", f"output_root={root}"])


def stage_runs(name: str, stage: str, root: Path) -> dict[str, DictConfig]:
    """Every point's config of ``stage`` exactly as the study driver composes it (``compose_stage``:
    the experiment, ``study.base``, ``study.stages[S]``, the point's overrides, ``stage=S``; validated)."""
    from longcot.study.spec import compose_stage

    s = study(name, root)
    return {p.name: compose_stage(s, p, stage) for p in s.points if stage in p.stages}


@lru_cache(maxsize=None)
def chain_plans(name: str, point: str, root: Path) -> dict[str, list[Any]]:
    """The plans of ``point``'s chain as the driver plans them (``longcot.study.graph.plan_point``:
    each stage's upstream is the nearest earlier stage of the point; nothing is written)."""
    from longcot.study.graph import plan_point

    s = study(name, root)
    return {plans[0].stage: plans for plans in plan_point(s, s.point(point))}


def official_cosine(min_wrong: float, max_wrong: float, min_correct: float, max_correct: float,
                    exceed: float) -> dict[str, float]:
    """Our cosine end points from the official flags (reward/cosine.py: value ``hi`` at t=0, ``lo`` at
    t=T; correct: lo, hi = min_correct, max_correct; wrong: lo, hi = max_wrong, min_wrong)."""
    return {"r0_correct": max_correct, "rL_correct": min_correct, "r0_wrong": min_wrong, "rL_wrong": max_wrong,
            "exceed": exceed}


def assert_keys(cfg: DictConfig, expected: dict[str, Any], where: str) -> None:
    for key, want in expected.items():
        got = OmegaConf.select(cfg, key, throw_on_missing=True)
        if isinstance(got, DictConfig) or OmegaConf.is_list(got):
            got = OmegaConf.to_container(got, resolve=True)
        if isinstance(want, float) and isinstance(got, (int, float)) and not isinstance(got, bool):
            assert math.isclose(got, want, rel_tol=1e-12, abs_tol=0.0), f"{where}: {key}={got!r}, official {want!r}"
        else:
            assert got == want, f"{where}: {key}={got!r}, official {want!r}"


# --------------------------------------------------------------------------- official values
# Every official RL script (openrlhf/scripts/section_4__*/ and section_5__*/*.sh) sets these, and
# cli/train_ppo_ray.py's defaults give the rest (eps/value clip 0.2, t 1.0, top-p 1.0, reward clip
# (-10, 10), k1 KL with a fixed coefficient, Adam betas (0.9, 0.95), grad norm 1.0, cosine_with_min_lr
# warmup 0.03 and min_lr 0.1 x lr in trainer/ray/ppo_actor.py and ppo_critic.py). Engine: every RL
# script runs its actor/critic on DeepSpeed with --bf16 --flash_attn --gradient_checkpointing
# (--flash_attn = rl.attn_implementation auto: flash_attention_2 where flash_attn is installed).
RL_COMMON = {
    "algorithm.name": "ppo", "algorithm.advantage": "gae",
    "algorithm.learning_rate": 5e-7, "algorithm.rollout_batch_size": 512, "algorithm.train_batch_size": 512,
    "algorithm.micro_train_batch_size": 1, "algorithm.kl_coef": 0.01, "algorithm.kl_estimator": "k1",
    "algorithm.kl_in": "reward", "algorithm.lam": 1.0, "algorithm.clip_ratio": 0.2, "algorithm.value_clip": 0.2,
    "algorithm.max_prompt_tokens": 2048, "algorithm.reward_clip": 10.0, "algorithm.temperature": 1.0,
    "algorithm.top_p": 1.0, "algorithm.adam_betas": [0.9, 0.95], "algorithm.weight_decay": 0.0,
    "algorithm.max_grad_norm": 1.0, "algorithm.warmup_ratio": 0.03, "algorithm.min_lr_ratio": 0.1,
    "algorithm.whiten_advantages": True, "algorithm.truncated_eos": "official", "reward.margin": 16,
    "scale.name": "full",
    "rl.backend": "deepspeed", "rl.precision": "bf16", "rl.gradient_checkpointing": True,
    "rl.attn_implementation": "auto",
}
# --zero_stage / --adam_offload: 2 without offload in section_4.1__*, section_4.2__*classic.sh,
# section_4.3__*, section_4.4__*, section_4.6__* and section_5.2__*; 3 with --adam_offload in
# section_4.2__*cosine_repetition_penalty.sh and section_4.5__length_reward_hacking__cosine.sh.
ZERO2 = {"rl.zero_stage": 2, "rl.adam_offload": False}
ZERO3_OFFLOAD = {"rl.zero_stage": 3, "rl.adam_offload": True}


def rl_script(samples: int, epochs: int, episodes: int, critic_lr: float, gen_max: int = 14336) -> dict[str, Any]:
    """The per-script PPO flags: --n_samples_per_prompt, --max_epochs, --num_episodes,
    --critic_learning_rate, --generate_max_len."""
    return {"algorithm.samples_per_prompt": samples, "algorithm.epochs": epochs, "algorithm.episodes": episodes,
            "algorithm.critic_learning_rate": critic_lr, "algorithm.max_new_tokens": gen_max}


def cos_rep(cosine: tuple[float, float, float, float] = (-10, 0, 1, 2), gammas: tuple[float, float] = (1.0, 0.99),
            correctness: str = "rule") -> dict[str, Any]:
    """--remote_rm_url math_rule_cosine_scale,math_rule_repetition_dense with --math_rule_cosine_scale_*
    (min_wrong, max_wrong, min_correct, max_correct), exceed -10, ngram 40, dense penalty -0.05, --gamma."""
    out = {"reward.kind": "cosine", "reward.correctness": correctness, "reward.gamma": gammas[0],
           "reward.repetition.variant": "dense", "reward.repetition.ngram_size": 40,
           "reward.repetition.penalty": -0.05, "reward.repetition.gamma": gammas[1]}
    out.update({f"reward.cosine.{k}": float(v) for k, v in official_cosine(*cosine, exceed=-10).items()})
    return out


COSINE_ONLY = {"reward.kind": "cosine", "reward.correctness": "rule", "reward.gamma": 1.0, "reward.repetition": None,
               **{f"reward.cosine.{k}": float(v) for k, v in official_cosine(-10, 0, 1, 2, exceed=-10).items()}}
CLASSIC = {"reward.kind": "classic", "reward.correctness": "rule", "reward.gamma": 1.0, "reward.repetition": None,
           "reward.classic.correct": 1.0, "reward.classic.wrong": 0.0, "reward.classic.exceed": 0.0}

# section_3.1_sft_llama3.1_8b_math_train_*_rs_n*.sh + cli/train_sft.py defaults
SFT_OFFICIAL = {
    "sft.learning_rate": 5e-6, "sft.epochs": 2, "sft.global_batch_sequences": 256, "sft.max_length": 131072,
    "sft.drop_last": True,
    "sft.warmup_ratio": 0.03, "sft.min_lr_ratio": 0.1, "sft.adam_beta1": 0.9, "sft.adam_beta2": 0.95,
    "sft.weight_decay": 0.0, "sft.max_grad_norm": 1.0, "sft.zero_stage": 2, "sft.precision": "bf16",
    "sft.backend": "deepspeed", "sft.gradient_checkpointing": True, "scale.name": "full",
}
LLAMA = {"model.name": "llama3.1-8b", "model.path": "meta-llama/Llama-3.1-8B"}
QWEN_4K = {"model.name": "qwen2.5-math-7b", "model.path": "Qwen/Qwen2.5-Math-7B", "model.rope_theta_scale": 1.0,
           "model.max_model_len": None}
# Table 4's direct RL (tables.yaml note): greedy evaluation at 4,096 tokens
GREEDY_4K = {"generation.temperature": 0.0, "generation.n": 1, "generation.max_new_tokens": 4096}
QWEN_16K = {"model.name": "qwen2.5-math-7b-16k", "model.path": "Qwen/Qwen2.5-Math-7B", "model.rope_theta_scale": 10.0,
            "model.max_model_len": 2048 + 14336}
# §3 teachers (conf/stage/distill.yaml): QwQ t=1.0 top-p 0.95 8,192 tokens; Qwen2.5-Math-72B-Instruct t=0.7, 4,096
LONG_TEACHER = {"teacher": "qwq-32b-preview", "temperature": 1.0, "top_p": 0.95, "max_new_tokens": 8192,
                "ns": (32, 64, 128, 192, 256)}
SHORT_TEACHER = {"teacher": "qwen2.5-math-72b-instruct", "temperature": 0.7, "top_p": 0.95, "max_new_tokens": 4096,
                 "ns": (32, 64, 128, 256)}
EVAL_FOUR = {"benchmark.name": "math500", "eval.benchmarks": ["aime24", "theoremqa", "mmlu_pro_1k"],
             "benchmark.temperature": 0.7, "benchmark.top_p": 0.95, "benchmark.max_new_tokens": 16384,
             "scale.name": "full"}


# --------------------------------------------------------------------------- per-study expectations
# Official reward flags per RL point: ("cosine", (min_wrong, max_wrong, min_correct, max_correct),
# exceed, repetition?) or ("classic", (correct, wrong), exceed, False) -- as in the scripts.
COS_DEFAULT = ("cosine", (-10, 0, 1, 2), -10, True)     # math_rule_cosine_scale,math_rule_repetition_dense
COS_NO_REP = ("cosine", (-10, 0, 1, 2), -10, False)     # section_4.5__length_reward_hacking__cosine.sh
CLASSIC_1_0 = ("classic", (1, 0), 0, False)              # math_rule, exceed 0
CLASSIC_DIRECT = ("classic", (1, -0.5), None, False)     # Table 4 direct RL: +1 / -0.5 (/ -1 no answer), no exceed
GAMMAS = {"100_100": (1.0, 1.0), "100_999": (1.0, 0.999), "100_99": (1.0, 0.99), "999_999": (0.999, 0.999),
          "999_99": (0.999, 0.99), "99_99": (0.99, 0.99)}
REWARD_ABC = {"reward-A": (0, 0, 10, 0), "reward-B": (-10, 0, 5, 6), "reward-C": (-10, 0, 9, 10)}


def reward_keys(spec: tuple, gammas: tuple[float, float] = (1.0, 0.99), correctness: str = "rule") -> dict[str, Any]:
    kind, values, exceed, rep = spec
    if spec == CLASSIC_DIRECT:
        return {**CLASSIC, "reward.classic.correct": 1.0, "reward.classic.wrong": -0.5, "reward.classic.exceed": None,
                "reward.classic.no_answer": -1.0}
    if kind == "classic":
        return {**CLASSIC, "reward.classic.correct": float(values[0]), "reward.classic.wrong": float(values[1]),
                "reward.classic.exceed": float(exceed), "reward.classic.no_answer": None}
    if rep:
        return cos_rep(values, gammas, correctness)
    return COSINE_ONLY


def _n(point: str) -> int:
    return int(point.split("-n")[1].split("-")[0])


def rl_reward_spec(study: str, point: str) -> tuple:
    if study == "sec4_classic_baseline":
        return CLASSIC_1_0
    if study == "sec4_cosine_vs_classic":
        return {"classic": CLASSIC_1_0, "cosine": COS_NO_REP, "cosine-reppen": COS_DEFAULT,
                "cosine-reppen-reinforce": COS_DEFAULT}[point]
    if study == "sec4_reward_hparams":
        return ("cosine", REWARD_ABC[point], -10, True)
    if point == "base-rl":
        return CLASSIC_DIRECT
    return COS_DEFAULT


def rl_engine(study: str, point: str) -> dict[str, Any]:
    """--zero_stage / --adam_offload of the script the RL point transcribes."""
    if study in ("fig1_sft_scaling", "table1_emergent_vs_constructed", "table4_qwen_direct_rl", "table2_webinstruct_mix") \
            or point == "math-baseline":
        return ZERO3_OFFLOAD  # section_4.2__active_scaling_of_cot_length__cosine_repetition_penalty.sh
    if study == "sec4_cosine_vs_classic":
        return {"classic": ZERO2, "cosine": ZERO3_OFFLOAD, "cosine-reppen": ZERO3_OFFLOAD,
                "cosine-reppen-reinforce": ZERO3_OFFLOAD}[point]
    return ZERO2


# The distill settings of Table 2's two arms, as its mix's components repeat them (same distill runs)
MATH_DISTILL = ["distill.n=256", "distill.num_shards=8", "distill.student=llama3.1-8b", "generation.tensor_parallel_size=2",
                "distill.derive_n=[32,64,128,192]"]
WEBIT_DISTILL = ["distill.num_shards=8", "distill.student=llama3.1-8b", "generation.tensor_parallel_size=2",
                 "distill.mode=silver", "distill.n=2", "distill.derive_n=[]"]


def expected(study: str, point: str, stage: str) -> dict[str, Any]:
    """The official settings ``stage`` of ``point`` must get (keys of the composed config)."""
    qwen = study == "table4_qwen_direct_rl" or point == "qwen-classic"
    model = QWEN_16K if qwen else LLAMA
    if stage == "distill":
        return {"distill.num_shards": 8, "distill.student": "llama3.1-8b", "generation.backend": "vllm",
                "scale.name": "full"}
    if stage == "sft":
        sft = {**SFT_OFFICIAL, **model}
        if qwen:  # the Llama recipe with the 16K context as the length limit
            sft.update({"sft.max_length": 16384, "sft.max_tokens_per_micro_batch": 16384})
        if study == "fig1_sft_scaling":
            teacher = "qwq-32b-preview" if point.startswith("long") else "qwen2.5-math-72b-instruct"
            return {**sft, "sft.teacher": teacher, "sft.subset": f"n{_n(point)}"}
        if point == "constructed" or point == "constructed-rl":
            return {**sft, "sft.teacher": "qwen2.5-72b-instruct", "sft.subset": "n32"}
        if point.startswith("webinstruct-silver"):
            return {**sft, "sft.teacher": "qwq-32b-preview", "sft.subset": "n2"}
        if point.startswith("mix-50-50"):  # 50% MATH (n32) + 50% WebInstruct silver (n2), by sample
            return {**sft, "sft.source": "mix", "sft.mix_unit": "sample", "sft.mix_size": None,
                    "sft.mix": [{"teacher": "qwq-32b-preview", "teacher_generation": "vllm", "data": None, "subset": "n32",
                                 "weight": 0.5, "overrides": MATH_DISTILL},
                                {"teacher": "qwq-32b-preview", "teacher_generation": "vllm", "data": "webinstruct",
                                 "subset": "n2", "weight": 0.5, "overrides": WEBIT_DISTILL}]}
        return {**sft, "sft.teacher": "qwq-32b-preview", "sft.subset": "n32"}
    if stage == "eval":
        if point in ("base", "base-rl"):  # Table 4: the 4K base model, greedy at 4,096 tokens
            return {**EVAL_FOUR, **QWEN_4K, **GREEDY_4K}
        return {**EVAL_FOUR, **model}
    # rl
    out = {**RL_COMMON, **model, "rl.from_sft": point != "base-rl", "data.name": "math_train", "data.limit": None,
           "rl.prompts.teacher": ""}  # the data group's prompts (Table 3's silver prompts below)
    out.update(rl_engine(study, point))
    spec = rl_reward_spec(study, point)
    if study == "sec4_classic_baseline":  # section_4.1__cot_length_stability__{llama,qwen}_classic.sh
        out.update(rl_script(8, 1, 8, 4.5e-6))
    elif point == "base-rl":  # Table 4 direct RL (tables.yaml note): 8 samples, 20 episodes, lambda 0.95, 1,024 + 3,072
        out.update({**rl_script(8, 1, 20, 9e-6, 3072), **QWEN_4K, "algorithm.lam": 0.95,
                    "algorithm.max_prompt_tokens": 1024, "data.levels": [3, 4, 5]})
    elif point == "sft-rl" and study == "table4_qwen_direct_rl":  # the paper: 8 samples per prompt, 8 passes
        out.update(rl_script(8, 2, 8, 9e-6))
    elif study in ("fig1_sft_scaling", "table1_emergent_vs_constructed", "sec4_cosine_vs_classic",
                   "table2_webinstruct_mix") or point == "math-baseline":  # section_4.2__*.sh / section_4.5__*.sh
        out.update(rl_script(16, 2, 8, 9e-6))
    elif study == "sec4_context_window":  # section_4.4__context_window_size__{4k,8k,16k}.sh
        out.update(rl_script(8, 1, 8, 9e-6, {"ctx-4k": 2048, "ctx-8k": 6144, "ctx-16k": 14336}[point]))
    elif study in ("sec4_reward_hparams", "table5_discount"):  # section_4.3__*.sh, section_4.6__*.sh
        out.update(rl_script(4, 1, 4, 9e-6))
    elif study == "table3_verifier_filtering":  # section_5.2__*_unfiltered.sh
        out.update(rl_script(4, 1, 1, 9e-6))
        # 30k prompts of the silver distill run (Table 2's WebInstruct arm), filtered or not
        out.update({"data.name": "webinstruct", "data.limit": 30000, "rl.prompts.teacher": "qwq-32b-preview",
                    "rl.prompts.teacher_generation": "vllm", "rl.prompts.data": "webinstruct", "rl.prompts.n": 2,
                    "rl.prompts.overrides": WEBIT_DISTILL,
                    "rl.prompts.filter": "agreed" if point.endswith("-filtered") else "all"})
    else:
        raise AssertionError(f"{study}: no RL expectation")
    gammas = GAMMAS[point.removeprefix("gamma-")] if study == "table5_discount" else (1.0, 0.99)
    correctness = "model" if point.startswith("model-") else "rule"
    out.update(reward_keys(spec, gammas, correctness))
    if point == "cosine-reppen-reinforce":  # Fig. 13: REINFORCE++ (no critic), the cosine-reppen arm otherwise
        out.update({"algorithm.name": "reinforce_pp", "algorithm.advantage": "reinforce", "algorithm.value_clip": None})
    # --math_rule_common_score_fn: hendrycks in every §4 script (and assumed where there is none);
    # symeval in section_5.2__*.sh: not wired, math-verify instead
    out["reward.rule_grader"] = "math_verify" if study == "table3_verifier_filtering" and point != "math-baseline" \
        else "hendrycks"
    if correctness == "model":  # reward/judge.py: last 20 lines, temperature 0, max_tokens 1024
        out.update({"reward.verifier.last_lines": 20, "reward.verifier.temperature": 0.0,
                    "reward.verifier.max_new_tokens": 1024})
    return out


EXPECTED_POINTS = {
    "fig1_sft_scaling": [f"{s}-n{n}{rl}" for rl in ("", "-rl") for s, ns in
                         (("long", (32, 64, 128, 192, 256)), ("short", (32, 64, 128, 256))) for n in ns],
    "table1_emergent_vs_constructed": ["emergent", "constructed", "emergent-rl", "constructed-rl"],
    "sec4_classic_baseline": ["llama-classic", "qwen-classic"],
    "sec4_cosine_vs_classic": ["classic", "cosine", "cosine-reppen", "cosine-reppen-reinforce"],
    "sec4_context_window": ["ctx-4k", "ctx-8k", "ctx-16k"],
    "sec4_reward_hparams": ["reward-A", "reward-B", "reward-C"],
    "table5_discount": ["sft", *[f"gamma-{g}" for g in GAMMAS]],
    "table2_webinstruct_mix": ["math", "math-rl", "webinstruct-silver", "webinstruct-silver-rl", "mix-50-50",
                               "mix-50-50-rl"],
    "table3_verifier_filtering": ["math-baseline", "sft-init", "rule-unfiltered", "model-unfiltered", "rule-filtered",
                                  "model-filtered"],
    "table4_qwen_direct_rl": ["base", "base-rl", "sft", "sft-rl"],
}
CELLS = [(s, st) for s in STUDIES for st in STAGE_ORDER]
NO_RL = ("sft", "sft-init")  # evaluations of a study's starting SFT checkpoint (the tables' SFT rows)


# --------------------------------------------------------------------------- tests
def test_every_study_file_is_listed() -> None:
    files = {p.stem for p in (REPO / "experiments").glob("*.yaml")}
    assert set(STUDIES) <= files and set(EXPECTED_POINTS) == set(STUDIES)


@pytest.mark.parametrize("name", STUDIES)
def test_study_points_and_chains(name: str, root: Path) -> None:
    s = study(name, root)
    points = {p.name: p.stages for p in s.points}
    assert list(points) == EXPECTED_POINTS[name]
    assert s.name == name and s.description and list(s.base) == ["data=math_train"]
    for point, chain in points.items():
        assert list(chain) == [st for st in STAGE_ORDER if st in chain], f"{name}/{point}: stages out of order"
        assert list(chain)[-1] == "eval", f"{name}/{point}: every point ends with an eval"
        assert ("rl" in chain) == (point.endswith("-rl") or (name.startswith("sec4") or name in (
            "table5_discount", "table3_verifier_filtering")) and point not in NO_RL), f"{name}/{point}"


@pytest.mark.parametrize("name,stage", CELLS)
def test_stage_runs_get_the_official_settings(name: str, stage: str, root: Path) -> None:
    for point, cfg in stage_runs(name, stage, root).items():
        assert_keys(cfg, expected(name, point, stage), f"{name}/{point}/{stage}")
        assert cfg.stage.name == stage


@pytest.mark.parametrize("name", STUDIES)
def test_distill_teachers_sample_with_the_paper_settings(name: str, root: Path) -> None:
    from longcot.distill.sampling import teacher_plan

    for point, cfg in stage_runs(name, "distill", root).items():
        tp = teacher_plan(cfg)
        if point.startswith("short"):
            want = SHORT_TEACHER
        elif point.startswith("constructed"):  # action model (ASSUMPTION), built-in sampling defaults
            want = {"teacher": "qwen2.5-72b-instruct", "temperature": 1.0, "top_p": 0.95, "max_new_tokens": 8192,
                    "ns": (32,)}
            assert cfg.distill.mode == "constructed" and cfg.distill.constructed.reflection_model == "qwq-32b-preview"
        elif point.startswith("webinstruct-silver"):
            want = {**LONG_TEACHER, "ns": (2,)}
            assert cfg.distill.mode == "silver" and cfg.data.name == "webinstruct"
        else:
            want = LONG_TEACHER
            assert cfg.distill.mode == "sample" and cfg.data.name == "math_train"
        got = {"teacher": tp.teacher, "temperature": tp.params.temperature, "top_p": tp.params.top_p,
               "max_new_tokens": tp.params.max_new_tokens, "ns": tuple(tp.ns)}
        assert got == want, f"{name}/{point}: {got}"


def official_reward(spec: tuple, correct: bool, gen_len: int, max_len: int) -> float:
    """Transcription of the official sparse rewards (reward/cosine.py CosineScaledSparseReward.reward and
    reward/classic.py ClassicSparseReward.reward, MAX_LEN_MARGIN = 16 in reward/common.py)."""
    kind, values, exceed, _ = spec
    if exceed is not None and gen_len + 16 >= max_len:
        return float(exceed)
    if kind == "classic":
        return float(values[0] if correct else values[1])
    min_w, max_w, min_c, max_c = values
    lo, hi = (min_c, max_c) if correct else (max_w, min_w)
    return lo + 0.5 * (hi - lo) * (1.0 + math.cos(math.pi * gen_len / max_len))


@pytest.mark.parametrize("name", STUDIES)
def test_rl_correctness_reward_equals_the_official_reward(name: str, root: Path) -> None:
    """Our reward of the composed config, at the generation limit the run uses, equals the official
    formula with the script's flags (a swapped end point or a wrong T fails)."""
    from longcot.rewards.channels import ScoredSample, correctness_rewards
    from longcot.rewards.config import to_reward_config

    for point, cfg in stage_runs(name, "rl", root).items():
        spec = rl_reward_spec(name, point)
        T = int(cfg.algorithm.max_new_tokens)
        reward = to_reward_config(cfg.reward)
        lengths = [1, T // 4, T // 2, (3 * T) // 4, T - 17, T - 16, T]
        samples = [ScoredSample([0] * n, ok, T, text="so \\boxed{1}") for n in lengths for ok in (True, False)]
        ours = correctness_rewards(reward, samples)
        want = [official_reward(spec, ok, n, T) for n in lengths for ok in (True, False)]
        assert list(map(float, ours)) == pytest.approx(want, abs=1e-9), f"{name}/{point}"


# Which rows of ../shared/paper/tables.yaml each study reports: (point, table, row index).
PAPER_ROWS = {
    "table1_emergent_vs_constructed": [("constructed", 0), ("emergent", 1), ("constructed-rl", 2), ("emergent-rl", 3)],
    "table2_webinstruct_mix": [("math", 0), ("math-rl", 1), ("webinstruct-silver", 2), ("webinstruct-silver-rl", 3),
                               ("mix-50-50", 4), ("mix-50-50-rl", 5)],
    "table3_verifier_filtering": [("math-baseline", 0), ("sft-init", 1), ("rule-unfiltered", 2),
                                  ("model-unfiltered", 3), ("rule-filtered", 4), ("model-filtered", 5)],
    "table4_qwen_direct_rl": [("base", 0), ("base-rl", 1), ("sft", 2), ("sft-rl", 3)],
    "table5_discount": [("sft", 0), *[(f"gamma-{g}", i + 1) for i, g in enumerate(GAMMAS)]],
}
FIGURES = {"fig1_sft_scaling": ["Fig. 1"], "sec4_classic_baseline": ["Fig. 2"], "sec4_context_window": ["Fig. 6"],
           "sec4_cosine_vs_classic": ["Fig. 10", "Fig. 13", "Figs. 4-5"], "sec4_reward_hparams": ["Fig. 9"]}


def paper_tables() -> dict[str, Any]:
    path = REPO.parent / "shared" / "paper" / "tables.yaml"
    if not path.exists():
        pytest.skip(f"{path} not present (the shared paper folder)")
    return OmegaConf.to_container(OmegaConf.load(path))


@pytest.mark.parametrize("name", STUDIES)
def test_paper_numbers_are_the_tables_exactly(name: str, root: Path) -> None:
    """Every value in study.paper is the paper's table row for that point, copied exactly (with AVG where
    the table prints one); studies of plots carry statements with checks and no values."""
    paper = study(name, root).paper
    assert paper.source.startswith("arXiv:2502.03373v1")
    if name in PAPER_ROWS:
        table = paper_tables()[name]
        want = {}
        for point, i in PAPER_ROWS[name]:
            row = table["rows"][i]
            want[point] = dict(zip(["math500", "aime24", "theoremqa", "mmlu_pro_1k"], map(float, row["values"])))
            if "avg" in row:
                want[point]["avg"] = float(row["avg"])
        assert paper.values == want
        assert f"Table {name[5]}" in paper.source
    else:
        assert paper.values == {} and sorted({f.cite for f in paper.findings}) == FIGURES[name]
        statements = paper_tables()["figures"]
        for f in paper.findings:  # each statement is (part of) the paper's text for that figure
            part = f.statement.split(" (")[0].split(";")[0].lower()
            assert any(part in text.lower() for text in statements.values()), f.statement


@pytest.mark.slow
@pytest.mark.parametrize("name", STUDIES)
def test_every_chain_plans_and_reads_its_upstream(name: str, root: Path) -> None:
    """Each point's chain plans (sft.subset names a dataset its distill run builds, RL starts from the
    SFT run, eval reads the last checkpoint) without writing anything."""
    for point in EXPECTED_POINTS[name]:
        plans = chain_plans(name, point, root)
        stages = list(plans)
        for before, after in zip(stages, stages[1:]):
            for p in plans[after]:
                chain = [u.run_id for u in p.upstream if u.stage == before]
                assert chain == [plans[before][0].run_id], f"{name}/{point}/{after}"
                others = [u.stage for u in p.upstream if u.stage != before]  # Table 3's silver prompts only
                assert others == (["distill"] if after == "rl" and p.cfg.rl.prompts.teacher else []), f"{name}/{point}"
        if "eval" in plans:
            assert sorted(p.cfg.benchmark.name for p in plans["eval"]) == ["aime24", "math500", "mmlu_pro_1k", "theoremqa"]
    assert not any(root.iterdir())


@pytest.mark.slow
def test_shared_work_is_one_run_across_points_and_studies(root: Path) -> None:
    """Fig. 1 is 2 distillations, 9 SFT and 9 RL runs, 18 checkpoints x 4 benchmarks; the §4 starting SFT
    (long CoT, N=32) is ONE run in every study that uses it, and so is the §4-default PPO from it."""
    ids: dict[str, set[str]] = {}
    for point in EXPECTED_POINTS["fig1_sft_scaling"]:
        for stage, plans in chain_plans("fig1_sft_scaling", point, root).items():
            ids.setdefault(stage, set()).update(p.run_id for p in plans)
    assert {k: len(v) for k, v in ids.items()} == {"distill": 2, "sft": 9, "rl": 9, "eval": 18 * 4}

    def run_id(name: str, point: str, stage: str) -> str:
        return chain_plans(name, point, root)[stage][0].run_id

    sft = run_id("fig1_sft_scaling", "long-n32", "sft")
    for name, point in [("table1_emergent_vs_constructed", "emergent"), ("sec4_classic_baseline", "llama-classic"),
                         ("sec4_cosine_vs_classic", "classic"), ("sec4_context_window", "ctx-4k"),
                         ("sec4_reward_hparams", "reward-A"), ("table5_discount", "gamma-99_99"),
                         ("table2_webinstruct_mix", "math"), ("table3_verifier_filtering", "rule-unfiltered")]:
        assert run_id(name, point, "sft") == sft, f"{name}/{point}"
    rl = run_id("fig1_sft_scaling", "long-n32-rl", "rl")
    assert run_id("table1_emergent_vs_constructed", "emergent-rl", "rl") == rl
    assert run_id("table2_webinstruct_mix", "math-rl", "rl") == rl  # Table 2's MATH SFT+RL row is Table 1's
    assert run_id("table3_verifier_filtering", "math-baseline", "rl") == rl  # and Table 3's MATH baseline
    silver = run_id("table2_webinstruct_mix", "webinstruct-silver", "distill")
    for point in ("rule-unfiltered", "model-filtered"):  # Table 3's prompts: Table 2's silver distill run
        [prompts] = [u for u in chain_plans("table3_verifier_filtering", point, root)["rl"][0].upstream if u.stage == "distill"]
        assert prompts.run_id == silver
    # the 50/50 mix reads the two arms' distill runs (planned by the mix itself: the same identities)
    mix = chain_plans("table2_webinstruct_mix", "mix-50-50", root)["sft"][0]
    assert [u.run_id for u in mix.upstream] == [run_id("table2_webinstruct_mix", "math", "distill"),
                                                run_id("table2_webinstruct_mix", "webinstruct-silver", "distill")]
    assert run_id("sec4_cosine_vs_classic", "cosine-reppen", "rl") == rl
    assert run_id("table4_qwen_direct_rl", "sft", "sft") == run_id("sec4_classic_baseline", "qwen-classic", "sft")
    assert not any(root.iterdir())
