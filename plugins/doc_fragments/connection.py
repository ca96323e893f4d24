# -*- coding: utf-8 -*-
# Copyright: contributors to wfu.multisite
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:
    """Connection options shared by the modules of the collection (each fragment is literal YAML)."""

    DOCUMENTATION = r"""
options: {}
attributes:
  idempotent:
    description: Whether a second run with the same arguments changes nothing.
notes:
  - Passwords are never placed on a command line nor written to disk; the MariaDB command-line tools receive them
    through an anonymous in-memory option file (0600) that disappears with the module process, however it ends.
  - Every connection and statement is bounded in time (connect, read and write timeouts); a server that accepts
    connections but does not answer is reported as C(server_not_answering), naming the database.
requirements:
  - PyMySQL on the host that talks to the databases (the controller, unless C(migration_host) names another).
  - The mariadb-dump and mariadb (or mysqldump and mysql) clients for copies between servers; without them rows are
    streamed through PyMySQL.
"""

    DB = r"""
options:
  db:
    description: Connection to the network's database.
    type: dict
    required: true
    suboptions:
      host:
        description: Server host name or address.
        type: str
      port:
        description: Server port (3306 when not given).
        type: int
      user:
        description: User name.
        type: str
      password:
        description: Password. Never logged, never placed on a command line.
        type: str
      database:
        description: The database.
        type: str
      config_file:
        description:
          - A C([client]) option file whose values fill the keys not given here (the way to pass AWX credentials).
        type: path
      unix_socket:
        description: Unix socket path, used instead of host and port.
        type: path
      ssl:
        description: TLS settings.
        type: dict
        suboptions:
          ca:
            description: CA certificate file.
            type: path
          cert:
            description: Client certificate file.
            type: path
          key:
            description: Client key file.
            type: path
          verify_server_cert:
            description: Verify the server's certificate.
            type: bool
            default: true
"""

    MIGRATION_DB = r"""
options:
  migration_db:
    description:
      - The migration database, where site tables are transformed. It must not be any environment's database.
    type: dict
    required: true
    suboptions:
      host:
        description: Server host name or address.
        type: str
      port:
        description: Server port (3306 when not given).
        type: int
      user:
        description: User name.
        type: str
      password:
        description: Password. Never logged, never placed on a command line.
        type: str
      database:
        description: The database.
        type: str
      config_file:
        description:
          - A C([client]) option file whose values fill the keys not given here (the way to pass AWX credentials).
        type: path
      unix_socket:
        description: Unix socket path, used instead of host and port.
        type: path
      ssl:
        description: TLS settings.
        type: dict
        suboptions:
          ca:
            description: CA certificate file.
            type: path
          cert:
            description: Client certificate file.
            type: path
          key:
            description: Client key file.
            type: path
          verify_server_cert:
            description: Verify the server's certificate.
            type: bool
            default: true
"""

    STATE_DB = r"""
options:
  state_db:
    description:
      - The database of the V(database) state backend (O(state_backend=database)) - C(wfu_state_db), else
        C(wfu_migration_db). Its tables are named C(wfu_state_*), which no sweep touches.
      - Required with O(state_backend=database); ignored with V(files).
    type: dict
    suboptions:
      host:
        description: Server host name or address.
        type: str
      port:
        description: Server port (3306 when not given).
        type: int
      user:
        description: User name.
        type: str
      password:
        description: Password. Never logged, never placed on a command line.
        type: str
      database:
        description: The database.
        type: str
      config_file:
        description:
          - A C([client]) option file whose values fill the keys not given here (the way to pass AWX credentials).
        type: path
      unix_socket:
        description: Unix socket path, used instead of host and port.
        type: path
      ssl:
        description: TLS settings.
        type: dict
        suboptions:
          ca:
            description: CA certificate file.
            type: path
          cert:
            description: Client certificate file.
            type: path
          key:
            description: Client key file.
            type: path
          verify_server_cert:
            description: Verify the server's certificate.
            type: bool
            default: true
"""

    CLEANUP = r"""
options:
  target:
    description:
      - Connection to the target environment's database, to drop staging and replaced tables there too.
    type: dict
    suboptions:
      host:
        description: Server host name or address.
        type: str
      port:
        description: Server port (3306 when not given).
        type: int
      user:
        description: User name.
        type: str
      password:
        description: Password. Never logged, never placed on a command line.
        type: str
      database:
        description: The database.
        type: str
      config_file:
        description:
          - A C([client]) option file whose values fill the keys not given here (the way to pass AWX credentials).
        type: path
      unix_socket:
        description: Unix socket path, used instead of host and port.
        type: path
      ssl:
        description: TLS settings.
        type: dict
        suboptions:
          ca:
            description: CA certificate file.
            type: path
          cert:
            description: Client certificate file.
            type: path
          key:
            description: Client key file.
            type: path
          verify_server_cert:
            description: Verify the server's certificate.
            type: bool
            default: true
  protected_databases:
    description:
      - The databases of every environment; the cleanup refuses a migration database that is one of them.
    type: list
    elements: dict
    default: []
    suboptions:
      name:
        description: The environment's name, for messages.
        type: str
      host:
        description: Server host name or address.
        type: str
      port:
        description: Server port (3306 when not given).
        type: int
      user:
        description: User name.
        type: str
      password:
        description: Password. Never logged, never placed on a command line.
        type: str
      database:
        description: The database.
        type: str
      config_file:
        description:
          - A C([client]) option file whose values fill the keys not given here (the way to pass AWX credentials).
        type: path
      unix_socket:
        description: Unix socket path, used instead of host and port.
        type: path
      ssl:
        description: TLS settings.
        type: dict
        suboptions:
          ca:
            description: CA certificate file.
            type: path
          cert:
            description: Client certificate file.
            type: path
          key:
            description: Client key file.
            type: path
          verify_server_cert:
            description: Verify the server's certificate.
            type: bool
            default: true
"""

    ENVIRONMENTS = r"""
options:
  source:
    description:
      - "The environment the tables come from: C(wfu_environments[source_env]) combined with C({name: source_env})."
    type: dict
    required: true
    suboptions: &environment
      name:
        description: The environment's name in C(wfu_environments) (dev, uat, pprd, prod, local, ...).
        type: str
        required: true
      url:
        description:
          - The network's main site URL in this environment; scheme, host (with port) and base path are used.
        type: str
        required: true
      table_prefix:
        description: The environment's table prefix.
        type: str
        default: wp_
      subsite_domain:
        description:
          - The domain under which the subdomain sites live (default the host of C(url)), for example
            C(wfu.edu) when the main site is C(www.wfu.edu) and a subsite is C(news.wfu.edu).
        type: str
      site_domains:
        description: Addresses of sites whose domain follows no pattern, keyed by blog id.
        type: dict
      aliases:
        description:
          - Named host names of this environment (CDN host, media bucket); a name present in both environments
            makes a rule from the source's value to the target's.
        type: dict
      extra_replacements:
        description: Literal pairs applied first when this environment is the source.
        type: list
        elements: dict
        suboptions:
          search:
            description: Text to find.
            type: str
            required: true
          replace:
            description: Its replacement.
            type: str
            required: true
          targets:
            description: Apply only when migrating to these environments.
            type: list
            elements: str
      media:
        description:
          - The environment's media setting (C(s3) or C(path)). Not used here - M(wfu.multisite.wfu_media_sync)
            reads it; accepted so that the whole environment can be given.
        type: dict
      preserve_options:
        description:
          - As the target, the site options whose target values a migration keeps for a site the target already has
            (C(blog_public), C(admin_email), C(active_plugins)...); a site new to the target keeps the source's.
        type: list
        elements: str
      preserve_sitemeta:
        description:
          - As the target, the network options (C(wp_sitemeta) meta keys) whose target values the network tables'
            migration keeps (C(active_sitewide_plugins)...).
        type: list
        elements: str
      db:
        description: Connection to the environment's database.
        type: dict
        required: true
        suboptions:
          host:
            description: Server host name or address.
            type: str
          port:
            description: Server port (3306 when not given).
            type: int
          user:
            description: User name.
            type: str
          password:
            description: Password. Never logged, never placed on a command line.
            type: str
          database:
            description: The database.
            type: str
          config_file:
            description:
              - A C([client]) option file whose values fill the keys not given here (the way to pass AWX credentials).
            type: path
          unix_socket:
            description: Unix socket path, used instead of host and port.
            type: path
          ssl:
            description: TLS settings.
            type: dict
            suboptions:
              ca:
                description: CA certificate file.
                type: path
              cert:
                description: Client certificate file.
                type: path
              key:
                description: Client key file.
                type: path
              verify_server_cert:
                description: Verify the server's certificate.
                type: bool
                default: true
  target:
    description: The environment the tables go to, in the same shape as O(source).
    type: dict
    required: true
    suboptions: *environment
"""

    TARGET_ENVIRONMENT = r"""
options:
  target:
    description:
      - "The target environment: C(wfu_environments[target_env]) combined with C({name: target_env}), as given to
        M(wfu.multisite.wfu_site_migrate)."
    type: dict
    required: true
    suboptions:

      name:
        description: The environment's name in C(wfu_environments) (dev, uat, pprd, prod, local, ...).
        type: str
        required: true
      url:
        description:
          - The network's main site URL in this environment; scheme, host (with port) and base path are used.
        type: str
        required: true
      table_prefix:
        description: The environment's table prefix.
        type: str
        default: wp_
      subsite_domain:
        description:
          - The domain under which the subdomain sites live (default the host of C(url)), for example
            C(wfu.edu) when the main site is C(www.wfu.edu) and a subsite is C(news.wfu.edu).
        type: str
      site_domains:
        description: Addresses of sites whose domain follows no pattern, keyed by blog id.
        type: dict
      aliases:
        description:
          - Named host names of this environment (CDN host, media bucket); a name present in both environments
            makes a rule from the source's value to the target's.
        type: dict
      extra_replacements:
        description: Literal pairs applied first when this environment is the source.
        type: list
        elements: dict
        suboptions:
          search:
            description: Text to find.
            type: str
            required: true
          replace:
            description: Its replacement.
            type: str
            required: true
          targets:
            description: Apply only when migrating to these environments.
            type: list
            elements: str
      media:
        description:
          - The environment's media setting (C(s3) or C(path)). Not used here - M(wfu.multisite.wfu_media_sync)
            reads it; accepted so that the whole environment can be given.
        type: dict
      preserve_options:
        description:
          - As the target, the site options whose target values a migration keeps for a site the target already has
            (C(blog_public), C(admin_email), C(active_plugins)...); a site new to the target keeps the source's.
        type: list
        elements: str
      preserve_sitemeta:
        description:
          - As the target, the network options (C(wp_sitemeta) meta keys) whose target values the network tables'
            migration keeps (C(active_sitewide_plugins)...).
        type: list
        elements: str
      db:
        description: Connection to the environment's database.
        type: dict
        required: true
        suboptions:
          host:
            description: Server host name or address.
            type: str
          port:
            description: Server port (3306 when not given).
            type: int
          user:
            description: User name.
            type: str
          password:
            description: Password. Never logged, never placed on a command line.
            type: str
          database:
            description: The database.
            type: str
          config_file:
            description:
              - A C([client]) option file whose values fill the keys not given here (the way to pass AWX credentials).
            type: path
          unix_socket:
            description: Unix socket path, used instead of host and port.
            type: path
          ssl:
            description: TLS settings.
            type: dict
            suboptions:
              ca:
                description: CA certificate file.
                type: path
              cert:
                description: Client certificate file.
                type: path
              key:
                description: Client key file.
                type: path
              verify_server_cert:
                description: Verify the server's certificate.
                type: bool
                default: true
"""

    PIPELINE = r"""
options:
  backup:
    description:
      - Keep a backup of the target's current tables. They are always moved aside during the swap and dropped only
        once the new ones are verified; with O(backup_dir) they are also dumped to a gzip file before the swap.
    type: bool
    default: true
  backup_dir:
    description: Directory for backup dumps of the target's tables (on the host running the module).
    type: path
  backup_name:
    description:
      - With O(backup_dir), the name of this migration's backups (the migration id). The dump then goes to
        C(<backup_dir>/<backup_name>/site-<N>.sql.gz) (C(network.sql.gz) for the network tables) with a manifest
        beside it (C(site-<N>.json) - site, migration id, target environment and database, tables and their row
        counts, size and SHA-256 of the dump, the site's tables before, whether it was new to the target); a site
        new to the target gets a manifest without a dump.
      - An existing file is never overwritten - a second backup of the same site under the same name goes to
        C(site-<N>-2.sql.gz) (C(-3)...); the first one, the target as it was before the migration, is the one
        M(wfu.multisite.wfu_site_rollback) restores.
      - C(backup.file) of the result is then a mapping - C(path), C(manifest), C(size), C(sha256), C(tables) (rows by table)
        and C(new_to_target).
      - Without it the dump is C(<backup_dir>/<target>-<site-N|network>-<UTC timestamp>.sql.gz).
    type: str
  backup_s3:
    description:
      - With O(backup_dir) and O(backup_name), also upload each backup to this bucket, in the same layout -
        C(<prefix>/<backup_name>/site-<N>.sql.gz) and its manifest (uploaded last) - before the swap; a failed upload
        fails the call before the target is changed. C(backup.file.s3) of the result names the keys.
      - C(s3://bucket/prefix), or a mapping with C(bucket), C(prefix), C(region) and C(endpoint_url) (an
        S3-compatible service). Credentials come from boto3's default chain only (C(AWS_*) environment variables,
        C(AWS_PROFILE), the instance or container role).
    type: raw
  keep_backup_tables:
    description: Keep the replaced tables in the target as C(wfu_old__*) instead of dropping them once verified.
    type: bool
    default: false
  skip_columns:
    description:
      - Columns the search-replace leaves alone, as C(column) or C(table.column) (source table names).
        C(guid) is rewritten unless listed.
    type: list
    elements: str
    default: []
  work_dir:
    description:
      - Directory for temporary files (the client programs' error output, unlinked as soon as they are created);
        default the system temp directory.
    type: path
  timeout:
    description:
      - Seconds after which the call gives up, stops its statements on the servers (C(KILL QUERY)), cleans up and
        fails with C(timed_out=true); 0 means no limit. The socket timeouts of every statement follow it.
      - When a server did not answer in that time the failure is C(systemic) (reason C(server_not_answering)) and
        names the database; otherwise it is the site's (reason C(timeout)).
      - Set it below the task's C(timeout) keyword so the module cleans up itself before Ansible kills it.
    type: int
    default: 0
  lock_wait:
    description:
      - Seconds to wait for the server-side lock of the site (or of the network tables) when another run holds it;
        then the call fails as C(systemic) (reason C(site_in_use)), naming the connection that holds it.
    type: int
    default: 60
  exclude_transients:
    description:
      - Leave out transients at copy time - the site options C(_transient_*) and C(_site_transient_*) with their
        C(_timeout_) rows, and for the network tables the C(_site_transient_*) rows of C(wp_sitemeta).
      - WordPress rebuilds them on demand; the copy is verified against the source's rows net of them.
    type: bool
    default: false
"""
