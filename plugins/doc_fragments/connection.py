# -*- coding: utf-8 -*-
# Copyright: contributors to wfu.multisite
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:
    """The shape of a database-connection option, shared by every module."""

    DOCUMENTATION = r"""
options: {}
notes:
  - Database connection options are dictionaries with the keys C(host), C(port), C(user), C(password),
    C(database), C(config_file), C(unix_socket) and C(ssl) (C(ca), C(cert), C(key), C(verify_server_cert)).
    C(config_file) is a C([client]) option file whose values fill the keys that are not given, which is how
    AWX credentials are best passed.
  - Passwords are never placed on a command line; the MariaDB command-line tools receive them through a
    temporary 0600 option file that is removed when the call ends.
requirements:
  - PyMySQL on the host that talks to the databases (the controller, unless C(migration_host) names another).
  - mariadb-dump/mysqldump and mariadb/mysql clients for cross-server copies (PyMySQL streaming is the fallback).
"""
