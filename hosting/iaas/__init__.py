"""IaaS: hypervisor drivers, VM lifecycle and guest images. Knows nothing of containers."""

from hosting.iaas.accel import Accel, detect_accel
from hosting.iaas.guest_image import (
    ImageBuildError,
    NodeImage,
    build_node_image,
    find_node_image,
    fw_cfg_args,
    recipe_digest,
)

__all__ = [
    "Accel",
    "ImageBuildError",
    "NodeImage",
    "build_node_image",
    "detect_accel",
    "find_node_image",
    "fw_cfg_args",
    "recipe_digest",
]
