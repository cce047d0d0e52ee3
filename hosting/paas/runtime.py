"""The node runtime: the one interface through which the platform touches a container engine.

A strict point of cut-off: the reconciler, the scheduler and the API speak only these verbs. `DockerRuntime`
implements them for any Docker engine aiodocker can reach (the host's socket, or a VM's socket forwarded
over SSH); nothing above this module knows it is Docker.
"""

from abc import ABC, abstractmethod
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from hosting.paas.cgroups import Counters

# Labels that mark a container as Strata's, and say whose and which copy it is.
PLATFORM_LABEL = "strata.platform"
TENANT_LABEL = "strata.tenant"
APP_LABEL = "strata.app"
REVISION_LABEL = "strata.revision"
INSTANCE_LABEL = "strata.instance"
VOLUMES_LABEL = "strata.volumes"  # the tenant's volumes the container mounts, comma-separated

# What an image may declare about itself (see hosting/paas/sample_images/*/Dockerfile).
READ_ONLY_ROOT_LABEL = "strata.read-only-root"
CAPABILITIES_LABEL = "strata.capabilities"
# The capabilities an image may ask for: Kubernetes' "baseline" Pod Security Standard (Docker's defaults less
# NET_RAW). A tenant writes its images' labels (a Dockerfile, a pushed image), so a label is a wish, never a
# grant: an image asking for more (SYS_ADMIN, NET_ADMIN, ...) gets no container at all, and says why.
GRANTABLE_CAPABILITIES = frozenset(
    {"AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD", "NET_BIND_SERVICE", "SETFCAP",
     "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT"}
)  # fmt: skip


class EngineError(Exception):
    """The engine refused or failed; the message is fit for an event or the API."""


class EngineUnavailable(EngineError):
    """The engine does not answer at all."""


def declared_capabilities(labels: dict[str, str]) -> list[str]:
    """The capabilities an image's labels ask for; raises `EngineError` naming any the platform never grants."""
    wanted = [cap.strip().upper().removeprefix("CAP_") for cap in labels.get(CAPABILITIES_LABEL, "").split(",")]
    wanted = [cap for cap in wanted if cap]
    refused = sorted(set(wanted) - GRANTABLE_CAPABILITIES)
    if refused:
        raise EngineError(
            f"the image asks for capabilities the platform never grants: {', '.join(refused)} "
            f"(label {CAPABILITIES_LABEL}; grantable: {', '.join(sorted(GRANTABLE_CAPABILITIES))})"
        )
    return wanted


class ImageMissing(EngineError):
    """The image is not on the node."""


class PullFailed(EngineError):
    """A registry refused or failed a pull; `reason` names it in one word, as Kubernetes' ErrImagePull does:
    NotFound, Unauthorized, Unreachable, NoSpace or Failed."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class BuildFailed(EngineError):
    """A build's Dockerfile failed (a step exited non-zero, a limit or the timeout was hit); the message says
    which, in the builder's words."""


@dataclass(frozen=True)
class RegistryAuth:
    """A login to a registry, sent with one pull and never kept by the runtime."""

    username: str
    password: str = field(repr=False)


@dataclass(frozen=True)
class PullProgress:
    """How far a pull is: bytes downloaded of what the layers announced so far (0 while unknown), and the
    engine's last status line (e.g. "Downloading", "Pull complete")."""

    done_bytes: int
    total_bytes: int
    status: str


@dataclass(frozen=True)
class BuildLimits:
    """What one build may use of its node: enforced by the engine on every build step's container."""

    cpu_millicores: int
    memory_mib: int


@dataclass(frozen=True)
class Capacity:
    cpu_millicores: int
    memory_mib: int


