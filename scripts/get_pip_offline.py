"""Offline stand-in for the get-pip script that ansible-test downloads.

ansible-test bootstraps pip in the virtual environments it creates by running
``get_pip_<version>.py`` from ``~/.ansible/test/cache``; it normally downloads
that script from a host this project's machines cannot reach.  This stand-in
does the same job with what Python ships: ``ensurepip``, then ``pip install``
of the packages it is given (for example ``pip==24.2``).  ansible-test hides
the machine's pip configuration (``PIP_CONFIG_FILE=/dev/null``); the inner
install uses it again, since that is where the package index and its CA
bundle are configured.  ``scripts/setup.sh`` copies this file into the cache.
"""

import ensurepip
import os
import subprocess
import sys

GET_PIP_ONLY_OPTIONS = {"--no-setuptools", "--no-wheel"}


def main():
    ensurepip.bootstrap(upgrade=True)
    args = [arg for arg in sys.argv[1:] if arg not in GET_PIP_ONLY_OPTIONS]
    env = dict(os.environ)
    if env.get("PIP_CONFIG_FILE") == os.devnull:
        del env["PIP_CONFIG_FILE"]
    return subprocess.call([sys.executable, "-m", "pip", "install"] + args, env=env)


if __name__ == "__main__":
    sys.exit(main())
