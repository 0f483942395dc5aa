"""The training engine shared by SFT and RL: plain torch on CPU, DeepSpeed ZeRO on GPUs; checkpoints."""
