"""VM sizes, as Nova's flavors: a name for a fixed amount of CPU, memory and disk."""

from dataclasses import dataclass


@dataclass(frozen=True)
class Flavor:
    name: str
    vcpus: int
    memory_mib: int
    disk_gib: int


FLAVORS = {
    flavor.name: flavor
    for flavor in (
        Flavor("small", vcpus=1, memory_mib=1024, disk_gib=4),
        Flavor("medium", vcpus=2, memory_mib=2048, disk_gib=8),
        Flavor("large", vcpus=2, memory_mib=4096, disk_gib=16),
    )
}


def flavor(name: str) -> Flavor:
    """The flavor called `name`; ValueError names the ones there are."""
    try:
        return FLAVORS[name]
    except KeyError:
        raise ValueError(f"no flavor {name!r}; flavors: {', '.join(FLAVORS)}") from None
