"""Distillation data (paper §3, §3.3, §5): rejection sampling a teacher into SFT datasets.

Modules: ``config`` (typed settings), ``sampling`` (teacher sampling settings, candidates, prefix
derivation of smaller N), ``shards`` (independent, resumable shard jobs), ``dataset`` (merge into
per-N datasets with manifests), ``budget`` (nested token-budget subsets), ``constructed`` (§3.3
action-prompting state machine), ``silver`` (§5 reference extraction from web data), ``tokens``
(the student tokenizer). The stage itself is :mod:`longcot.stages.distill`.
"""
