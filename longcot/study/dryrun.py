"""``--dry-run``: the plan of a study without running anything: the unique stage runs (and which are
done), the dependency edges, and an estimate of GPU-hours from the configs.

The estimate (printed with its assumptions): tokens to generate and to train, times the model's
parameters, at a stated throughput: generation 2 P FLOPs per token at ``GEN_FLOPS`` per GPU, training
6 P FLOPs per token (forward + backward) at ``TRAIN_FLOPS`` per GPU; a response is assumed to be
``FILL`` of its ``max_new_tokens`` on average. Synthetic teachers cost nothing. It is an estimate of
compute, not of wall time (no queueing, loading or grading).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Optional

from longcot.study.graph import Graph, Node

GEN_FLOPS = 100e12  # effective FLOP/s per GPU while generating (vLLM decode, bf16; memory-bound)
TRAIN_FLOPS = 300e12  # effective FLOP/s per GPU while training (bf16, ~30% of an H100's dense peak)
FILL = 0.5  # mean response length / max_new_tokens
# responses generated per trained response under algorithm.dynamic_sampling (DAPO samples 3 x its train
# batch per round, verl recipe/dapo gen_batch_size); the upper bound is dynamic_sampling_max_rounds
DS_GENERATED_PER_TRAINED = 3.0
ASSUMPTIONS = (f"assumptions: generation 2*P FLOPs/token at {GEN_FLOPS / 1e12:.0f} TFLOP/s per GPU, training "
               f"6*P FLOPs/token at {TRAIN_FLOPS / 1e12:.0f} TFLOP/s per GPU, mean response = {FILL:.0%} of "
               "max_new_tokens; SFT tokens = the token budget, the finished distill manifest, or prompts x N x "
               f"mean response; dynamic sampling generates {DS_GENERATED_PER_TRAINED:g}x the responses it trains; "
               "synthetic teachers cost 0")


def parameters(model: Any) -> float:
    """Parameters of a model config: the tiny model's from its shape (Llama, untied head, MLP 4h),
    a hub model's from the size in its name (``llama3.1-8b`` -> 8e9)."""
    if model.path == "tiny":
        h, layers, vocab = model.tiny_hidden_size, model.tiny_layers, model.tiny_vocab_size
        return float(2 * vocab * h + layers * (4 * h * h + 3 * h * 4 * h + 2 * h) + h)
    m = re.search(r"(\d+(?:\.\d+)?)b\b", f"{model.name} {model.path}".lower())
    if not m:
        raise ValueError(f"model {model.name!r}: cannot tell its size for the GPU-hour estimate (no '<N>b' in its name)")
    return float(m.group(1)) * 1e9


def prompt_count(data: Any) -> Optional[int]:
    """Prompts a stage reads: the (capped) limit, the toy size, else the data file's length."""
    size = data.toy_size if data.kind == "toy" else None
    if size is None:
        try:
            from longcot.data import load_prompts

            size = len(load_prompts(data))
        except Exception:  # not available here (a hub id offline): unknown
            size = None
    if data.limit is not None:
        return int(data.limit) if size is None else min(int(data.limit), size)
    return size


@dataclass
class Estimate:
    """Tokens generated and trained by one run, and its GPU-hours (None where unknown)."""

    generated: Optional[float]
    trained: Optional[float]
    gpu_hours: Optional[float]
    note: str = ""


def _hours(params: float, generated: float, trained: float) -> float:
    return (2 * params * generated / GEN_FLOPS + 6 * params * trained / TRAIN_FLOPS) / 3600


def _sft_tokens(graph: Graph, node: Node) -> tuple[Optional[float], str]:
    from longcot import runs
    from longcot.distill.budget import parse_budget

    s = node.plan.cfg.sft
    if s.source != "distill":
        return None, "sft.dataset size unknown"
    dist = next((graph.nodes[u] for u in node.upstream if graph.nodes[u].stage == "distill"), None)
    if dist is not None and dist.plan.done:
        m = runs.read_json(dist.plan.run_dir / "manifest.json")
        entry = m["budgets"].get(s.subset) if "/" in s.subset else m["datasets"].get(s.subset[1:])
        if entry:
            return float(entry.get("sft_tokens") or entry.get(f"{entry.get('unit', 'sft')}_tokens") or 0), "manifest"
    if "/budget-" in s.subset:
        return float(parse_budget(s.subset.split("/budget-")[1])), "budget"
    if dist is None:
        return None, "no distill upstream"
    tp = dist.plan.detail.teacher
    prompts = prompt_count(dist.plan.detail.data)
    if prompts is None:
        return None, "prompt count unknown"
    n = int(s.subset[1:])
    return prompts * n * FILL * tp.params.max_new_tokens, "prompts x N x mean response (upper bound: every response kept)"


