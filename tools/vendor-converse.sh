#!/usr/bin/env bash
# Refreshes the Converse.js copy Descant serves at / (src/descant/http/webclient/converse/):
# the run-time files of the npm package's dist/ (no source maps, no unminified builds, no
# website styles; the largest also gzipped), its licence, and a VERSION and README.md saying where they came from.
#
#   tools/vendor-converse.sh            # the pinned version below, checked against its sha256
#   tools/vendor-converse.sh 14.1.0     # another version: prints the new sha256 to pin here
#
# Needs npm (to fetch from the registry), sha256sum and gzip. Run it from anywhere; it replaces
# the directory wholesale, so `git status` shows exactly what changed. Then try the page
# (`make run`, http://localhost:5280/) and the browser test (tests/client/test_web_client.py).
set -euo pipefail

PINNED=14.0.0
PINNED_SHA256=634f31fa0f7b0e47f1abc60d870ff6805c737577399920ebe92da4c7e5bcaff0

version=${1:-$PINNED}
root=$(cd "$(dirname "$0")/.." && pwd)
dest=$root/src/descant/http/webclient/converse
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

(cd "$tmp" && npm pack --silent "converse.js@$version" >/dev/null)
tarball=$tmp/converse.js-$version.tgz
sha=$(sha256sum "$tarball" | cut -d' ' -f1)
if [ "$version" = "$PINNED" ] && [ "$sha" != "$PINNED_SHA256" ]; then
  echo "vendor-converse: converse.js-$version.tgz has sha256 $sha, expected $PINNED_SHA256" >&2
  exit 1
fi
tar -xzf "$tarball" -C "$tmp"
pkg=$tmp/package
got=$(sed -n 's/^ *"version": *"\([^"]*\)".*/\1/p' "$pkg/package.json" | head -1)
[ "$got" = "$version" ] || { echo "vendor-converse: package.json says $got" >&2; exit 1; }

rm -rf "$dest"
mkdir -p "$dest"
cd "$pkg/dist"
# What the page loads at run time: the module and its styles; the locale chunks it imports
# for the browser's language (chunkjs/, relative to converse.min.js); emoji data; OMEMO's
# crypto library and its WebAssembly; fonts the styles name; the notification sound; icons.
files=(converse.min.js converse.min.css emoji.json libomemo.esm.min.js
  curve25519_compiled.wasm)
cp "${files[@]}" "$dest/"
find chunkjs webfonts sounds images -type f ! -name '*.map' -print0 |
  while IFS= read -r -d '' f; do
    mkdir -p "$dest/$(dirname "$f")"
    cp "$f" "$dest/$f"
  done
# The three large files every first visit loads, also gzipped: the server sends these to
# browsers that accept gzip (a third of the bytes).
for f in converse.min.js converse.min.css emoji.json; do
  gzip -9 -n -k "$dest/$f"
done
cp "$pkg/LICENSE" "$dest/LICENSE"
printf '%s\n' "$version" > "$dest/VERSION"
cat > "$dest/README.md" <<MD
# Converse.js $version (vendored)

The run-time files of the npm package \`converse.js@$version\` (\`dist/\`, without source maps
or unminified builds), served by Descant at \`/\` (docs/web.md). Licence: Mozilla Public
License 2.0, in LICENSE; the source is at https://github.com/conversejs/converse.js.

- tarball: converse.js-$version.tgz from registry.npmjs.org
- sha256: $sha

Do not edit these files; \`tools/vendor-converse.sh\` replaces them.
MD
size=$(du -sh "$dest" | cut -f1)
echo "vendor-converse: converse.js $version (sha256 $sha), $size in ${dest#"$root"/}"
