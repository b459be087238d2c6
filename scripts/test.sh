#!/usr/bin/env bash
# Set up (if needed) and run the test suite.  Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh "test,examples"
# Gallery examples are marked slow: `.venv/bin/python -m pytest -m slow` runs them (CI does).
exec .venv/bin/python -m pytest -n 2 -m "not slow" "$@"