def estimate(graph: Graph, node: Node) -> Estimate:
    """Compute of one stage run (see the module docstring)."""
    p, cfg = node.plan, node.plan.cfg
    if node.stage == "distill":
        if cfg.generation.backend == "synthetic":
            return Estimate(0.0, 0.0, 0.0, "synthetic teacher")
        prompts = prompt_count(p.detail.data)
        if prompts is None:
            return Estimate(None, None, None, "prompt count unknown")
        gen = prompts * p.detail.teacher.params.n * FILL * p.detail.teacher.params.max_new_tokens
        return Estimate(gen, 0.0, _hours(parameters(cfg.model), gen, 0.0))
    if node.stage == "sft":
        tokens, how = _sft_tokens(graph, node)
        if tokens is None:
            return Estimate(None, None, None, how)
        trained = tokens * cfg.sft.epochs
        return Estimate(0.0, trained, _hours(parameters(cfg.model), 0.0, trained), how)
    if node.stage == "rl":
        from longcot.rl.recipe import plan_steps

        algo, rl = p.detail["algorithm"], p.detail["rl"]
        prompts = prompt_count(p.detail["data"])
        if prompts is None:
            return Estimate(None, None, None, "prompt count unknown")
        steps = plan_steps(prompts, algo, rl)[1]
        responses = steps * algo.rollout_batch_size * algo.samples_per_prompt
        kept = responses * FILL * algo.max_new_tokens  # tokens of the trained responses
        # forwards of actor, reference (and critic) over the responses ~ generation cost; updates: epochs x 6P
        trained = kept * algo.epochs * (2 if algo.uses_critic else 1)
        forwards = kept * (3 if algo.uses_critic else 2)
        note = f"{steps} steps"
        gen = kept
        if getattr(algo, "dynamic_sampling", None):  # extra rounds: generated and scored, not trained
            gen = kept * DS_GENERATED_PER_TRAINED
            note += (f"; dynamic sampling: {DS_GENERATED_PER_TRAINED:g}x generated assumed "
                     f"(at most {algo.dynamic_sampling_max_rounds}x)")
        return Estimate(gen, trained, _hours(parameters(cfg.model), gen + forwards, trained), note)
    if node.stage == "eval":
        params = p.detail["params"]
        problems = prompt_count(p.detail["benchmark"]) if p.detail["benchmark"].kind == "toy" else p.detail["benchmark"].limit
        if problems is None:
            try:
                from longcot.data import load_benchmark

                problems = len(load_benchmark(p.detail["benchmark"]))
            except Exception:
                return Estimate(None, None, None, "benchmark size unknown")
        gen = problems * params.n * FILL * params.max_new_tokens
        if cfg.generation.backend == "synthetic":
            return Estimate(gen, 0.0, 0.0, "synthetic")
        return Estimate(gen, 0.0, _hours(parameters(cfg.model), gen, 0.0))
    return Estimate(None, None, None, "unknown stage")


def _fmt(x: Optional[float]) -> str:
    if x is None:
        return "?"
    for unit, div in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(x) >= div:
            return f"{x / div:.2f}{unit}"
    return f"{x:.0f}"


def dry_run(graph: Graph) -> dict[str, Any]:
    """Print the plan (runs, done, edges, estimate) as plain lines; return it as data."""
    from longcot.study.overrides import lines as change_lines, summary

    lines, total, unknown = [], 0.0, 0
    estimates = {}
    per_run = summary(graph.study, graph.changes)[1]
    for node in graph.ordered():
        est = estimate(graph, node)
        estimates[node.key] = est
        if est.gpu_hours is None:
            unknown += 1
        elif not node.plan.done:
            total += est.gpu_hours
        gpu_h = "?" if est.gpu_hours is None else f"{est.gpu_hours:.2f}"
        lines.append(f"  {node.key:<22} {'done' if node.plan.done else 'to run':<6}  points {len(node.points):>3}  "
                     f"generate {_fmt(est.generated):>8}  train {_fmt(est.trained):>8}  GPU-h {gpu_h:>8}"
                     f"{'  (' + est.note + ')' if est.note else ''}")
        lines.append(f"      {node.plan.run_dir}")
        if node.key in per_run:
            lines.append(f"      command line: {', '.join(map(str, per_run[node.key]))}")
        if node.upstream:
            lines.append(f"      after (afterok): {', '.join(node.upstream)}")
    edges = list(graph.edges())
    todo = sum(not n.plan.done for n in graph.nodes.values())
    stage_runs = sum(len(k) for k in graph.cells.values())
    print(f"longcot study {graph.study.name}: dry run (nothing runs)")
    for line in change_lines(graph.study, graph.changes):
        print(line)
    print("\n".join(lines))
    print(f"{len(graph.nodes)} unique stage runs ({todo} to run, {len(graph.nodes) - todo} done) for "
          f"{len(graph.study.points)} points ({stage_runs} stage runs before deduplication); {len(edges)} dependency edges")
    print(f"estimated GPU-hours of the runs to do: {total:.1f}" + (f" (+{unknown} runs unknown)" if unknown else ""))
    print(ASSUMPTIONS)
    return {"runs": len(graph.nodes), "to_run": todo, "edges": edges, "gpu_hours": total, "estimates": estimates,
            "unknown": unknown}
