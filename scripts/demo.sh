#!/usr/bin/env bash
# Set up (if needed) and run the demo: fit, score, sample, plot on real data.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh "test,examples"
exec .venv/bin/python examples/demo.py "$@"
