"""A non-loopback address of this machine, for tests of who may connect from outside.

A connection to it from this machine arrives from it too, so the server sees
a non-loopback peer, as it would a neighbour's. When the machine has none,
one is added to the ``lo`` interface (root only; a routable address there is
still not a loopback address) and removed at exit.
"""

from __future__ import annotations

import atexit
import functools
import ipaddress
import socket
import subprocess

import pytest

ADDED = "198.51.100.77"  # TEST-NET-2: never a real neighbour's address


@functools.cache
def outside_address() -> str:
    """This machine's non-loopback IPv4 address; the test is skipped, saying why, if none."""
    found = _routed_address()
    if found is not None:
        return found
    if _assigned(ADDED):  # left by an earlier run stopped before its exit handlers
        return ADDED
    if not _ip("add"):
        pytest.skip("no non-loopback IPv4 address, and none can be added (needs root and `ip`)")
    atexit.register(_ip, "del")
    return ADDED


def _routed_address() -> str | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # no packet is sent: this only picks a route
        except OSError:
            return None
        address = str(probe.getsockname()[0])
    return None if ipaddress.ip_address(address).is_loopback else address


def _assigned(address: str) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind((address, 0))
        except OSError:
            return False
    return True


def _ip(action: str) -> bool:
    command = ["ip", "addr", action, f"{ADDED}/32", "dev", "lo"]
    try:
        return subprocess.run(command, capture_output=True, check=False, timeout=10).returncode == 0
    except OSError:
        return False
