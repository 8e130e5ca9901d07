#!/usr/bin/env bash
# Open a report's HTML in a real headless browser (Debian's chromium) and save a screenshot.
#   scripts/screenshot_report.sh reports/demo/table6/table6.html /tmp/table6.png
# Needs: apt-get install chromium. The flags keep it off the network (none is reachable here).
set -euo pipefail
html=$(realpath "$1"); png=${2:-${1%.html}.png.screenshot.png}
profile=$(mktemp -d)
trap 'rm -rf "$profile"' EXIT
chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
  --disable-background-networking --disable-component-update --disable-sync \
  --user-data-dir="$profile" --hide-scrollbars --window-size=1400,2600 \
  --screenshot="$(realpath -m "$png")" "file://$html" 2>/dev/null
echo "$png"
