#!/usr/bin/env bash
# Device run of tests/perf/bench_rl_gpu.py: RL rollout tokens/s and step time on one GPU, ~0.5B random-init model.
#
# Usage (from anywhere; it cd's to the repo root):
#   bash tests/perf/run_bench_rl_gpu.sh prepare      # HERE, with network: wheels of the pure-Python deps -> .whl/
#   bash tests/perf/run_bench_rl_gpu.sh [bench args] # ON THE DEVICE: install what it can, run the benchmark
#
# The device machine starts bare and has NO network: `pip install -e '.[gpu]'` cannot work there. Its
# image already has torch, transformers, tokenizers, numpy, sympy, matplotlib, rich, tqdm, safetensors,
# but not omegaconf / antlr4 / math-verify (imported by longcot) nor vllm / deepspeed. So:
#   * with network (pip's configured package index answers, or BENCH_VENV=1): a venv (--system-site-packages) with
#     pip install -e '.[gpu]' (vllm==0.31.0, deepspeed), bounded by BENCH_INSTALL_S seconds;
#   * offline: the wheels in .whl/ (made by `prepare`, travel with `carry: [".whl"]`) are installed
#     with --no-index into /tmp/site, and longcot runs from the checkout (PYTHONPATH). vLLM is then
#     missing (its CUDA wheel is far over the 64 MiB a device call can carry, and it pins its own
#     torch), so the vllm rows are recorded as skipped and only HF rollouts are measured.
# The benchmark runs under `timeout BENCH_BUDGET_S` (default 420 s) and gets --budget-s 90 s less, so
# it skips runs it would not finish; every finished run is already in $OUT/bench_rl_gpu.json.
#
# Device call (run tool): command "bash tests/perf/run_bench_rl_gpu.sh", carry [".whl"], timeout_s 540.
# Env: BENCH_BUDGET_S, BENCH_INSTALL_S (default 300), BENCH_VENV=1|0, PYTHON (default python3).
# Default bench args: --backends hf,vllm --algos grpo,ppo (override by passing any args).
set -uo pipefail
cd "$(dirname "$0")/../.."
T0=$(date +%s)
stamp() { echo "[run_bench_rl_gpu +$(( $(date +%s) - T0 ))s] $*"; }

PY=${PYTHON:-python3}
WHEELS="omegaconf==2.3.1 math-verify==0.9.0 latex2sympy2_extended==1.11.0 dill==0.4.1"
SDISTS="antlr4-python3-runtime==4.9.3"  # sdist only on PyPI: built into a wheel here

if [ "${1:-}" = prepare ]; then
    mkdir -p .whl
    # pure-Python wheels (py3-none-any) for the device's Python 3.12
    $PY -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 -d .whl $WHEELS || exit 1
    $PY -m pip wheel -q --no-deps -w .whl $SDISTS || exit 1
    ls -la .whl
    du -sh .whl
    exit 0
fi

OUTDIR=${OUT:-$(mktemp -d /tmp/bench_rl_gpu-out-XXXX)}
export OUT=$OUTDIR
LOG=$OUT/bench_rl_gpu.log
exec > >(tee -a "$LOG") 2>&1
stamp "start: $(uname -m), $(nproc) cpus; out=$OUT"
nvidia-smi --query-gpu=name,memory.total,memory.used,driver_version --format=csv,noheader 2>/dev/null || stamp "no nvidia-smi"

export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 WANDB_MODE=disabled TOKENIZERS_PARALLELISM=false
export LONGCOT_CACHE=${LONGCOT_CACHE:-/tmp/longcot-cache}
export PYTHONUNBUFFERED=1

online=0
if [ "${BENCH_VENV:-}" = 1 ]; then
    online=1
elif [ "${BENCH_VENV:-}" != 0 ] && timeout 15 $PY -m pip index versions omegaconf --timeout 5 --retries 0 >/dev/null 2>&1; then
    # the network probe goes through pip's own configuration (its index URL, proxies): no host named here
    online=1
fi
if [ $online = 1 ]; then
    stamp "network: venv + pip install -e '.[gpu]' (<= ${BENCH_INSTALL_S:-300} s)"
    $PY -m venv --system-site-packages /tmp/bench-venv \
        && timeout "${BENCH_INSTALL_S:-300}" /tmp/bench-venv/bin/pip install -q -e '.[gpu]' \
        && PY=/tmp/bench-venv/bin/python \
        || stamp "install failed: falling back to $PY + wheels"
fi
if [ "$PY" = "${PYTHON:-python3}" ]; then
    if ls .whl/*.whl >/dev/null 2>&1; then
        stamp "offline: installing $(ls .whl/*.whl | wc -l) carried wheels into /tmp/site"
        $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
            || stamp "wheel install failed"
        export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
    else
        stamp "offline and no .whl/ (run 'bash $0 prepare' where pip works, then carry .whl)"
    fi
    export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
fi
stamp "python: $($PY -c 'import sys; print(sys.executable, sys.version.split()[0])')"
if ! $PY -c "import torch, transformers, omegaconf, longcot.rl.recipe, longcot.grading.by_kind" ; then
    stamp "FAILED: longcot's imports are missing (see above); nothing benchmarked"
    exit 3
fi
$PY -c "import math_verify" 2>/dev/null || stamp "warning: math_verify missing (the grader's fallback checks will fail)"
$PY -c "import vllm; print('vllm', vllm.__version__)" 2>/dev/null || stamp "vllm not importable: the vllm rows will be skipped"

BUDGET=${BENCH_BUDGET_S:-420}
if [ $# -eq 0 ]; then
    set -- --backends hf,vllm --algos grpo,ppo
fi
stamp "bench (timeout ${BUDGET} s): $*"
timeout --signal=TERM --kill-after=15 "$BUDGET" $PY -u tests/perf/bench_rl_gpu.py --budget-s $(( BUDGET - 90 )) "$@"
rc=$?
[ $rc -eq 124 ] && stamp "benchmark hit its ${BUDGET} s timeout; finished runs are in $OUT/bench_rl_gpu.json"
stamp "done rc=$rc; files: $(ls "$OUT" | tr '\n' ' ')"
exit $rc
