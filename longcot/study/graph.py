"""The stage graph of a study: every stage run of every grid point planned in dependency order
(distill -> sft -> rl -> eval), each stage given its point's nearest earlier stage as upstream.

A run's identity is its plan's (which includes its upstream's run ids): plans with equal
``(stage, run_id)`` are ONE node, so one distillation serves every SFT budget, one SFT checkpoint
several RL variants, one eval each checkpoint and benchmark. Upstream plans a stage plans itself (an
SFT without a distill stage in its point plans its distill from ``sft.teacher``) become nodes too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence

from longcot.stages.base import Plan
from longcot.study.spec import STAGE_ORDER, Point, Study, compose_stage


def node_key(plan: Plan) -> str:
    """A stage run's key in the graph: ``<stage>-<run id>``."""
    return f"{plan.stage}-{plan.run_id}"


@dataclass
class Node:
    """One unique stage run: its plan, the keys of the runs it reads, the points that use it."""

    key: str
    plan: Plan
    upstream: tuple[str, ...]
    points: list[str] = field(default_factory=list)

    @property
    def stage(self) -> str:
        return self.plan.stage


@dataclass
class Graph:
    """The unique stage runs (``nodes``, in a dependency order: every run after its upstream) and,
    per ``(point, stage)``, the keys of the runs it is (eval: one per benchmark)."""

    study: Study
    nodes: dict[str, Node]
    cells: dict[tuple[str, str], list[str]]
    # per run key: the keys the command line changed in it (:mod:`longcot.study.overrides`)
    changes: dict[str, list[Any]] = field(default_factory=dict)

    def ordered(self) -> list[Node]:
        """The nodes by stage (distill, sft, rl, eval), then in planning order: a dependency order."""
        rank = {s: i for i, s in enumerate(STAGE_ORDER)}
        return sorted(self.nodes.values(), key=lambda n: rank.get(n.stage, len(rank)))

    def edges(self) -> Iterator[tuple[str, str]]:
        """``(upstream key, downstream key)`` for every dependency."""
        for node in self.nodes.values():
            for up in node.upstream:
                yield up, node.key

    def downstream(self, key: str) -> set[str]:
        """Every run that (transitively) reads ``key``'s output."""
        out: set[str] = set()
        frontier = [key]
        while frontier:
            k = frontier.pop()
            for node in self.nodes.values():
                if k in node.upstream and node.key not in out:
                    out.add(node.key)
                    frontier.append(node.key)
        return out


def _add(nodes: dict[str, Node], plan: Plan, point: str) -> str:
    """Add ``plan`` (and first, its upstream plans) to ``nodes``; return its key."""
    ups = tuple(_add(nodes, u, point) for u in plan.upstream)
    key = node_key(plan)
    node = nodes.get(key)
    if node is None:
        node = nodes[key] = Node(key, plan, ups)
    if point not in node.points:
        node.points.append(point)
    return key


def plan_point(study: Study, point: Point) -> list[list[Plan]]:
    """The plans of ``point``'s chain, stage by stage (eval: one plan per benchmark)."""
    from longcot.stages import plan_all

    chain: list[list[Plan]] = []
    previous: Sequence[Plan] = ()
    for stage in STAGE_ORDER:
        if stage not in point.stages:
            continue
        cfg = compose_stage(study, point, stage)
        try:
            plans = plan_all(cfg, previous)
        except (ValueError, FileNotFoundError) as exc:
            raise ValueError(f"study {study.name}, point {point.name}, stage {stage}: {' '.join(str(exc).split())}") from None
        if len(plans) != 1 and stage != STAGE_ORDER[-1]:
            raise ValueError(f"study {study.name}, point {point.name}: stage {stage} planned {len(plans)} runs; only "
                             "the last stage of a chain (eval) may expand to several")
        chain.append(plans)
        previous = (plans[0],)
    return chain


def build_graph(study: Study) -> Graph:
    """Plan every point (nothing is written) and merge equal identities into one node each."""
    from longcot.stages import plan_follow_ups
    from longcot.study.overrides import stage_changes

    nodes: dict[str, Node] = {}
    cells: dict[tuple[str, str], list[str]] = {}
    changes: dict[str, list[Any]] = {}
    for point in study.points:
        for plans in plan_point(study, point):
            cells[(point.name, plans[0].stage)] = [_add(nodes, p, point.name) for p in plans]
            for key in cells[(point.name, plans[0].stage)]:
                seen = changes.setdefault(key, [])
                seen += [c for c in stage_changes(study, point, plans[0].stage) if c not in seen]
            follow = plan_follow_ups(plans)  # <stage>.eval_benchmarks: eval runs of the checkpoint
            if follow:
                keys = [_add(nodes, p, point.name) for p in follow]
                if "eval" not in point.stages:
                    cells[(point.name, "eval")] = keys
            implicit = list(plans[0].upstream)  # upstream runs a stage planned itself: cells of the point too
            while implicit:
                u = implicit.pop()
                cells.setdefault((point.name, u.stage), [node_key(u)])
                implicit.extend(u.upstream)
    return Graph(study, nodes, cells, changes)