@dataclass(frozen=True)
class ImageInfo:
    id: str
    tags: list[str]
    size_bytes: int
    created: datetime
    labels: dict[str, str] = field(default_factory=dict)
    ports: list[int] = field(default_factory=list)  # the TCP ports it EXPOSEs, lowest first
    digests: list[str] = field(default_factory=list)  # `repo@sha256:...` of the registries it came from, if any
    onbuild: list[str] = field(default_factory=list)  # its ONBUILD triggers: run by a build FROM it


@dataclass(frozen=True)
class Mount:
    """A directory of the engine's machine (a volume's mount point) bound read-write at `target`."""

    source: str
    target: str


@dataclass(frozen=True)
class InstanceSpec:
    """Everything needed to create one instance's container; the limits are enforced by the engine."""

    platform: str
    tenant: str
    app: str
    revision: int
    instance: str
    image: str
    command: list[str] | None
    env: dict[str, str]
    port: int
    cpu_millicores: int
    memory_mib: int
    pids_limit: int
    network: str
    mounts: tuple[Mount, ...] = ()
    volumes: tuple[str, ...] = ()  # the names of the tenant's volumes `mounts` are

    @property
    def alias(self) -> str:
        """Its name on the tenant's network: the app's, so its tenant's other containers reach it by name."""
        return self.app

    @property
    def network_labels(self) -> dict[str, str]:
        """The labels of the tenant's network the instance joins."""
        return {PLATFORM_LABEL: self.platform, TENANT_LABEL: self.tenant}

    @property
    def labels(self) -> dict[str, str]:
        return {
            PLATFORM_LABEL: self.platform,
            TENANT_LABEL: self.tenant,
            APP_LABEL: self.app,
            REVISION_LABEL: str(self.revision),
            INSTANCE_LABEL: self.instance,
            **({VOLUMES_LABEL: ",".join(self.volumes)} if self.volumes else {}),
        }


@dataclass(frozen=True)
class Container:
    """An instance's container as the engine reports it now."""

    node: str
    id: str
    tenant: str
    app: str
    revision: int
    instance: str
    running: bool
    exit_code: int | None
    started_at: datetime | None
    endpoint: str | None  # 127.0.0.1:PORT reaching it from the platform's host, while running
    published: int | None = None  # the port it publishes on its engine's machine
    remembered: bool = False  # not seen now: its node does not answer, so this is what was known of it
    volumes: tuple[str, ...] = ()  # the tenant's volumes it mounts (as its label says)

    @staticmethod
    def volumes_of(labels: dict[str, str]) -> tuple[str, ...]:
        return tuple(name for name in labels.get(VOLUMES_LABEL, "").split(",") if name)


class ExecSession(ABC):
    """A command running inside a container, attached: bytes in, (stream, bytes) out, then an exit code."""

    @abstractmethod
    async def read(self) -> tuple[int, bytes] | None:
        """(1 for stdout or 2 for stderr, data), or None once the command's output has ended."""

    @abstractmethod
    async def write(self, data: bytes) -> None: ...

    @abstractmethod
    async def close_input(self) -> None:
        """End of input (the command sees EOF on its stdin)."""

    @abstractmethod
    async def resize(self, width: int, height: int) -> None: ...

    @abstractmethod
    async def exit_code(self) -> int | None:
        """The command's exit code, None while it runs."""

    @abstractmethod
    async def kill(self) -> None:
        """End the command and what it started (the engine does not when its client goes)."""


