"""longcot: a research harness for 'Demystifying Long Chain-of-Thought Reasoning in LLMs' (arXiv 2502.03373)."""

__version__ = "0.1.0"
