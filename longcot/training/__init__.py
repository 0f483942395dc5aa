"""The training engine shared by SFT and RL: plain torch on CPU, DeepSpeed ZeRO on GPUs; checkpoints.

* :mod:`.engine`: one model + optimizer + LR schedule (``Engine``, ``EngineConfig``);
* :mod:`.distributed`: rank / world size from torchrun or SLURM, process-group init;
* :mod:`.checkpoint`: atomic periodic + final checkpoints of named engines, exact resume;
* :mod:`.schedule`: warmup + cosine;
* :mod:`.metrics`: ``metrics.jsonl``, tracker, progress bar, loss plot.
"""
