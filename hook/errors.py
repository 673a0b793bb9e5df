"""The two ways a hook run ends badly; both print one line on stderr and exit non-zero."""

from __future__ import annotations


class HookFailure(Exception):
    """Bad input: a malformed state or config.json, an unreadable key. Exit status 2."""

    exit_code = 2


class Refused(Exception):
    """A container the hook will not let start; the message says why and what to do. Exit status 1."""

    exit_code = 1
