#!/usr/bin/env bash
# ansible-test sanity needs the collection under ansible_collections/<ns>/<name>/; run it on a copy
# of the tracked (and new, not ignored) files so the working tree stays as it is.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
dest=$work/ansible_collections/wfu/multisite
mkdir -p "$dest"
git ls-files -z --cached --others --exclude-standard | while IFS= read -r -d '' f; do
    [ -e "$f" ] && { mkdir -p "$dest/$(dirname "$f")"; cp -p "$f" "$dest/$f"; }
done
# A venv ansible-test left half-built (an interrupted or concurrent run) has its marker files but no
# bin/python, and every later run then fails the import test on every file: remove such a venv so it is rebuilt.
for venv in "$HOME"/.ansible/test/venv/*/*/*/; do
    [ -d "$venv" ] && [ ! -e "$venv/bin/python" ] && rm -rf "$venv"
done
cd "$dest"
git init -q . && git add -A >/dev/null
# SANITY_ARGS: extra arguments, e.g. "--test pep8" to run one test.
# shellcheck disable=SC2086
"$ROOT/.venv/bin/ansible-test" sanity --color no --python 3.11 --venv --requirements ${SANITY_ARGS:-}
