"""`NodeRuntime` for a Docker engine, through aiodocker.

Containers get the hardening the platform promises whatever the image: CPU, memory (no swap) and pids
limits, no new privileges, every capability dropped but those the image declares of a few harmless ones
(`GRANTABLE_CAPABILITIES`), a read-only root where
the image declares it can run so, the app port published where its `EngineHost` says (127.0.0.1 on this
host; a VM's forwards otherwise), and the tenant's own network.
"""

import asyncio
import os
import signal
from abc import ABC, abstractmethod
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import aiodocker
import aiohttp
from aiodocker.jsonstream import json_stream_stream
from aiodocker.networks import DockerNetwork
from aiodocker.utils import compose_auth_header

from hosting.paas.cgroups import CGROUP_ROOT, Counters, Layout, read_files
from hosting.paas.docker_build import stream_build
from hosting.paas.docker_exec import DockerExec
from hosting.paas.engine_events import ListingWatch
from hosting.paas.runtime import (
    APP_LABEL,
    INSTANCE_LABEL,
    PLATFORM_LABEL,
    READ_ONLY_ROOT_LABEL,
    REVISION_LABEL,
    TENANT_LABEL,
    BuildLimits,
    Capacity,
    Container,
    EngineError,
    EngineUnavailable,
    ExecSession,
    ImageInfo,
    ImageMissing,
    InstanceSpec,
    Mount,
    NodeRuntime,
    PullFailed,
    PullProgress,
    RegistryAuth,
    declared_capabilities,
)
from hosting.paas.subnets import PoolExhausted, free_subnet, host_routes, subnets_of
from tenants.references import canonical

MIB = 1024 * 1024
SAVE_CHUNK_BYTES = 256 * 1024
STOP_TIMEOUT_SECONDS = 5
API_TIMEOUT_SECONDS = 30
NETWORK_ATTEMPTS = 3  # a subnet taken between listing and creating is tried again
TMPFS = {"/tmp": "rw,noexec,nosuid,size=64m"}  # writable scratch space for read-only roots
LOG_OPTIONS = {"Type": "json-file", "Config": {"max-size": "10m", "max-file": "3"}}
RUNNING_STATES = frozenset({"running", "paused"})  # a listing's states in which inspect says the container runs
PULL_STALL_SECONDS = 120  # a pull whose engine reports nothing for this long has failed


class EngineHost(ABC):
    """The machine a Docker engine runs on, as far as the runtime must know it: where containers publish
    their port, how a published port is reached from here, and how to end a process of an exec."""

    publish_ip: str

    @abstractmethod
    async def endpoint(self, port: int) -> str:
        """HOST:PORT reaching the engine's published `port` from the platform's host."""

    @abstractmethod
    async def retain(self, ports: set[int]) -> None:
        """Only these published ports are in use now: what was set up for any other may go."""

    @abstractmethod
    async def kill(self, pid: int) -> None:
        """SIGKILL the process `pid` of the engine's machine, and the process group it leads, if it does."""

    @abstractmethod
    async def cgroup_files(self, paths: list[str]) -> dict[str, str]:
        """The text of each of the machine's cgroup files `paths` (relative to its cgroup root) that exists."""

    @abstractmethod
    async def routes(self) -> list[str]:
        """The destinations of the machine's IPv4 routes (its LAN, other bridges): no tenant network overlaps one."""


class ThisHost(EngineHost):
    """The engine of the platform's own host: ports published on 127.0.0.1 and reached as they are."""

    publish_ip = "127.0.0.1"

    async def endpoint(self, port: int) -> str:
        return f"{self.publish_ip}:{port}"

    async def retain(self, ports: set[int]) -> None:
        pass

    async def kill(self, pid: int) -> None:
        try:
            if os.getpgid(pid) == pid:
                os.killpg(pid, signal.SIGKILL)
            else:
                os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    async def cgroup_files(self, paths: list[str]) -> dict[str, str]:
        return await asyncio.to_thread(read_files, CGROUP_ROOT, paths)

    async def routes(self) -> list[str]:
        return host_routes()


