#!/usr/bin/env bash
# A screenshot of a report.html (`r1dist report`) as a 1400 px wide window shows it, for the
# docs: headless Chromium (Debian's chromium; fonts-noto-cjk for the Chinese prompts). Not part
# of the build or of tools/install-deps.sh: install those two packages to use it.
# Usage: tools/report_screenshot.sh REPORT_HTML OUT_PNG [HEIGHT (default 2400)]
set -euo pipefail
if [ $# -lt 2 ]; then
  echo "usage: $0 REPORT_HTML OUT_PNG [HEIGHT]" >&2
  exit 2
fi
html=$(realpath "$1")
out=$(realpath -m "$2")
height=${3:-2400}
[ -f "$html" ] || { echo "report_screenshot: no file $html" >&2; exit 2; }
browser=$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)
[ -n "$browser" ] || { printf "report_screenshot: no chromium\nHINT: apt-get install chromium fonts-noto-cjk\n" >&2; exit 2; }
mkdir -p "$(dirname "$out")"
# Chromium keeps its profile in a throwaway directory, so concurrent runs do not collide.
profile=$(mktemp -d)
trap 'rm -rf "$profile"' EXIT
"$browser" --headless --no-sandbox --disable-gpu --hide-scrollbars --user-data-dir="$profile" \
  --window-size=1400,"$height" --screenshot="$out" "file://$html" 2>/dev/null
[ -s "$out" ] || { echo "report_screenshot: chromium wrote no $out" >&2; exit 1; }
echo "report_screenshot: $out"
