"""Supervised fine-tuning on (long) chain-of-thought data (paper §3): data, packing, the SFT recipe."""