class DockerRuntime(NodeRuntime):
    def __init__(self, name: str, url: str, host: EngineHost | None = None) -> None:
        self.name = name
        self.url = url
        self.host = host or ThisHost()
        self._docker: aiodocker.Docker | None = None
        self._networks: set[str] = set()
        self._seen: dict[tuple[str, str], Container | None] = {}  # (id, state) -> what inspect said
        self._watch = ListingWatch(name)  # the engine's events: whether the last listing still holds
        self._layout: Layout | None = None  # where its containers' cgroups are, once asked
        self._network_lock = asyncio.Lock()
        self._closed = False

    @property
    def docker(self) -> aiodocker.Docker:
        if self._closed:
            raise EngineUnavailable(f"the connection to docker on {self.name} is closed")
        if self._docker is None:  # created lazily: aiodocker needs a running event loop
            self._docker = aiodocker.Docker(url=self.url, timeout=aiohttp.ClientTimeout(total=API_TIMEOUT_SECONDS))
        return self._docker

    async def capacity(self) -> Capacity:
        info = await self._call(self.docker.system.info())
        return Capacity(cpu_millicores=info["NCPU"] * 1000, memory_mib=info["MemTotal"] // MIB)

    async def containers(self, platform: str) -> list[Container]:
        """The last listing again while the engine's events say nothing changed (`engine_events`), else
        `list_containers`."""
        self._watch.follow(self.docker, platform)
        found = self._watch.kept(platform)
        if found is None:
            mark = self._watch.listing()
            found = await self.list_containers(platform)
            self._watch.keep(mark, platform, found)
        await self.host.retain({c.published for c in found if c.published is not None})
        return found

    async def list_containers(self, platform: str) -> list[Container]:
        """The engine asked (one list call), whatever its events said; a container is inspected only when first
        seen, when its state changed, or after the runtime changed it itself. An inspection is kept for the next
        listing only if it agrees with this one's state: a container that changed between the two (an exit as it
        is listed running) would otherwise be given as it was inspected for as long as it is listed so."""
        filters = {"label": [f"{PLATFORM_LABEL}={platform}"]}
        listed = await self._call(self.docker.containers.list(all=True, filters=filters))
        keys = [(item["Id"], item["State"]) for item in listed]
        found = {key: self._seen[key] for key in keys if key in self._seen}
        fresh = [key for key in keys if key not in found]
        for key, inspected in zip(fresh, await asyncio.gather(*(self._inspect(id_) for id_, _ in fresh)), strict=True):
            found[key] = inspected
        self._seen = {key: c for key, c in found.items() if c is None or c.running == (key[1] in RUNNING_STATES)}
        return [container for key in keys if (container := found[key]) is not None]

    async def ensure_network(self, name: str, labels: dict[str, str]) -> None:
        """The tenant's network, on a subnet of the platform's pool (see `subnets`)."""
        async with self._network_lock:  # Docker allows two networks of one name: never race to create
            if name in self._networks:
                return
            for attempt in range(NETWORK_ATTEMPTS):
                found = await self._call(self.docker.networks.list())
                if any(network["Name"] == name for network in found):
                    break
                try:
                    subnet = free_subnet(subnets_of(found) + await self.host.routes())
                except PoolExhausted as exc:
                    raise EngineError(f"on {self.name}: {exc}") from None
                config = {
                    "Name": name,
                    "Driver": "bridge",
                    "Labels": labels,
                    "CheckDuplicate": True,
                    "IPAM": {"Config": [{"Subnet": subnet}]},
                }
                try:
                    await self._call(self.docker.networks.create(config))
                    break
                except EngineError as exc:  # another platform on this engine took the subnet meanwhile
                    if "overlap" not in str(exc) or attempt == NETWORK_ATTEMPTS - 1:
                        raise
            self._networks.add(name)

    async def networks(self, platform: str) -> dict[str, str]:
        found = await self._call(self.docker.networks.list(filters={"label": [f"{PLATFORM_LABEL}={platform}"]}))
        return {network["Name"]: (network.get("Labels") or {}).get(TENANT_LABEL, "") for network in found}

    async def remove_network(self, name: str) -> None:
        async with self._network_lock:  # never between ensure_network's look and its create
            self._networks.discard(name)
            try:
                await self._call(DockerNetwork(self.docker, name).delete())  # the API takes a name for an id
            except EngineError as exc:
                if "not found" not in str(exc) and "404" not in str(exc):
                    raise

    async def create(self, spec: InstanceSpec) -> Container:
        image = await self.image(spec.image)
        if image is None:
            raise ImageMissing(
                f"image {spec.image} is not on node {self.name}; build or load it "
                "(`strata images bootstrap`, `strata images load FILE.tar`)"
            )
        config = _container_config(spec, image, self.host.publish_ip)
        name = f"strata-{spec.tenant}-{spec.app}-{spec.instance}"
        async with self._changing():
            try:
                container = await self._call(self.docker.containers.create(config, name=name))
            except EngineError as exc:
                if "network" in str(exc):
                    self._networks.discard(spec.network)  # removed behind our back: look again next time
                raise
            try:
                await self._call(container.start())
            except EngineError:
                await self.remove(container.id)
                raise
        return await self._running(container.id)

    async def start(self, container_id: str) -> Container:
        async with self._changing(container_id):
            await self._call(self.docker.containers.container(container_id).start())
        return await self._running(container_id)

    async def stop(self, container_id: str) -> None:
        async with self._changing(container_id):
            await self._call(self.docker.containers.container(container_id).stop(t=STOP_TIMEOUT_SECONDS))

    async def pause(self, container_id: str) -> None:
        async with self._changing(container_id):
            await self._call(self.docker.containers.container(container_id).pause())

    async def unpause(self, container_id: str) -> None:
        async with self._changing(container_id):
            await self._call(self.docker.containers.container(container_id).unpause())

    async def run_once(self, image: str, command: list[str], mounts: tuple[Mount, ...]) -> tuple[int, str]:
        config: dict[str, Any] = {
            "Image": image,
            "Entrypoint": command[:1],
            "Cmd": command[1:],
            "User": "65534:65534",
            "HostConfig": {
                "NetworkMode": "none",
                "CapDrop": ["ALL"],
                "SecurityOpt": ["no-new-privileges:true"],
                "ReadonlyRootfs": True,
                "PidsLimit": 64,
                "Mounts": [{"Type": "bind", "Source": m.source, "Target": m.target} for m in mounts],
                "LogConfig": LOG_OPTIONS,
            },
        }
        if await self.image(image) is None:  # never pulled: Docker Hub's image of that name is someone else's
            raise ImageMissing(f"image {image} is not on node {self.name}; build it with `strata images bootstrap`")
        container = await self._call(self.docker.containers.create(config))
        try:
            await self._call(container.start())
            status = await self._call(container.wait())
            output = await self._call(container.log(stdout=True, stderr=True))
        finally:
            await self._call(container.delete(force=True))
        return int(status.get("StatusCode", -1)), "".join(output)

    async def remove(self, container_id: str) -> None:
        container = self.docker.containers.container(container_id)
        try:
            async with self._changing():
                await self._call(container.stop(t=STOP_TIMEOUT_SECONDS))
                await self._call(container.delete(force=True))
        except EngineError as exc:
            if "No such container" not in str(exc) and "404" not in str(exc):
                raise

    async def logs(self, container_id: str, *, follow: bool, since: int | None) -> AsyncIterator[str]:
        container = self.docker.containers.container(container_id)
        params: dict[str, Any] = {"stdout": True, "stderr": True, "since": since or 0}
        try:
            if follow:
                async for line in container.log(follow=True, **params):
                    yield line
            else:
                for line in await container.log(follow=False, **params):
                    yield line
        except aiodocker.DockerError as exc:
            raise EngineError(exc.message) from None
        except (aiohttp.ClientConnectionError, OSError) as exc:
            raise EngineUnavailable(f"docker on {self.name} does not answer ({exc})") from None

    async def counters(self, container_ids: Sequence[str]) -> dict[str, Counters]:
        if not container_ids:
            return {}
        if self._layout is None:
            self._layout = Layout.of(await self._call(self.docker.system.info()))
        layout = self._layout
        paths = [path for container_id in container_ids for path in layout.files(container_id)]
        return layout.counters(container_ids, await self.host.cgroup_files(paths))

    async def exec(self, container_id: str, command: list[str], *, tty: bool) -> ExecSession:
        start = DockerExec.start(self.docker.containers.container(container_id), command, tty, self.host.kill)
        return await self._call(start)  # an engine that does not answer is said to

    async def images(self) -> list[ImageInfo]:
        listed = await self._call(self.docker.images.list())
        return [
            ImageInfo(
                id=item["Id"],
                tags=[tag for tag in item.get("RepoTags") or [] if tag != "<none>:<none>"],
                size_bytes=item.get("Size", 0),
                created=datetime.fromtimestamp(item.get("Created", 0), UTC),
                labels=item.get("Labels") or {},
            )
            for item in listed
        ]

    async def image(self, reference: str) -> ImageInfo | None:
        try:
            item = await self._call(self.docker.images.inspect(reference))
        except EngineError:
            return None
        return ImageInfo(
            id=item["Id"],
            tags=item.get("RepoTags") or [],
            size_bytes=item.get("Size", 0),
            created=_docker_time(item["Created"]) or datetime.fromtimestamp(0, UTC),
            labels=(item.get("Config") or {}).get("Labels") or {},
            ports=sorted(
                int(port.partition("/")[0])
                for port in ((item.get("Config") or {}).get("ExposedPorts") or {})
                if port.endswith("/tcp") and port.partition("/")[0].isdigit()
            ),
            digests=item.get("RepoDigests") or [],
            onbuild=(item.get("Config") or {}).get("OnBuild") or [],
        )

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
        """See `docker_build`: the legacy builder, so that `limits` cap every RUN step."""
        return stream_build(self.docker, self.name, context, tag, limits, labels, cache_from, network=network)

    async def delete_image(self, reference: str) -> None:
        try:
            await self._call(self.docker.images.delete(reference))
        except EngineError as exc:
            if "No such image" not in str(exc) and "404" not in str(exc):
                raise

    async def pull(self, reference: str, auth: RegistryAuth | None) -> AsyncIterator[PullProgress]:
        """`POST /images/create` with the login in `X-Registry-Auth` (sent with this request only); progress is
        summed over the layers. Failures become `PullFailed` from the engine's message alone (never an
        exception that holds the request, whose headers hold the password).

        The request is made here (aiodocker's `images.pull` neither closes its response nor lets it be closed):
        however the pull ends, done, failed, stalled, or its consumer gone (the generator closed, its task
        cancelled), the engine's response is closed, and the connection with it."""
        name = canonical(reference)
        headers = {}
        if auth is not None:
            login = {"username": auth.username, "password": auth.password}
            headers["X-Registry-Auth"] = compose_auth_header(login, name.partition("/")[0])
        request = self.docker._query(
            "images/create",
            "POST",
            params={"fromImage": name},
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=None, connect=API_TIMEOUT_SECONDS),
        )
        try:
            async with AsyncExitStack() as stack:
                async with asyncio.timeout(PULL_STALL_SECONDS):
                    response = await stack.enter_async_context(request)
                stack.callback(response.close)  # on any exit: nothing is left reading from the engine
                lines = json_stream_stream(response)
                layers: dict[str, tuple[int, int]] = {}  # layer id -> (bytes done, bytes in all)
                while True:
                    try:
                        async with asyncio.timeout(PULL_STALL_SECONDS):
                            line = await anext(lines)
                    except StopAsyncIteration:
                        return
                    yield _progress(layers, line)
        except aiodocker.DockerError as exc:
            raise PullFailed(pull_reason(exc.message), f"pulling {reference}: {exc.message}") from None
        except TimeoutError:
            raise PullFailed("Unreachable", f"pulling {reference}: no progress for {PULL_STALL_SECONDS} s") from None
        except (aiohttp.ClientError, OSError) as exc:
            raise EngineUnavailable(f"docker on {self.name} does not answer ({type(exc).__name__})") from None

    async def save(self, reference: str) -> AsyncIterator[bytes]:
        try:
            async with self.docker.images.export_image(reference) as content:
                async for chunk in content.iter_chunked(SAVE_CHUNK_BYTES):
                    yield chunk
        except aiodocker.DockerError as exc:
            raise EngineError(f"docker on {self.name}: {exc.message}") from None
        except (aiohttp.ClientConnectionError, OSError) as exc:
            raise EngineUnavailable(f"docker on {self.name} does not answer ({exc})") from None

    async def load(self, archive: AsyncIterable[bytes]) -> list[str]:
        output = await self._call(self.docker.images.import_image(_Stream(archive)))
        tags = []
        for line in output:
            if "error" in line:
                raise EngineError(f"loading the archive failed: {line['error']}")
            status = line.get("stream", "")
            if status.startswith("Loaded image:"):
                tags.append(status.split(":", 1)[1].strip())
        return tags

    @asynccontextmanager
    async def _changing(self, container_id: str | None = None) -> AsyncIterator[None]:
        """A block that changes the platform's containers: the listing kept before it is not given after it (its
        events may come after the next listing: a container just created would be missing from it), nor what was
        inspected of `container_id` (a restarted container exited again is listed in the state it was inspected
        in: its old exit was given for its new one)."""
        try:
            yield
        finally:
            self._watch.changed()
            if container_id is not None:
                self._seen = {key: c for key, c in self._seen.items() if key[0] != container_id}

    async def close(self) -> None:
        self._closed = True
        await self._watch.close()
        if self._docker is not None:
            await self._docker.close()
            self._docker = None

    async def _running(self, container_id: str) -> Container:
        container = await self._inspect(container_id)
        if container is None:
            raise EngineError(f"container {container_id[:12]} vanished right after it started")
        return container

    async def _inspect(self, container_id: str) -> Container | None:
        try:
            data = await self._call(self.docker.containers.container(container_id).show())
        except EngineUnavailable:
            raise  # the engine is gone, not the container: nothing may be taken for vanished
        except EngineError:
            return None  # removed between list and inspect
        container = _container(self.name, data, self.host.publish_ip)
        if container is not None and container.published is not None:
            container = replace(container, endpoint=await self.host.endpoint(container.published))
        return container

    async def _call(self, awaitable: Any) -> Any:
        """Await an aiodocker call, turning its failures into the runtime's errors."""
        try:
            return await awaitable
        except aiodocker.DockerError as exc:
            raise EngineError(f"docker on {self.name}: {exc.message}") from None
        except (aiohttp.ClientConnectionError, OSError, TimeoutError) as exc:
            raise EngineUnavailable(f"docker on {self.name} does not answer ({exc})") from None


