"""The host side of VM networking: loopback only."""

import socket

LOOPBACK = "127.0.0.1"


def free_port() -> int:
    """A port of 127.0.0.1 that is free now."""
    with socket.socket() as probe:
        probe.bind((LOOPBACK, 0))
        return probe.getsockname()[1]


GUEST_ADDRESS = "10.0.2.15"  # the guest's own address on QEMU's user network, where forwards arrive
