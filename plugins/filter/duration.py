# -*- coding: utf-8 -*-
# Copyright: contributors to wfu.multisite
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: duration
short_description: Seconds as H:MM:SS
version_added: 0.1.0
description:
  - Formats a number of seconds as C(H:MM:SS) for progress lines; C(?) for a missing value.
options:
  _input:
    description: Seconds.
    type: raw
    required: true
author:
  - WFU Web Platform Team (@wfu)
"""

EXAMPLES = r"""
- name: Show an elapsed time
  ansible.builtin.debug:
    msg: "{{ 3725 | wfu.multisite.duration }}"  # 1:02:05
"""

RETURN = r"""
_value:
  description: The duration as C(H:MM:SS).
  type: str
"""


def duration(seconds):
    """Format seconds as H:MM:SS; '?' when unknown (no estimate yet)."""
    if seconds is None or seconds == "":
        return "?"
    try:
        total = int(round(float(seconds)))
    except (TypeError, ValueError):
        return "?"
    hours, rest = divmod(max(total, 0), 3600)
    minutes, secs = divmod(rest, 60)
    return "%d:%02d:%02d" % (hours, minutes, secs)


class FilterModule:
    """Filters of wfu.multisite."""

    def filters(self):
        return {"duration": duration}
