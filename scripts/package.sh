#!/usr/bin/env bash
# Writes the plugin zip with qgis-plugin-ci: dist/eo_missing_qgis.<version>.zip
# The working tree (tracked and new, non-ignored files) is staged in a scratch git repository,
# where the root metadata.txt replaces the plugin folder's symlink to it, so the zip holds the
# real file and qgis-plugin-ci never touches the checkout.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
out=${1:-$root/dist}
version=$(sed -n 's/^version=//p' metadata.txt)
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT

git ls-files -z --cached --others --exclude-standard | while IFS= read -r -d '' f; do
  [ -e "$f" ] || continue  # deleted in the working tree
  mkdir -p "$stage/$(dirname "$f")"
  cp -P "$f" "$stage/$f"
done
rm -f "$stage/eo_missing_qgis/metadata.txt"
cp metadata.txt "$stage/eo_missing_qgis/metadata.txt"
cd "$stage"
git init -q
git add -A
git -c user.name=package -c user.email=package@localhost commit -q -m package
"$root/.venv/bin/qgis-plugin-ci" package "$version" >/dev/null
mkdir -p "$out"
zip=$(ls eo_missing_qgis.*.zip)
mv "$zip" "$out/"
echo "$out/$zip ($(du -h "$out/$zip" | cut -f1))"