def _container_config(spec: InstanceSpec, image: ImageInfo, publish_ip: str) -> dict[str, Any]:
    read_only = image.labels.get(READ_ONLY_ROOT_LABEL) == "true"
    capabilities = declared_capabilities(image.labels)
    port = f"{spec.port}/tcp"
    env = {
        **spec.env,
        "PORT": str(spec.port),
        "STRATA_TENANT": spec.tenant,
        "STRATA_APP": spec.app,
        "STRATA_REVISION": str(spec.revision),
        "STRATA_INSTANCE": spec.instance,
    }
    return {
        "Image": spec.image,
        # A command replaces the image's entrypoint and arguments both (as Kubernetes' `command` does).
        **({"Entrypoint": spec.command[:1], "Cmd": spec.command[1:]} if spec.command else {}),
        "Env": [f"{key}={value}" for key, value in env.items()],
        "Labels": spec.labels,
        "ExposedPorts": {port: {}},
        "NetworkingConfig": {"EndpointsConfig": {spec.network: {"Aliases": [spec.alias]}}},
        "HostConfig": {
            "NanoCpus": spec.cpu_millicores * 1_000_000,
            "Memory": spec.memory_mib * MIB,
            "MemorySwap": spec.memory_mib * MIB,
            "PidsLimit": spec.pids_limit,
            "ReadonlyRootfs": read_only,
            **({"Tmpfs": TMPFS} if read_only else {}),
            "SecurityOpt": ["no-new-privileges:true"],
            "CapDrop": ["ALL"],
            "CapAdd": capabilities,
            "PortBindings": {port: [{"HostIp": publish_ip, "HostPort": ""}]},
            "NetworkMode": spec.network,
            "Mounts": [{"Type": "bind", "Source": m.source, "Target": m.target} for m in spec.mounts],
            "RestartPolicy": {"Name": "no"},  # the reconciler restarts, with backoff, and counts it
            "LogConfig": LOG_OPTIONS,
        },
    }


