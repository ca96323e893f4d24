#!/usr/bin/env bash
# Run the molecule scenarios of extensions/molecule (default driver, localhost) against throwaway MariaDB
# servers that live as long as the run.  Extra arguments go to `molecule test`, e.g. `-s cleanup`;
# without any, every scenario runs.
set -euo pipefail
cd "$(dirname "$0")/.."

export ANSIBLE_COLLECTIONS_PATH="$PWD/.venv/collections"
export ANSIBLE_COLLECTIONS_SCAN_SYS_PATH=false
export PATH="$PWD/.venv/bin:$PATH"

if [ "$#" -eq 0 ]; then
    set -- --all
fi
exec .venv/bin/python extensions/molecule/with_servers.py molecule test "$@"
