"""Reinforcement learning (paper §4-§5): returns, advantages, losses and the RL recipe."""
