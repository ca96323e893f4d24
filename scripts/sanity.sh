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
# ansible-test keeps its venvs under ~/.ansible/test/venv, shared by every checkout of this user: two sanity runs
# at once build the same venv together and break it.  One run at a time; a second one waits for the first.
mkdir -p "$HOME/.ansible/test"
exec 9>"$HOME/.ansible/test/wfu-sanity.lock"
flock 9
# A venv ansible-test left half-built (an interrupted run) lacks bin/python or pip, and every later run then fails
# on it: remove such a venv so that it is rebuilt.
for venv in "$HOME"/.ansible/test/venv/*/*/*/; do
    if [ -d "$venv" ] && ! "$venv/bin/python" -c "import pip" >/dev/null 2>&1; then
        rm -rf "$venv"
    fi
done
cd "$dest"
git init -q . && git add -A >/dev/null
# SANITY_ARGS: extra arguments, e.g. "--test pep8" to run one test.
# shellcheck disable=SC2086
"$ROOT/.venv/bin/ansible-test" sanity --color no --python 3.11 --venv --requirements ${SANITY_ARGS:-}
