"""Grading worker process: `python -m longcot.grading.worker [--memory-mb N]`.

Reads one JSON task per line on stdin, `{"id": int, "gold": str, "pred": str}`, and answers one JSON
line per task on stdout, `{"id": int, "ok": bool, "error": str | null}`, after a first
`{"ready": true}` line once math-verify is imported. It exits on EOF, when its parent process is
gone, or when killed (the pool kills it when a task overruns its deadline). Messages are plain
JSON data (no pickle), and nothing in the task text is ever executed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from longcot.processes import exit_with_parent


def _limit_memory(megabytes: int) -> None:
    if megabytes > 0:
        import resource

        limit = megabytes * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--memory-mb", type=int, default=0, help="address-space limit (0: none)")
    args = parser.parse_args(argv)

    # Our protocol owns fd 1; anything else that prints (libraries, warnings) goes to stderr.
    out = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)
    exit_with_parent()
    _limit_memory(args.memory_mb)

    from longcot.grading.equivalence import verify_in_worker

    verify_in_worker("1", "1")  # warm up imports and the LaTeX parser before declaring readiness
    out.write('{"ready": true}\n')
    out.flush()
    for line in sys.stdin.buffer:
        task = json.loads(line)
        error = None
        try:
            ok = verify_in_worker(task["gold"], task["pred"])
        except BaseException as exc:  # noqa: BLE001 - a verdict must always come back
            if isinstance(exc, KeyboardInterrupt):
                raise
            # Only the type: str() of an exception holding a huge sympy object can itself hang.
            ok, error = False, type(exc).__name__
        out.write(json.dumps({"id": task["id"], "ok": ok, "error": error}) + "\n")
        out.flush()


if __name__ == "__main__":
    main()
