"""Reinforcement learning (paper §4-§5): PPO, GRPO, Dr. GRPO and REINFORCE++ on one loop.

* :mod:`.config`: ``AlgorithmConfig`` (the ``algorithm`` group) and ``RLConfig`` (``rl.*``);
* :mod:`.kl`: k1 / k2 / k3 KL estimators;
* :mod:`.returns`: per-channel token rewards (clip, KL split among channels) and discounted returns;
* :mod:`.advantages`: GAE (multi-gamma with lambda = 1, as the official code), REINFORCE++, GRPO,
  Dr. GRPO, buffer whitening;
* :mod:`.losses`: clipped policy loss, clipped value loss, entropy, token aggregation;
* :mod:`.experience`: rollout -> padded tensors (official truncated-response EOS handling), log-probs;
* :mod:`.value_head`: the critic (LM body + scalar head from the actor's checkpoint);
* :mod:`.recipe`: ``train(...)``, the loop (rollout, reward, experience, update, metrics, checkpoints);
* :mod:`.plots`: length / accuracy / reflection-keyword curves over steps.
"""
