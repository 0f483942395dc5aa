#!/usr/bin/env bash
# The GPU paths in one prepared check (tests/perf/gpu_checks.py): bf16 SFT step on a ~0.5B random-init
# model (tokens/s, MFU, packed varlen vs padded), an RL run with HF rollouts (rollout tokens/s, step
# time), chunked vs unchunked log-probs at 16K response tokens (peak memory), one MATH-500 eval chunk
# with the tiny model on CUDA. One H200, <= 8 min; JSON to $OUT/gpu_checks.json (+ bench_rl_gpu.json).
#
#   bash tests/perf/run_gpu_checks.sh prepare   # HERE, where pip works: wheels -> .whl/, MATH-500 -> .gpu_data/
#   bash tests/perf/run_gpu_checks.sh [args]    # ON THE DEVICE (run tool: carry [".whl", ".gpu_data"], timeout_s 540)
#   bash tests/perf/run_gpu_checks.sh --device cpu --quick   # CPU smoke test of every check (numbers meaningless)
#
# The device machine is bare and offline (torch 2.11 + CUDA, transformers, accelerate; no vLLM, no
# DeepSpeed): longcot runs from the checkout (PYTHONPATH) with the carried pure-Python wheels
# (omegaconf, antlr4, math-verify; see run_bench_rl_gpu.sh) installed into /tmp/site; `prepare` also
# builds a DeepSpeed wheel without prebuilt ops (+ its deps, ~6 MB): where it imports there, the SFT
# check adds a DeepSpeed ZeRO-2 arm (one process, torch AdamW: no op build), else records it skipped.
# Env: GPU_CHECKS_BUDGET_S (default 450: the whole check's timeout; checks starting after
# budget - 120 s are skipped and recorded so), PYTHON (default python3).
set -uo pipefail
cd "$(dirname "$0")/../.."
T0=$(date +%s)
stamp() { echo "[run_gpu_checks +$(( $(date +%s) - T0 ))s] $*"; }
PY=${PYTHON:-python3}

if [ "${1:-}" = prepare ]; then
    bash tests/perf/run_bench_rl_gpu.sh prepare || exit 1
    # optional: DeepSpeed without prebuilt ops (ZeRO-2 with torch's AdamW needs none) and its deps, ~6 MB
    DS_BUILD_OPS=0 $PY -m pip wheel -q --no-deps --no-build-isolation -w .whl deepspeed==0.19.8 \
        && $PY -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
            --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 -d .whl \
            hjson py-cpuinfo einops msgpack ninja pydantic pydantic-core annotated-types typing-inspection \
        || echo "no DeepSpeed wheel: the packed_zero2 arm will be skipped on the device"
    src="${LONGCOT_SHARED_DATA:-$PWD/../shared/data}/math500/test.jsonl"
    mkdir -p .gpu_data/math500 && cp "$src" .gpu_data/math500/test.jsonl || { echo "no MATH-500 at $src" >&2; exit 1; }
    du -sh .whl .gpu_data
    exit 0
fi

OUTDIR=${OUT:-$(mktemp -d /tmp/gpu_checks-out-XXXX)}
export OUT=$OUTDIR
exec > >(tee -a "$OUT/gpu_checks.log") 2>&1
stamp "start: $(nproc) cpus; out=$OUT"
nvidia-smi --query-gpu=name,memory.total,memory.used,driver_version --format=csv,noheader 2>/dev/null || stamp "no nvidia-smi"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 WANDB_MODE=disabled TOKENIZERS_PARALLELISM=false
export LONGCOT_CACHE=${LONGCOT_CACHE:-/tmp/longcot-cache} PYTHONUNBUFFERED=1
[ -f .gpu_data/math500/test.jsonl ] && export LONGCOT_SHARED_DATA=${LONGCOT_SHARED_DATA:-$PWD/.gpu_data}

if $PY -c "import omegaconf, antlr4, math_verify, deepspeed" 2>/dev/null; then
    stamp "longcot's deps (and DeepSpeed) already importable: no wheels installed"
elif ls .whl/*.whl >/dev/null 2>&1; then
    stamp "installing $(ls .whl/*.whl | wc -l) carried wheels into /tmp/site"
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        || stamp "wheel install failed"
    export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
elif ! $PY -c "import omegaconf, antlr4, math_verify" 2>/dev/null; then
    stamp "longcot's pure-Python deps are missing and no .whl/ was carried (run 'bash $0 prepare' here first)"
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
stamp "python: $($PY -c 'import sys, torch; print(sys.executable, sys.version.split()[0], "torch", torch.__version__, "cuda", torch.cuda.is_available())')"
if ! $PY -c "import torch, transformers, omegaconf, longcot.sft.recipe, longcot.rl.recipe, longcot.grading.by_kind"; then
    stamp "FAILED: longcot's imports are missing (see above); nothing checked"
    exit 3
fi

BUDGET=${GPU_CHECKS_BUDGET_S:-450}
stamp "gpu_checks.py (timeout ${BUDGET} s): $*"
timeout --signal=TERM --kill-after=15 "$BUDGET" $PY -u tests/perf/gpu_checks.py --budget-s $(( BUDGET - 120 )) "$@"
rc=$?
[ $rc -eq 124 ] && stamp "hit the ${BUDGET} s timeout; the finished checks are in $OUT/gpu_checks.json"
stamp "done rc=$rc; files: $(ls "$OUT" | tr '\n' ' ')"
exit $rc