def _container(node: str, data: dict[str, Any], publish_ip: str) -> Container | None:
    """The container `data` (from inspect) describes, its published port as the engine's machine sees it."""
    labels = data["Config"].get("Labels") or {}
    state = data["State"]
    try:
        revision = int(labels[REVISION_LABEL])
        tenant, app, instance = labels[TENANT_LABEL], labels[APP_LABEL], labels[INSTANCE_LABEL]
    except (KeyError, ValueError):
        return None  # not one of ours after all (a label was tampered with)
    published = None
    if state.get("Running"):
        for bindings in (data["NetworkSettings"].get("Ports") or {}).values():
            for binding in bindings or []:
                if binding.get("HostIp") == publish_ip and binding.get("HostPort"):
                    published = int(binding["HostPort"])
    started = state.get("StartedAt") or ""
    return Container(
        node=node,
        id=data["Id"],
        tenant=tenant,
        app=app,
        revision=revision,
        instance=instance,
        running=bool(state.get("Running")),
        exit_code=None if state.get("Running") else state.get("ExitCode"),
        started_at=_docker_time(started),
        endpoint=None,
        published=published,
        volumes=Container.volumes_of(labels),
    )


# The engine's words for why a pull failed (from the registry's answer or its own), as Kubernetes names them;
# the first that matches wins.
PULL_REASONS = (
    ("NoSpace", ("no space left on device",)),
    ("Unreachable", ("no such host", "connection refused", "timeout", "network is unreachable", "connection reset")),
    ("Unreachable", ("http response to https client", "tls:", "certificate")),
    ("Unauthorized", ("unauthorized", "authentication required", "denied", "no basic auth credentials", "forbidden")),
    ("NotFound", ("manifest unknown", "not found", "repository does not exist", "name unknown")),
)


