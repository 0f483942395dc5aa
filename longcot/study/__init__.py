"""Studies: every paper experiment as an ``experiments/`` file with a ``study:`` section, run as a graph
of stage runs (distill -> sft -> rl -> eval) that computes shared work once, locally or on SLURM.

:mod:`spec` (parse, compose), :mod:`graph` (plan, dedupe), :mod:`local` / :mod:`slurm` (execute),
:mod:`status`, :mod:`collect`, :mod:`dryrun`, :mod:`cli` (``longcot`` study commands).
"""
