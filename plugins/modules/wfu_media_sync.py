#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: contributors to wfu.multisite
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: wfu_media_sync
short_description: Copy one site's media (uploads) from one environment to another
version_added: 0.2.0
description:
  - Makes the target environment's media of one site equal to the source's. Site N (N >= 2) owns C(sites/N/)
    under the media root; the network's main site (O(main_site_id)) owns everything under the root except
    C(sites/).
  - Nothing outside the site's part of the target is listed, so nothing outside it is touched.
  - S3 to S3 copies server-side (C(CopyObject); C(UploadPartCopy) parts for objects above 64 MiB), S3 to a directory
    downloads each object to a temporary file that is renamed into place when complete, a directory to S3 uploads,
    and a directory to a directory runs C(rsync --archive).
  - Only new or changed objects are copied. S3 to S3, an object is unchanged when it has the same size and the same
    ETag, or the same size and the source's ETag in its metadata C(wfu-source-etag) (every copy writes it); S3 to a
    directory, when the file has the same size and the object's C(LastModified) as modification time (every
    download sets it); a directory to S3, when the object has the same size and the file's MD5 as ETag or in its
    metadata C(wfu-source-md5) (every upload writes it); between directories, rsync's size and modification time.
  - Objects of the target that the source lacks are deleted only with O(delete=true).
  - S3 credentials come from boto3's default chain only (C(AWS_*) environment variables, C(AWS_PROFILE), the
    instance or container role, e.g. what an AWX credential injects); no option takes a key.
  - A failed or interrupted call leaves every object either complete or absent (an unfinished multipart copy is
    aborted); calling it again copies only what is still missing.
  - In check mode nothing is written and RV(would_copy), RV(would_copy_bytes) and RV(would_delete) say what a real
    run would do.
author:
  - WFU Web Platform Team (@wfu)
options:
  source:
    description:
      - The source environment's C(media) setting (C(s3) or C(path)) with the environment's C(name) added, that is
        the environment's C(media) entry of C(wfu_environments) combined with C(name).
    type: dict
    required: true
    suboptions:
      name:
        description: The environment's name, for messages.
        type: str
        required: true
      s3:
        description: A bucket. Mutually exclusive with O(source.path).
        type: dict
        suboptions:
          bucket:
            description: The bucket's name.
            type: str
            required: true
          prefix:
            description: The key prefix of the uploads root (e.g. C(wp-content/uploads)); empty for the bucket's root.
            type: str
            default: ""
          region:
            description: The bucket's region; boto3's default (C(AWS_DEFAULT_REGION), the profile) when not given.
            type: str
          endpoint_url:
            description: The URL of an S3-compatible service instead of AWS S3.
            type: str
          access_key:
            description: &refused
              - Not accepted; the task fails when it is given. Credentials come from boto3's default chain only.
              - Declared so that a key given here by mistake is masked in logs and task output.
            type: str
            aliases: [aws_access_key_id, aws_access_key]
          secret_key:
            description: *refused
            type: str
            aliases: [aws_secret_access_key, aws_secret_key]
          session_token:
            description: *refused
            type: str
            aliases: [aws_session_token, security_token]
      path:
        description:
          - The uploads directory (e.g. C(/var/www/html/wp-content/uploads)) on the host that runs the module.
          - Mutually exclusive with O(source.s3).
        type: path
  target:
    description:
      - The target environment's C(media) setting (C(s3) or C(path)) with the environment's C(name) added, that is
        the environment's C(media) entry of C(wfu_environments) combined with C(name).
    type: dict
    required: true
    suboptions:
      name:
        description: The environment's name, for messages.
        type: str
        required: true
      s3:
        description: A bucket. Mutually exclusive with O(target.path).
        type: dict
        suboptions:
          bucket:
            description: The bucket's name.
            type: str
            required: true
          prefix:
            description: The key prefix of the uploads root (e.g. C(wp-content/uploads)); empty for the bucket's root.
            type: str
            default: ""
          region:
            description: The bucket's region; boto3's default (C(AWS_DEFAULT_REGION), the profile) when not given.
            type: str
          endpoint_url:
            description: The URL of an S3-compatible service instead of AWS S3.
            type: str
          access_key:
            description: *refused
            type: str
            aliases: [aws_access_key_id, aws_access_key]
          secret_key:
            description: *refused
            type: str
            aliases: [aws_secret_access_key, aws_secret_key]
          session_token:
            description: *refused
            type: str
            aliases: [aws_session_token, security_token]
      path:
        description:
          - The uploads directory (e.g. C(/var/www/html/wp-content/uploads)) on the host that runs the module.
          - Mutually exclusive with O(target.s3).
        type: path
  site_id:
    description: The blog id of the site whose media is copied.
    type: int
    required: true
  main_site_id:
    description: The blog id of the network's main site (the one whose uploads are the root, not C(sites/N/)).
    type: int
    default: 1
  delete:
    description:
      - Delete the objects of the site in the target that the source does not have.
      - Refused (nothing is changed) when the source's root holds nothing at all, which is most likely a wrong
        bucket, prefix or path rather than a request to empty the site.
    type: bool
    default: false
  timeout:
    description:
      - Seconds the call may take (0 for no limit). When they have passed it stops between objects (or kills
        rsync) and fails with C(reason=timeout); what was copied stays and is not copied again.
      - Whatever the limit, the call stops as soon as the C(ansible-playbook) that started it is gone (killed with
        its process group, an AWX cancel), and its rsync with it.
    type: int
    default: 0
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
  platform:
    platforms: posix
  idempotent:
    description: Whether a second run with the same arguments changes nothing.
    support: full
    details: A second run copies nothing and reports no change.
