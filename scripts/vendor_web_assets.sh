#!/usr/bin/env bash
# Refresh the dashboard's vendored browser assets from the npm registry.
#
# Usage: scripts/vendor_web_assets.sh   (needs npm; nothing else is installed)
#
# Each package is fetched with `npm pack NAME@VERSION`; only the files the dashboard
# serves are copied into src/mosu/web/static/vendor/, with their licence. Change a
# version here, run the script, check the pages, and commit the result with VERSIONS.md.
set -euo pipefail
cd "$(dirname "$0")/.."

HTMX=2.0.11           # htmx.org: partial page refreshes
UPLOT=1.6.32          # uplot: time-series charts
SWAGGER_UI=5.35.0     # swagger-ui-dist: /docs, offline

DEST=src/mosu/web/static/vendor
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

fetch() {  # fetch NAME VERSION -> unpacked package directory
  local dir="$WORK/$1"
  mkdir -p "$dir"
  (cd "$dir" && npm pack --silent "$1@$2" >/dev/null && tar xzf ./*.tgz)
  echo "$dir/package"
}

rm -rf "$DEST"
mkdir -p "$DEST/htmx" "$DEST/uplot" "$DEST/swagger-ui"

pkg=$(fetch htmx.org "$HTMX")
cp "$pkg/dist/htmx.min.js" "$pkg/LICENSE" "$DEST/htmx/"

pkg=$(fetch uplot "$UPLOT")
cp "$pkg/dist/uPlot.iife.min.js" "$pkg/dist/uPlot.min.css" "$pkg/LICENSE" "$DEST/uplot/"

pkg=$(fetch swagger-ui-dist "$SWAGGER_UI")
cp "$pkg/swagger-ui-bundle.js" "$pkg/swagger-ui-bundle.js.LICENSE.txt" "$pkg/swagger-ui.css" \
  "$pkg/LICENSE" "$pkg/NOTICE" "$DEST/swagger-ui/"
# The bundle names a source map that is not shipped; drop the reference.
sed -i '/^\/\/# sourceMappingURL=/d' "$DEST/swagger-ui/swagger-ui-bundle.js" "$DEST/swagger-ui/swagger-ui.css"

cat > "$DEST/VERSIONS.md" <<EOT
# Vendored browser assets

Served from the Python package, so the dashboard and \`/docs\` work offline and
installing mosu needs no Node toolchain. Refreshed by \`scripts/vendor_web_assets.sh\`
(npm pack by name); do not edit these files by hand.

| package | version | licence | files |
|---|---|---|---|
| htmx.org | $HTMX | 0BSD (\`htmx/LICENSE\`) | \`htmx/htmx.min.js\` |
| uplot | $UPLOT | MIT (\`uplot/LICENSE\`) | \`uplot/uPlot.iife.min.js\`, \`uplot/uPlot.min.css\` |
| swagger-ui-dist | $SWAGGER_UI | Apache-2.0 (\`swagger-ui/LICENSE\`, \`NOTICE\`; bundled licences in \`swagger-ui-bundle.js.LICENSE.txt\`) | \`swagger-ui/swagger-ui-bundle.js\`, \`swagger-ui/swagger-ui.css\` |
EOT
ls -l "$DEST"/*
