#!/usr/bin/env bash
# Re-vendor uPlot into the dashboard's static files from the npm registry (`npm pack`, no install, no
# build step): its ES module, its stylesheet and its licence, and a README line saying which version and
# where it came from. The dashboard loads these files itself; nothing is fetched from a CDN at run time.
# Usage: scripts/vendor-uplot.sh 1.6.32
set -euo pipefail
VERSION=${1:?usage: $0 VERSION (e.g. 1.6.32)}
DEST="$(cd "$(dirname "$0")/.." && pwd)/api/static/vendor/uplot"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

(cd "$WORK" && npm pack --silent "uplot@$VERSION" >/dev/null)
TARBALL=("$WORK"/uplot-*.tgz)
tar -xzf "${TARBALL[0]}" -C "$WORK"
INTEGRITY=$(cd "$WORK" && npm view "uplot@$VERSION" dist.integrity)

mkdir -p "$DEST"
cp "$WORK/package/dist/uPlot.esm.js" "$WORK/package/dist/uPlot.min.css" "$WORK/package/LICENSE" "$DEST/"
cat > "$DEST/README.md" <<README
uPlot $VERSION, vendored from npm (\`npm pack uplot@$VERSION\`, integrity $INTEGRITY) by
scripts/vendor-uplot.sh: dist/uPlot.esm.js, dist/uPlot.min.css and LICENSE (MIT), unmodified.
README
echo "uplot: vendored $VERSION into $DEST"
