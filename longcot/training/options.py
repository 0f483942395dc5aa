"""The training engine's choices, torch-free so config dataclasses can validate against them."""

BACKENDS = ("auto", "torch", "deepspeed")
PRECISIONS = ("auto", "float32", "bf16")
ZERO_STAGES = (1, 2, 3)
