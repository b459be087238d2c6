#!/usr/bin/env bash
# Set up (if needed) and run the test suite.  Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh "test,examples"
# Gallery examples (marked slow) run in the docs build and with `-m slow`.
exec .venv/bin/python -m pytest -n 2 -m "not slow" "$@"
