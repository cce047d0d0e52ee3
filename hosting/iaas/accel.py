"""Which accelerator QEMU can use here: KVM when `/dev/kvm` runs stock kernels, TCG otherwise.

A nested PVM device (`kvm_pvm`) shows up as `/dev/kvm` but cannot run a stock Debian kernel (it fails on
MSRs and `cmpxchg16b`), so it counts as unusable and the reason is said wherever the accel is shown.
"""

import os
from dataclasses import dataclass
from pathlib import Path

KVM_DEVICE = Path("/dev/kvm")
PVM_MODULE = Path("/sys/module/kvm_pvm")


@dataclass(frozen=True)
class Accel:
    name: str  # "kvm" or "tcg"
    reason: str | None = None  # why not kvm

    def __str__(self) -> str:
        return f"{self.name} (kvm unusable: {self.reason})" if self.reason else self.name

    @property
    def qemu_args(self) -> list[str]:
        if self.name == "kvm":
            return ["-accel", "kvm", "-cpu", "host"]
        return ["-accel", "tcg,thread=multi,tb-size=256", "-cpu", "max"]


def detect_accel(device: Path = KVM_DEVICE, pvm_module: Path = PVM_MODULE) -> Accel:
    if not device.exists():
        return Accel("tcg", "no /dev/kvm")
    if pvm_module.exists():
        return Accel("tcg", "pvm")
    if not os.access(device, os.R_OK | os.W_OK):
        return Accel("tcg", f"no permission on {device}")
    return Accel("kvm")
