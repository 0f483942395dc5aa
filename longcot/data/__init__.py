"""Benchmarks and training prompt sets: loading, the synthetic toy task, and prompt formatting."""

from longcot.data.records import Problem
from longcot.data.loading import load_benchmark, load_prompts, shared_data_dir, train_overlap

__all__ = ["Problem", "load_benchmark", "load_prompts", "shared_data_dir", "train_overlap"]