requirements:
  - boto3 on the host that runs the module, when either side is in S3.
  - rsync on the host that runs the module, when both sides are directories.
notes:
  - Object ACLs are not copied (the target bucket's own settings apply); content type, cache control, content
    disposition, encoding, language and user metadata are.
  - An unfinished multipart copy of a process that was killed stays in the bucket until a lifecycle rule for
    incomplete multipart uploads removes it.
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
"""

EXAMPLES = r"""
- name: Copy the media of site 43 from prod's bucket to uat's
  wfu.multisite.wfu_media_sync:
    source: "{{ wfu_environments.prod.media | combine({'name': 'prod'}) }}"
    target: "{{ wfu_environments.uat.media | combine({'name': 'uat'}) }}"
    site_id: 43
    timeout: 1800
  register: media43

- name: Mirror the main site's uploads between two directories, deleting what the source no longer has
  wfu.multisite.wfu_media_sync:
    source: {name: dev, path: /srv/dev/wp-content/uploads}
    target: {name: local, path: /srv/local/wp-content/uploads}
    site_id: 1
    delete: true
"""

RETURN = r"""
site_id:
  description: The site whose media was synced.
  returned: always
  type: int
source:
  description: The site's part of the source (C(s3://bucket/prefix/sites/N/) or a directory).
  returned: success
  type: str
  sample: s3://wfu-uploads-dev/wp-content/uploads/sites/43/
target:
  description: The site's part of the target.
  returned: success
  type: str
  sample: s3://wfu-uploads-uat/wp-content/uploads/sites/43/
method:
  description: How the objects travelled (C(s3_copy), C(s3_download), C(s3_upload) or C(rsync)).
  returned: success
  type: str
check_mode:
  description: Whether this was a check-mode run (only the C(would_*) counts are then set).
  returned: success
  type: bool
copied:
  description: Objects copied (new or changed); 0 in check mode.
  returned: success
  type: int
copied_bytes:
  description: Bytes of the objects copied.
  returned: success
  type: int
unchanged:
  description: Objects left alone because the target holds them unchanged.
  returned: success
  type: int
deleted:
  description: Objects deleted from the target (only with O(delete=true)); 0 in check mode.
  returned: success
  type: int
would_copy:
  description: In check mode, the objects a real run would copy; 0 otherwise.
  returned: success
  type: int
would_copy_bytes:
  description: In check mode, the bytes a real run would copy.
  returned: success
  type: int
would_delete:
  description: In check mode, the objects a real run would delete.
  returned: success
  type: int
failure_class:
  description: On failure, C(systemic) (connection, credentials, disk full, a wrong setting) or C(site).
  returned: failure
  type: str
reason:
  description: On failure, why (C(connection), C(access), C(configuration), C(disk_full), C(timeout), C(site_data), ...).
  returned: failure
  type: str
phase:
  description: On failure, C(media).
  returned: failure
  type: str
hint:
  description: On failure, what to do next.
  returned: failure
  type: str
counts:
  description: On failure, what had been done before it (the same keys as a successful result).
  returned: failure
  type: dict
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.wfu.multisite.plugins.module_utils.deadline import Deadline
from ansible_collections.wfu.multisite.plugins.module_utils.errors import MigrationError, failure_result
from ansible_collections.wfu.multisite.plugins.module_utils.media import media_location, sync_site_media
from ansible_collections.wfu.multisite.plugins.module_utils.processes import find_playbook_pid


def location_option():
    s3 = dict(
        bucket=dict(type="str", required=True),
        prefix=dict(type="str", default=""),
        region=dict(type="str"),
        endpoint_url=dict(type="str"),
        # Refused by media_location(); declared so that Ansible masks a key given by mistake.
        access_key=dict(type="str", no_log=True, aliases=["aws_access_key_id", "aws_access_key"]),
        secret_key=dict(type="str", no_log=True, aliases=["aws_secret_access_key", "aws_secret_key"]),
        session_token=dict(type="str", no_log=True, aliases=["aws_session_token", "security_token"]),
    )
    return dict(type="dict", required=True, mutually_exclusive=[("s3", "path")], required_one_of=[("s3", "path")],
                options=dict(name=dict(type="str", required=True), s3=dict(type="dict", options=s3),
                             path=dict(type="path")))


def main():
    module = AnsibleModule(
        argument_spec=dict(
            source=location_option(),
            target=location_option(),
            site_id=dict(type="int", required=True),
            main_site_id=dict(type="int", default=1),
            delete=dict(type="bool", default=False),
            timeout=dict(type="int", default=0),
        ),
        supports_check_mode=True,
    )
    params = module.params
    try:
        source = media_location(params["source"]["name"], params["source"])
        target = media_location(params["target"]["name"], params["target"])
        # The time limit is checked between objects; this one only watches the playbook: when it is gone (a kill of
        # its process group, an AWX cancel) the sync stops at once, its rsync with it.
        watch = Deadline()
        with watch.armed(), watch.stop_when_gone(find_playbook_pid()):
            result = sync_site_media(source, target, params["site_id"], main_site_id=params["main_site_id"],
                                     delete=params["delete"], check_mode=module.check_mode,
                                     deadline=Deadline(max(0, params["timeout"])))
    except MigrationError as exc:
        module.fail_json(counts=getattr(exc, "counts", {}), **failure_result(exc, site_id=params["site_id"]))
    module.exit_json(changed=result.changed, **result.as_dict())


if __name__ == "__main__":
    main()
