"""Constructed long CoT (§3.3, Table 1 "constructed"): an action-prompting state machine.

A trajectory starts at ``start`` (clarify), moves along weighted ``transitions`` (decompose,
solution step, reflection, ...) and ends at ``terminal`` (answer). An instruct model writes each
action's text given the problem and the solution so far; a possibly different model writes the
reflections. The composed trajectory is graded and kept like a distilled response.

Reproducible per candidate: trajectory ``i`` of a prompt uses the candidate seed
``sample_seed(prompt_seed, i)`` for its transitions and ``sample_seed(candidate seed, step)`` for
the text of its ``step``-th action, so smaller N are prefixes of larger N here too.
"""

from __future__ import annotations

import logging
import random
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from longcot.data.records import Problem
from longcot.distill.sampling import Row, candidate_seeds, user_prompt
from longcot.generation.base import Generator, Message, SamplingParams, sample_seed

log = logging.getLogger(__name__)
KEY = "distill.constructed"


class MachineError(ValueError):
    """An inconsistent action machine; the message names the config key."""


@dataclass(frozen=True)
class ActionMachine:
    """Actions and weighted transitions; :meth:`next_action` draws the next action with an rng."""

    actions: tuple[str, ...]
    transitions: Mapping[str, Mapping[str, float]]
    start: str
    terminal: str
    reflection_action: str
    max_actions: int
    min_reflections: int = 0

    @classmethod
    def from_config(cls, c: Any) -> "ActionMachine":
        """Build and validate from a :class:`~longcot.distill.config.ConstructedConfig` node."""
        actions = tuple(c.instructions)
        trans = {str(a): {str(b): float(w) for b, w in dict(outs).items()} for a, outs in dict(c.transitions).items()}
        machine = cls(actions, trans, c.start, c.terminal, c.reflection_action, int(c.max_actions), int(c.min_reflections))
        machine.validate()
        return machine

    def validate(self) -> None:
        valid = ", ".join(self.actions)
        for key, name in (("start", self.start), ("terminal", self.terminal)):
            if name not in self.actions:
                raise MachineError(f"{KEY}.{key}={name!r} is not an action with instructions; valid: {valid}")
        if self.min_reflections > 0 and self.reflection_action not in self.actions:
            raise MachineError(f"{KEY}.reflection_action={self.reflection_action!r} is not an action; valid: {valid}")
        if self.min_reflections < 0:
            raise MachineError(f"{KEY}.min_reflections must be >= 0, got {self.min_reflections}")
        if self.max_actions < 2 + self.min_reflections:
            raise MachineError(f"{KEY}.max_actions={self.max_actions} leaves no room for start, "
                               f"{self.min_reflections} reflection(s) and the terminal action")
        for a, outs in self.transitions.items():
            if a not in self.actions:
                raise MachineError(f"{KEY}.transitions.{a}: unknown action; valid: {valid}")
            for b, w in outs.items():
                if b not in self.actions:
                    raise MachineError(f"{KEY}.transitions.{a}.{b}: unknown action; valid: {valid}")
                if w < 0:
                    raise MachineError(f"{KEY}.transitions.{a}.{b}: weight must be >= 0, got {w}")
        if any(w > 0 for w in self.transitions.get(self.terminal, {}).values()):
            raise MachineError(f"{KEY}.transitions.{self.terminal}: the terminal action cannot have transitions")
        # Every action a walk can visit must have a way on: those reachable from start and, when
        # reflections are forced (min_reflections > 0), from the reflection action, which a
        # forced move can jump to from anywhere. The terminal must be reachable from start.
        roots = [self.start] + ([self.reflection_action] if self.min_reflections > 0 else [])
        seen: set[str] = set()
        for root in roots:
            via = f"reachable from {self.start!r}" if root == self.start else (
                f"reachable from the forced reflection {self.reflection_action!r} "
                f"({KEY}.min_reflections={self.min_reflections})")
            todo = deque([root] if root not in seen else [])
            seen.add(root)
            while todo:
                a = todo.popleft()
                if a == self.terminal:
                    continue
                outs = self.out(a)
                if not outs:
                    raise MachineError(f"{KEY}.transitions.{a}: no transition with a positive weight "
                                       f"(action {a!r} is {via}); give it one, e.g. to {self.terminal!r}")
                for b in outs:
                    if b not in seen:
                        seen.add(b)
                        todo.append(b)
            if root == self.start and self.terminal not in seen:
                raise MachineError(f"{KEY}: terminal action {self.terminal!r} is unreachable from {self.start!r}")

    def out(self, action: str) -> dict[str, float]:
        """Transitions of ``action`` with a positive weight (in config order)."""
        return {b: w for b, w in self.transitions.get(action, {}).items() if w > 0}

    def next_action(self, current: str, taken: int, reflections: int, rng: random.Random) -> str:
        """The action after ``current``, given ``taken`` actions so far (incl. current) and ``reflections``.

        Forced moves: when the remaining actions are only enough for the missing reflections and
        the terminal, take a reflection (while fewer than ``min_reflections``), else the terminal;
        a drawn terminal is replaced by a reflection while there are too few.
        """
        missing = max(0, self.min_reflections - reflections)
        if self.max_actions - taken <= missing + 1:
            return self.reflection_action if missing else self.terminal
        outs = self.out(current)
        nxt = rng.choices(list(outs), weights=list(outs.values()))[0]
        if nxt == self.terminal and missing:
            return self.reflection_action
        return nxt

    def walk(self, rng: random.Random) -> list[str]:
        """A whole action sequence (what a trajectory does, without the text)."""
        seq, reflections = [self.start], 0
        while seq[-1] != self.terminal:
            reflections += seq[-1] == self.reflection_action
            seq.append(self.next_action(seq[-1], len(seq), reflections, rng))
        return seq