class NodeRuntime(ABC):
    """One container engine. Every method may raise `EngineUnavailable` or `EngineError`."""

    name: str

    @abstractmethod
    async def capacity(self) -> Capacity:
        """CPU and memory the engine's machine has."""

    @abstractmethod
    async def containers(self, platform: str) -> list[Container]:
        """Every container (running or not) labelled with this platform's id."""

    @abstractmethod
    async def ensure_network(self, name: str, labels: dict[str, str]) -> None:
        """Create the network if missing: one per tenant, so tenants cannot reach each other."""

    @abstractmethod
    async def networks(self, platform: str) -> dict[str, str]:
        """This platform's networks on the engine: name -> the tenant it is for."""

    @abstractmethod
    async def remove_network(self, name: str) -> None:
        """Remove a network; one gone already is fine, one still in use raises `EngineError`."""

    @abstractmethod
    async def create(self, spec: InstanceSpec) -> Container:
        """Create and start the instance's container; raises `ImageMissing` if the image is not here."""

    @abstractmethod
    async def start(self, container_id: str) -> Container:
        """Start an exited container again (a restart after a crash)."""

    @abstractmethod
    async def stop(self, container_id: str) -> None:
        """Stop the container and keep it (it is then seen as exited, and restarted)."""

    @abstractmethod
    async def pause(self, container_id: str) -> None:
        """Freeze the container's processes (the cgroup freezer): nothing it does runs until `unpause`."""

    @abstractmethod
    async def unpause(self, container_id: str) -> None: ...

    @abstractmethod
    async def run_once(self, image: str, command: list[str], mounts: tuple[Mount, ...]) -> tuple[int, str]:
        """Run `command` in a throwaway container of `image` (on the node already: never pulled) with `mounts`,
        no network, no capabilities, as nobody, and return its exit code and output (stdout and stderr)."""

    @abstractmethod
    async def remove(self, container_id: str) -> None:
        """Stop (briefly gracefully) and delete the container; a container already gone is fine."""

    @abstractmethod
    def logs(self, container_id: str, *, follow: bool, since: int | None) -> AsyncIterator[str]:
        """The container's output lines (stdout and stderr), from `since` (unix time) on."""

    @abstractmethod
    async def counters(self, container_ids: Sequence[str]) -> dict[str, Counters]:
        """The CPU and memory counters of those of the containers that run, read in one go (their cgroups'
        files on the engine's machine: one command on a VM node)."""

    @abstractmethod
    async def exec(self, container_id: str, command: list[str], *, tty: bool) -> ExecSession:
        """Start `command` in the container, attached (with a terminal if `tty`)."""

    @abstractmethod
    async def images(self) -> list[ImageInfo]:
        """The images on the node."""

    @abstractmethod
    async def image(self, reference: str) -> ImageInfo | None:
        """One image by reference, or None if the node does not have it."""

    @abstractmethod
    def pull(self, reference: str, auth: RegistryAuth | None) -> AsyncIterator[PullProgress]:
        """Pull `reference` from its registry, yielding progress; raises `PullFailed` saying why."""

    @abstractmethod
    def build(
        self,
        context: bytes | AsyncIterable[bytes],
        tag: str,
        *,
        limits: BuildLimits | None = None,
        labels: dict[str, str] | None = None,
        cache_from: list[str] | None = None,
        network: str | None = None,
    ) -> AsyncGenerator[str, None]:
        """Build `tag` from a tar build context (its `Dockerfile`; FROM scratch or local images), yielding the
        builder's output line by line; `labels` are set on the image (over any the Dockerfile sets), `limits`
        cap every step, and its RUN steps join `network` (None: the engine's default bridge). `cache_from` None
        uses the engine's whole build cache (the platform's own images); a list reuses only the steps of those
        images (their ids or tags) and an empty one none at all, so that a tenant's build never gets another
        tenant's cached step (and its output). Raises `BuildFailed` in the builder's words (a step failed, the
        timeout passed). Closing the iterator early stops the build on the engine."""

    @abstractmethod
    async def delete_image(self, reference: str) -> None:
        """Remove a tag (and the image, once no tag or container holds it); one gone already is fine, one a
        container uses raises `EngineError`."""

    @abstractmethod
    def save(self, reference: str) -> AsyncIterator[bytes]:
        """The image as a `docker save` archive, streamed."""

    @abstractmethod
    async def load(self, archive: AsyncIterable[bytes]) -> list[str]:
        """Load a `docker save` archive; returns the tags it brought."""

    @abstractmethod
    async def close(self) -> None:
        """Release connections."""