def pull_reason(message: str) -> str:
    """NotFound, Unauthorized, Unreachable, NoSpace or Failed, from the engine's message of a failed pull.
    Docker Hub answers an unknown repository as a denial ("pull access denied ... repository does not exist
    or may require 'docker login'"): that reads as Unauthorized, which is all a registry lets one know."""
    lowered = message.lower()
    return next((reason for reason, words in PULL_REASONS if any(word in lowered for word in words)), "Failed")


def _progress(layers: dict[str, tuple[int, int]], line: dict[str, Any]) -> PullProgress:
    """Fold one line of the engine's pull stream into the per-layer counts; the sum so far."""
    layer, status = line.get("id"), str(line.get("status", ""))
    detail = line.get("progressDetail") or {}
    if layer and status == "Downloading" and detail.get("total"):
        layers[layer] = (int(detail.get("current", 0)), int(detail["total"]))
    elif layer in layers and status in ("Download complete", "Verifying Checksum", "Extracting", "Pull complete"):
        layers[layer] = (layers[layer][1], layers[layer][1])  # downloaded whole (extracting is not downloading)
    done = sum(current for current, _ in layers.values())
    total = sum(size for _, size in layers.values())
    return PullProgress(done, total, f"{layer}: {status}" if layer else status)


def _docker_time(value: str) -> datetime | None:
    """Docker reports UTC times with nanoseconds (which Python does not parse); seconds are enough here."""
    if not value or value.startswith("0001-"):
        return None
    return datetime.fromisoformat(value[:19]).replace(tzinfo=UTC)


class _Stream:
    """An async iterable of bytes in the shape aiohttp takes as a request body."""

    def __init__(self, chunks: AsyncIterable[bytes]) -> None:
        self._chunks = chunks

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._chunks.__aiter__()
