"""IaaS: hypervisor drivers, VM lifecycle and guest images. Knows nothing of containers."""

from hosting.iaas.accel import Accel, detect_accel

__all__ = ["Accel", "detect_accel"]
