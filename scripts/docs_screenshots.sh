#!/usr/bin/env bash
# Screenshot pages of the built documentation with headless Chromium, offline,
# to look at what a reader sees (layout, maths, figures, tables).
#
#   bash scripts/docs_screenshots.sh [OUT_DIR] [PAGE ...]
#
# Build the docs first (.venv/bin/python -m sphinx -W --keep-going -b html docs
# docs/_build/html).  PAGE is a path under docs/_build/html; without any: the
# front page, the user guide, a method page, the benchmarks page and two
# gallery pages.  Screenshots (1400 px wide, HEIGHT px tall, default 1000) go
# to OUT_DIR (default docs/_build/screenshots, ignored by git).  Chromium gets
# a proxy that goes nowhere, so a page that needed the network would show it.
# Needs chromium (Debian: apt-get install chromium).  First checks that no
# built page loads a script or style sheet from another host.
set -euo pipefail
cd "$(dirname "$0")/.."
HTML=docs/_build/html
OUT="${1:-docs/_build/screenshots}"
shift || true
PAGES=("$@")
if [ ${#PAGES[@]} -eq 0 ]; then
    PAGES=(index.html user_guide.html methods/ferumal.html benchmarks.html
           auto_examples/plot_density_2d.html auto_examples/plot_anomaly_detection.html)
fi
[ -f "$HTML/index.html" ] || { echo "no $HTML/index.html: build the docs first" >&2; exit 1; }
BROWSER="$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)"
[ -n "$BROWSER" ] || { echo "chromium not found (apt-get install chromium)" >&2; exit 1; }

# Scripts and style sheets must come from the site itself.
external=$(grep -rhoE '<(script|link)[^>]*(src|href)="(https?:)?//[^"]*"' --include='*.html' "$HTML" | sort -u || true)
if [ -n "$external" ]; then
    echo "external scripts or styles in the built HTML:" >&2
    echo "$external" >&2
    exit 1
fi
echo "no external scripts or style sheets in $HTML"

mkdir -p "$OUT"
for page in "${PAGES[@]}"; do
    name="$(echo "$page" | tr '/' '_' | sed 's/\.html$//').png"
    # --virtual-time-budget lets MathJax typeset before the shot is taken.
    timeout 120 "$BROWSER" --headless --no-sandbox --disable-gpu --hide-scrollbars \
        --proxy-server="127.0.0.1:9" --proxy-bypass-list="<-loopback>" \
        --window-size=1400,"${HEIGHT:-1000}" --virtual-time-budget=10000 \
        --screenshot="$OUT/$name" "file://$PWD/$HTML/$page" >/dev/null 2>&1
    echo "$OUT/$name"
done
