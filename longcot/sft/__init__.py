"""Supervised fine-tuning on (long) chain-of-thought data (paper §3): data, packing, the SFT recipe.

* :mod:`.config`: ``sft.*`` settings (recipe defaults marked UNVERIFIED);
* :mod:`.data`: examples from distill outputs / user files / hub datasets, chat-template tokenisation,
  response-only shifted targets;
* :mod:`.packing`: first-fit-decreasing token buckets, one flattened row per micro-batch, no
  attention across samples;
* :mod:`.recipe`: ``train(examples, model_cfg, sft_cfg, run_dir)`` -- the loop, resumable exactly.
"""