@dataclass
class Trajectory:
    problem: Problem
    candidate_index: int
    seed: int
    rng: random.Random
    next: str
    actions: list[str] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    reflections: int = 0
    truncated: bool = False
    tokens: int = 0
    done: bool = False


def action_prompt(c: Any, t: Trajectory) -> list[Message]:
    so_far = c.separator.join(t.texts) if t.texts else "(nothing yet)"
    text = c.action_template.format(
        problem=t.problem.problem, so_far=so_far, instruction=c.instructions[t.next], action=t.next
    )
    messages: list[Message] = []
    if c.system_prompt:
        messages.append({"role": "system", "content": c.system_prompt})
    messages.append({"role": "user", "content": text})
    return messages


def construct_candidates(
    problems: Sequence[Problem],
    params: SamplingParams,
    c: Any,
    action_gen: Generator,
    reflection_gen: Generator,
    *,
    template: str,
    progress: bool = True,
) -> list[Row]:
    """``params.n`` constructed trajectories per problem as candidate rows (ungraded).

    All trajectories advance in lockstep, one action per round, batched per writing model.
    ``params`` gives temperature, top-p, n and the seed; each action is capped at
    ``c.action_max_new_tokens`` tokens (a truncated action marks the row ``finish_reason="length"``).
    """
    from longcot.progress import bar as progress_bar

    machine = ActionMachine.from_config(c)
    action_params = SamplingParams(params.temperature, params.top_p, int(c.action_max_new_tokens), 1, params.seed)
    trajs = []
    for p, pseed in zip(problems, candidate_seeds(problems, params.seed)):
        for i in range(params.n):
            s = sample_seed(pseed, i)
            trajs.append(Trajectory(p, i, s, random.Random(s), machine.start))
    bar = progress_bar(total=len(trajs), desc="constructed", unit="traj", disable=not progress)
    step = 0
    while True:
        active = [t for t in trajs if not t.done]
        if not active:
            break
        for is_reflection, gen in ((False, action_gen), (True, reflection_gen)):
            group = [t for t in active if (t.next == machine.reflection_action) == is_reflection]
            if not group:
                continue
            outs = gen.generate(
                [action_prompt(c, t) for t in group], action_params,
                seeds=[t.seed for t in group], first_sample=step, progress=False,
            )
            for t, out in zip(group, outs):
                comp = out[0]
                t.actions.append(t.next)
                t.texts.append(comp.text.strip())
                t.tokens += comp.num_tokens
                t.truncated |= comp.finish_reason == "length"
        for t in active:
            if t.next == machine.terminal:
                t.done = True
                bar.update(1)
                continue
            t.reflections += t.next == machine.reflection_action
            t.next = machine.next_action(t.next, len(t.actions), t.reflections, t.rng)
        step += 1
    bar.close()
    return [
        {
            "prompt_id": t.problem.id,
            "candidate_index": t.candidate_index,
            "prompt": user_prompt(t.problem, template),
            "response": c.separator.join(t.texts),
            "answer": t.problem.answer,
            "finish_reason": "length" if t.truncated else "stop",
            "teacher_tokens": t.tokens,
            "actions": list(t.actions),
        }
        for t in trajs
    ]
