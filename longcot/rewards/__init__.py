"""The paper's rewards (App. C): classic 0/1, cosine length scaling, the dense N-gram repetition
penalty, and the model-based verifier, exposed to the RL stage as discounted reward channels.

Modules:

- :mod:`longcot.rewards.config` -- :class:`RewardConfig`, the typed schema of ``conf/reward/*.yaml``.
- :mod:`longcot.rewards.classic` / :mod:`longcot.rewards.cosine` -- the correctness rewards (sparse).
- :mod:`longcot.rewards.repetition` -- dense per-token repetition penalty (Algorithm 1, hashed and
  vectorised) and the open-r1 style sequence-level penalty.
- :mod:`longcot.rewards.verifier` -- the LLM judge (§5): prompt, robust verdict parsing, batched judging.
- :mod:`longcot.rewards.correctness` -- the correctness source a config names (rule grader or judge).
- :mod:`longcot.rewards.channels` -- a config's named channels, per-token reward arrays, discounted returns.
"""
