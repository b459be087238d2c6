#!/usr/bin/env bash
# Create .venv and install skflow with the given extras (idempotent).
#
# On a fresh machine with no torch, a bare "torch" requirement resolves to a
# multi-GB CUDA build; we install the CPU wheel first (torch==2.13.0, which
# this team's machines carry locally), then skflow, whose "torch>=2.1"
# requirement is then already satisfied.  Elsewhere, plain `pip install .`
# is all a user needs.
set -euo pipefail
cd "$(dirname "$0")/.."
EXTRAS="${1:-test}"
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
PIP=".venv/bin/python -m pip"
if ! .venv/bin/python -c "import torch" >/dev/null 2>&1; then
    $PIP install --quiet torch==2.13.0 || $PIP install --quiet torch --index-url https://download.pytorch.org/whl/cpu
fi
$PIP install --quiet -e ".[$EXTRAS]"
