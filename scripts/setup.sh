#!/usr/bin/env bash
# Idempotent set-up of a development/CI machine for wfu.multisite:
#   - MariaDB server + client, php-cli and rsync from the OS packages (only when missing; needs root),
#   - .venv with the pinned tools of requirements.txt (only when requirements.txt changed),
#   - the collection importable as ansible_collections.wfu.multisite (a link inside .venv),
#   - the offline get-pip stand-in ansible-test needs for its sanity/units venvs.
# System services are never started: the tests and the demo start their own throwaway servers.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PYTHON=${PYTHON:-python3}

missing=()
command -v mariadbd >/dev/null 2>&1 || [ -x /usr/sbin/mariadbd ] || missing+=(mariadb-server)
command -v mariadb >/dev/null 2>&1 && command -v mariadb-dump >/dev/null 2>&1 || missing+=(mariadb-client)
command -v php >/dev/null 2>&1 || missing+=(php-cli)
command -v shellcheck >/dev/null 2>&1 || missing+=(shellcheck)
command -v rsync >/dev/null 2>&1 || missing+=(rsync)
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" != 0 ]; then
        echo "setup: ${missing[*]} missing; run 'sudo make setup' or install them with your package manager." >&2
        exit 1
    fi
    echo "setup: installing ${missing[*]} from the OS packages"
    # Keep the package scripts from starting a system MariaDB (port 3306 is not ours).
    created_policy=0
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
        chmod 0755 /usr/sbin/policy-rc.d
        created_policy=1
    fi
    trap '[ "$created_policy" = 1 ] && rm -f /usr/sbin/policy-rc.d' EXIT
    apt-get -o DPkg::Lock::Timeout=600 update -qq
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends \
        "${missing[@]}" >/dev/null
fi

stamp=.venv/.requirements.sha256
want=$(sha256sum requirements.txt | cut -d' ' -f1)
if [ ! -x .venv/bin/python ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    echo "setup: creating .venv from requirements.txt"
    "$PYTHON" -m venv .venv
    .venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip
    .venv/bin/python -m pip install -q --disable-pip-version-check -r requirements.txt
    echo "$want" > "$stamp"
fi

# ansible_collections/wfu/multisite -> the repository root, for ansible-playbook and pytest.
mkdir -p .venv/collections/ansible_collections/wfu
ln -sfn "$ROOT" .venv/collections/ansible_collections/wfu/multisite

# ansible-test asks for get_pip_<pip version>.py; give it the offline stand-in.
pip_version=$(.venv/bin/python - <<'PY'
import re, pathlib, ansible_test
src = pathlib.Path(ansible_test.__file__).parent / "_internal" / "python_requirements.py"
print(re.search(r"pip='([0-9.]+)'", src.read_text()).group(1))
PY
)
mkdir -p ~/.ansible/test/cache
install -m 0644 scripts/get_pip_offline.py ~/.ansible/test/cache/"get_pip_${pip_version//./_}.py"
echo "setup: ready (ansible-core $(.venv/bin/python -c 'import ansible; print(ansible.__version__)'), $(mariadbd --version 2>/dev/null | awk '{print $3}' || /usr/sbin/mariadbd --version | awk '{print $3}'))"
