"""The host keys an OpenSSH known_hosts file pins, and revokes, for one server.

Read here rather than with paramiko's ``HostKeys``, which skips ``@revoked`` lines (a
revoked key would then pass as unknown, or be accepted from another line) and matches
host names literally (no ``*``/``?`` patterns, no ``!`` negation, so ``[host]:port``
patterns and the lines people write by hand are missed). paramiko still reads each
line's key (``HostKeyEntry``) and hashes names for ``|1|`` entries.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import paramiko
from paramiko.hostkeys import HostKeyEntry


@dataclass
class PinnedKeys:
    """What a known_hosts file says about one ``host`` or ``[host]:port``."""

    keys: list[paramiko.PKey] = field(default_factory=list)
    revoked: list[paramiko.PKey] = field(default_factory=list)

    @classmethod
    def parse(cls, text: str, name: str) -> PinnedKeys:
        """Read OpenSSH's format: plain, hashed (``|1|``), wildcard and negated names, ``@revoked`` lines.

        Lines paramiko cannot read (other key types, damaged lines) and ``@cert-authority`` lines
        (host certificates are not supported) are skipped, as OpenSSH skips what it cannot use.
        """
        found = cls()
        for number, raw in enumerate(text.splitlines(), start=1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            marker = ""
            if line.startswith("@"):
                marker, _, line = line.partition(" ")
                if marker not in {"@revoked", "@cert-authority"}:
                    continue
            try:
                entry = HostKeyEntry.from_line(line.strip(), number)
            except Exception:  # noqa: BLE001 - paramiko's InvalidHostKey and base64/key errors: skip the line
                continue
            if entry is None or entry.key is None or not _host_matches(entry.hostnames, name):
                continue
            if marker == "@revoked":
                found.revoked.append(entry.key)
            elif not marker:
                found.keys.append(entry.key)
        return found


def _host_matches(patterns: list[str], name: str) -> bool:
    """OpenSSH's rule: one pattern matches and no negated (``!``) pattern does."""
    matched = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        pattern = pattern[1:] if negated else pattern
        if pattern.startswith("|1|"):
            hit = paramiko.HostKeys.hash_host(name, pattern) == pattern
        elif "*" in pattern or "?" in pattern:
            regex = re.escape(pattern.lower()).replace(r"\*", ".*").replace(r"\?", ".")
            hit = re.fullmatch(regex, name.lower()) is not None
        else:
            hit = pattern.lower() == name.lower()
        if hit and negated:
            return False
        matched = matched or hit
    return matched


def same_key(one: paramiko.PKey, other: paramiko.PKey) -> bool:
    return one.get_name() == other.get_name() and one.asbytes() == other.asbytes()


def describe_key(key: paramiko.PKey) -> str:
    """``ED25519 key SHA256:...``, the way OpenSSH names a key."""
    return f"{key.algorithm_name} key {key.fingerprint}"
