"""`NodeRuntime` in memory: an engine for fast tests of the platform's decisions and for benchmarks at scale.

A first-class implementation beside `docker_runtime.py`, as httpx keeps `MockTransport` beside its transports and
Nova keeps `virt/fake.py` beside its drivers: it keeps the contract of `runtime.py` (the same errors for the same
mistakes: `ImageMissing`, `EngineUnavailable`, an unknown container or network) and nothing else. It is
deterministic: container ids, published ports and every listing's order follow from the calls made, and time is
the injected clock's. Endpoints are `127.0.0.1:PORT` strings it makes up and never listens on; `FakeHealthChecker`
answers for them what a test has set.

What a test does to it, as the world would: `crash` a container, make the engine `unreachable`, `vanish` a
container (removed behind the platform's back), give a container `emit` output or set its `health`, `fail` a verb once.
"""

import asyncio
import hashlib
import io
import itertools
import json
import tarfile
from collections import Counter
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from hosting.paas.cgroups import Counters
from hosting.paas.health import OK, REFUSED, HealthChecker
from hosting.paas.runtime import (
    INSTANCE_LABEL,
    PLATFORM_LABEL,
    TENANT_LABEL,
    BuildFailed,
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
from tenants.enums import AppKind

DEFAULT_CAPACITY = Capacity(cpu_millicores=4000, memory_mib=8192)
DEFAULT_IMAGES = ("strata/hello:latest", "strata/static:latest")
FIRST_PORT, LAST_PORT = 20_000, 59_999  # made-up published ports, handed out in turn (never listened on)
STOP_EXIT_CODE = 143  # a container stopped by the engine ended on SIGTERM
KILL_EXIT_CODE = 137  # an exec killed
IMAGE_BYTES = 1_234_567  # the size every fake image reports
MEMORY_BYTES = 16 * 1024 * 1024  # what a running container uses unless a test says otherwise

WallClock = Callable[[], datetime]


class FakeClock:
    """Time that moves only when a test says: `now()` for the engine's timestamps, `monotonic()` for the
    reconciler's deadlines, both advanced together by `advance`. It starts at the wall clock's time by default,
    so ages the platform measures against the real clock (`Tracked.age`) start near zero."""

    def __init__(self, start: datetime | None = None, monotonic: float = 1_000.0) -> None:
        self._now = start or datetime.now(UTC)
        self._monotonic = monotonic

    def now(self) -> datetime:
        return self._now

    def monotonic(self) -> float:
        return self._monotonic

    def advance(self, seconds: float) -> None:
        self._now += timedelta(seconds=seconds)
        self._monotonic += seconds


_CGROUPS = itertools.count(1)  # cgroup identities, as inodes: never one twice


@dataclass
class FakeContainer:
    """A container as the fake engine holds it; tests read and set `health`, `logs`, `cpu_millicores_used`."""

    node: str
    id: str
    name: str
    spec: InstanceSpec
    labels: dict[str, str]
    running: bool = False
    paused: bool = False
    exit_code: int | None = None
    started_at: datetime | None = None
    port: int | None = None
    health: str = OK  # what a check of its endpoint answers while it runs
    logs: list[tuple[datetime, str]] = field(default_factory=list)
    cpu_millicores_used: int = 0
    memory_bytes_used: int = MEMORY_BYTES
    cgroup: int = 0  # its cgroup's identity: another at each start
    runtime: "FakeRuntime | None" = field(default=None, repr=False)
    # What the last listing made of it, and of what state: made again only when that changed
    listed: tuple[tuple[object, ...], Container] | None = field(default=None, repr=False)

    @property
    def instance(self) -> str:
        return self.labels[INSTANCE_LABEL]

    @property
    def endpoint(self) -> str | None:
        return f"127.0.0.1:{self.port}" if self.running and self.port is not None else None


class FakePorts:
    """The loopback the fake engines publish on: hands out ports in turn and knows which container each is
    published for, so a health checker can answer for an endpoint. Engines sharing one never hand out a port
    twice at once (as engines sharing a host's 127.0.0.1 would not)."""

    def __init__(self, first: int = FIRST_PORT, last: int = LAST_PORT) -> None:
        self._next: Iterator[int] = itertools.cycle(range(first, last + 1))
        self._size = last - first + 1
        self.published: dict[int, FakeContainer] = {}

    def publish(self, container: FakeContainer) -> int:
        for _ in range(self._size):
            port = next(self._next)
            if port not in self.published:
                self.published[port] = container
                return port
        raise EngineError("no free port left to publish on")

    def release(self, port: int | None) -> None:
        if port is not None:
            self.published.pop(port, None)

    def container(self, endpoint: str) -> FakeContainer | None:
        host, _, port = endpoint.rpartition(":")
        if host != "127.0.0.1" or not port.isdigit():
            return None
        return self.published.get(int(port))


@dataclass
class FakeImage:
    reference: str
    id: str
    created: datetime
    labels: dict[str, str] = field(default_factory=dict)
    ports: list[int] = field(default_factory=list)
    digests: list[str] = field(default_factory=list)  # set when it was pulled
    onbuild: list[str] = field(default_factory=list)  # ONBUILD triggers (tests set them)


class FakeRuntime(NodeRuntime):
    """An engine in memory. `images` are the references it has (normalised to `:latest` as Docker does);
    `clock` gives the engine's times (started, created, log lines), the wall clock by default; `ports` the
    loopback it publishes on (share one between the engines of a pool, and with `FakeHealthChecker`)."""

    def __init__(
        self,
        name: str = "fake",
        *,
        capacity: Capacity = DEFAULT_CAPACITY,
        images: tuple[str, ...] | list[str] = DEFAULT_IMAGES,
        clock: WallClock | None = None,
        ports: FakePorts | None = None,
        health: str = OK,
    ) -> None:
        self.name = name
        self.total = capacity
        self.clock: WallClock = clock or (lambda: datetime.now(UTC))
        self.ports = ports or FakePorts()
        self.health = health  # what a new container's checks answer
        self.reachable = True
        self.closed = False
        self.calls: Counter[str] = Counter()  # verb -> times called (answered or not)
        self._containers: dict[str, FakeContainer] = {}  # id -> container, in creation order
        self._networks: dict[str, dict[str, str]] = {}  # name -> labels
        self._images: dict[str, FakeImage] = {}
        self._failures: dict[str, list[EngineError]] = {}  # verb -> errors its next calls raise
        self._serial = itertools.count(1)
        self._followers: set[asyncio.Event] = set()  # one per `logs(follow=True)`: woken by lines and exits
        self.build_gate: asyncio.Event | None = None  # builds wait for it before their last step (see `build`)
        self.builds: list[tuple[str, BuildLimits | None]] = []  # (tag, limits) of every build asked for
        self.build_caches: list[list[str] | None] = []  # the `cache_from` of every build asked for
        self.build_networks: list[str | None] = []  # the `network` of every build asked for
        self.build_output: list[str] = []  # lines every build prints before its steps
        # The registries it pulls from: reference -> (the login it needs, or None; the image's content, which
        # makes its id). While a test holds `pull_gate` (an unset `asyncio.Event`), pulls wait for it halfway.
        self.registry: dict[str, tuple[RegistryAuth | None, bytes]] = {}
        self.pull_gate: asyncio.Event | None = None
        for reference in images:
            self.add_image(reference)

    # what a test does to it

    def add_image(
        self,
        reference: str,
        labels: dict[str, str] | None = None,
        *,
        content: bytes | None = None,
        ports: list[int] | None = None,
    ) -> None:
        """An image `reference`; its id is the digest of `content` when given (a build's), else of the reference
        (so the same image has one id on every node)."""
        reference = _normalise(reference)
        digest = hashlib.sha256(content if content is not None else reference.encode()).hexdigest()
        image = FakeImage(reference, f"sha256:{digest}", self.clock(), dict(labels or {}), list(ports or []))
        old = self._images.get(reference)
        if old is not None and old.id != image.id:  # kept untagged, by its id, as Docker keeps an image
            self._images[old.id] = FakeImage(old.id, old.id, old.created, old.labels, old.ports, old.digests)  # moved
        self._images[reference] = image

    def remove_image(self, reference: str) -> None:
        self._images.pop(_normalise(reference), None)

    def unreachable(self) -> None:
        """From now on every verb raises `EngineUnavailable`, as an engine that does not answer."""
        self.reachable = False

    def reachable_again(self) -> None:
        self.reachable = True

    def fail(self, verb: str, error: EngineError | None = None) -> None:
        """The next call of `verb` ("create", "start", ...) raises `error` (an `EngineError` by default)."""
        self._failures.setdefault(verb, []).append(error or EngineError(f"{verb} failed on {self.name} (fake)"))

    def crash(self, instance: str, exit_code: int = 1) -> FakeContainer:
        """The container of `instance` (or of that id) exits by itself with `exit_code`."""
        container = self.find(instance)
        self._exit(container, exit_code)
        return container

    def vanish(self, instance: str) -> None:
        """The container of `instance` is removed behind the platform's back (an operator's `docker rm`)."""
        container = self.find(instance)
        self._exit(container, KILL_EXIT_CODE)
        del self._containers[container.id]

    def emit(self, instance: str, *lines: str) -> None:
        """The container of `instance` writes `lines` to its output, now."""
        container = self.find(instance)
        container.logs += [(self.clock(), line) for line in lines]
        self._notify()

    def find(self, instance: str) -> FakeContainer:
        """The container of instance `instance`, or of container id `instance`; KeyError if there is none."""
        for container in self._containers.values():
            if instance in (container.instance, container.id):
                return container
        raise KeyError(f"no container of {instance} on {self.name}")

    def containers_of(self, tenant: str | None = None, app: str | None = None) -> list[FakeContainer]:
        """Every container, in creation order (of one tenant, of one app, if given)."""
        return [
            c
            for c in self._containers.values()
            if (tenant is None or c.spec.tenant == tenant) and (app is None or c.spec.app == app)
        ]

    def running(self, tenant: str | None = None, app: str | None = None) -> list[FakeContainer]:
        return [c for c in self.containers_of(tenant, app) if c.running]

    def network_names(self) -> list[str]:
        return sorted(self._networks)

    # NodeRuntime

    async def capacity(self) -> Capacity:
        self._answer("capacity")
        return self.total

    async def containers(self, platform: str) -> list[Container]:
        self._answer("containers")
        return [self._container(c) for c in self._containers.values() if c.labels.get(PLATFORM_LABEL) == platform]

    async def ensure_network(self, name: str, labels: dict[str, str]) -> None:
        self._answer("ensure_network")
        self._networks.setdefault(name, dict(labels))

    async def networks(self, platform: str) -> dict[str, str]:
        self._answer("networks")
        return {
            name: labels.get(TENANT_LABEL, "")
            for name, labels in sorted(self._networks.items())
            if labels.get(PLATFORM_LABEL) == platform
        }

    async def remove_network(self, name: str) -> None:
        self._answer("remove_network")
        if any(c.running and c.spec.network == name for c in self._containers.values()):
            raise EngineError(f"on {self.name}: network {name} has active endpoints")
        self._networks.pop(name, None)

    async def create(self, spec: InstanceSpec) -> Container:
        self._answer("create")
        image = self._find(spec.image)
        if image is None:
            raise ImageMissing(
                f"image {spec.image} is not on node {self.name}; build or load it "
                "(`strata images bootstrap`, `strata images load FILE.tar`)"
            )
        declared_capabilities(image.labels)  # an image asking for more than the platform grants: no container
        if spec.network not in self._networks:
            raise EngineError(f"on {self.name}: network {spec.network} not found")
        name = f"strata-{spec.tenant}-{spec.app}-{spec.instance}"
        if any(c.name == name for c in self._containers.values()):
            raise EngineError(f"on {self.name}: the container name {name} is already in use")
        container_id = hashlib.sha256(f"{self.name}/{next(self._serial)}".encode()).hexdigest()
        container = FakeContainer(self.name, container_id, name, spec, spec.labels, health=self.health, runtime=self)
        self._containers[container_id] = container
        self._run(container)
        return self._container(container)

    async def start(self, container_id: str) -> Container:
        self._answer("start")
        container = self._get(container_id)
        if not container.running:
            self._run(container)
        return self._container(container)

    async def stop(self, container_id: str) -> None:
        self._answer("stop")
        container = self._get(container_id)
        if container.running:
            self._exit(container, STOP_EXIT_CODE)

    async def pause(self, container_id: str) -> None:
        self._answer("pause")
        container = self._get(container_id)
        if not container.running:
            raise EngineError(f"on {self.name}: container {container_id} is not running")
        container.paused = True

    async def unpause(self, container_id: str) -> None:
        self._answer("unpause")
        self._get(container_id).paused = False

    async def run_once(self, image: str, command: list[str], mounts: tuple[Mount, ...]) -> tuple[int, str]:
        self._answer("run_once")
        raise EngineError(f"on {self.name}: the fake engine runs no commands ({command[0]})")

    async def remove(self, container_id: str) -> None:
        self._answer("remove")
        container = self._containers.pop(container_id, None)
        if container is not None:
            self._exit(container, STOP_EXIT_CODE)

    async def logs(self, container_id: str, *, follow: bool, since: int | None) -> AsyncIterator[str]:
        self._answer("logs")
        container = self._get(container_id)
        after = datetime.fromtimestamp(since, UTC) if since else None
        sent, woken = 0, asyncio.Event()
        self._followers.add(woken)
        try:
            while True:
                woken.clear()
                lines = container.logs[sent:]
                sent += len(lines)
                for at, line in lines:
                    if after is None or at >= after:
                        yield line
                if not follow or not container.running or container.id not in self._containers:
                    return
                await woken.wait()
        finally:
            self._followers.discard(woken)

    async def counters(self, container_ids: Sequence[str]) -> dict[str, Counters]:
        """A running container has used `cpu_millicores_used` since it last started (its cgroup's age)."""
        self._answer("counters")
        found = {}
        for container_id in container_ids:
            container = self._containers.get(container_id)
            if container is None or not container.running or container.started_at is None:
                continue
            elapsed_ns = int((self.clock() - container.started_at).total_seconds() * 1e9)
            cpu_ns = elapsed_ns * container.cpu_millicores_used // 1000
            found[container_id] = Counters(cpu_ns, container.memory_bytes_used, container.cgroup)
        return found

    async def exec(self, container_id: str, command: list[str], *, tty: bool) -> ExecSession:
        self._answer("exec")
        container = self._get(container_id)
        if not container.running:
            raise EngineError(f"on {self.name}: container {container_id[:12]} is not running")
        return FakeExec(command, tty)

    async def images(self) -> list[ImageInfo]:
        self._answer("images")
        return [_info(image) for image in sorted(self._images.values(), key=lambda i: i.reference)]

    async def image(self, reference: str) -> ImageInfo | None:
        self._answer("image")
        image = self._find(reference)
        return None if image is None else _info(image)

    async def pull(self, reference: str, auth: RegistryAuth | None) -> AsyncIterator[PullProgress]:
        """From `registry`: NotFound for a reference it lacks, Unauthorized unless `auth` is the login it
        needs; the image (its id from its content) is then tagged `reference`, moving the tag as Docker does."""
        self._answer("pull")
        found = self.registry.get(_normalise(reference))
        if found is None:
            raise PullFailed("NotFound", f"pulling {reference}: manifest unknown (fake)")
        needed, content = found
        if needed is not None and auth != needed:
            raise PullFailed("Unauthorized", f"pulling {reference}: unauthorized: authentication required (fake)")
        yield PullProgress(0, len(content), "Pulling fs layer")
        if self.pull_gate is not None:
            await self.pull_gate.wait()
        yield PullProgress(len(content), len(content), "Pull complete")
        self.add_image(reference, content=content)
        digest = hashlib.sha256(b"manifest " + content).hexdigest()
        self._images[_normalise(reference)].digests = [f"{_normalise(reference).rpartition(':')[0]}@sha256:{digest}"]

    async def build(
        self,
        context: bytes | AsyncIterable[bytes],
        tag: str,
        *,
        limits: BuildLimits | None = None,
        labels: dict[str, str] | None = None,
        cache_from: list[str] | None = None,
        network: str | None = None,
    ) -> AsyncGenerator[str, None]:
        """A build context is read as a tar (an unreadable one fails as Docker's would); each Dockerfile line is
        a step, yielded as `Step N/M : ...`; a `RUN false` or `RUN exit N` step fails as Docker's would, and
        nothing else runs. `LABEL k=v` lines and `labels` become the image's labels, `EXPOSE` its ports; its id
        is the context's digest (the same context gives the same image, as Docker's cache would). While a
        test holds `build_gate` (an unset `asyncio.Event`), builds wait for it before their last step.
        `builds` records (tag, limits) per build, `build_caches` its `cache_from`, `build_networks` its
        `network` (which must exist, as Docker's would refuse it otherwise); `build_output` lines are yielded
        before the steps."""
        self._answer("build")
        if network is not None and network not in self._networks:
            raise BuildFailed(f"network {network} not found")
        data = context if isinstance(context, bytes) else b"".join([chunk async for chunk in context])
        self.builds.append((tag, limits))
        self.build_caches.append(None if cache_from is None else list(cache_from))
        self.build_networks.append(network)
        try:
            with tarfile.open(fileobj=io.BytesIO(data)) as tar:
                names = {name.removeprefix("./"): name for name in tar.getnames()}
                member = tar.extractfile(names["Dockerfile"]) if "Dockerfile" in names else None
                dockerfile = member.read().decode(errors="replace") if member else ""
        except tarfile.TarError as exc:
            raise BuildFailed(f"building {tag} failed: {exc}") from None
        if not dockerfile:
            raise BuildFailed("Cannot locate specified Dockerfile: Dockerfile")
        steps = [line.strip() for line in dockerfile.splitlines() if line.strip() and not line.startswith("#")]
        for line in self.build_output:
            yield line
        for number, step in enumerate(steps, 1):
            if number == len(steps) and self.build_gate is not None:
                await self.build_gate.wait()
            yield f"Step {number}/{len(steps)} : {step}"
            words = step.split()
            if words[0].upper() == "RUN" and words[1:2] in (["false"], ["exit"]):
                code = words[2] if words[1:2] == ["exit"] and len(words) > 2 else "1"
                raise BuildFailed(f"The command '/bin/sh -c {' '.join(words[1:])}' returned a non-zero code: {code}")
        ports = sorted(int(word.partition("/")[0]) for line in steps if line.upper().startswith("EXPOSE ")
                       for word in line.split()[1:] if word.partition("/")[0].isdigit())  # fmt: skip
        self.add_image(tag, {**_labels(dockerfile), **(labels or {})}, content=data, ports=ports)
        yield f"Successfully tagged {tag}"

    async def delete_image(self, reference: str) -> None:
        self._answer("delete_image")
        if any(c.spec.image == _normalise(reference) or c.spec.image == reference for c in self._containers.values()):
            raise EngineError(f"on {self.name}: conflict: unable to remove {reference}: a container uses it")
        self._images.pop(_normalise(reference), None)

    async def save(self, reference: str) -> AsyncIterator[bytes]:
        """A `docker save`-shaped archive: a manifest naming the image's tag, and its labels."""
        self._answer("save")
        image = self._find(reference)
        if image is None:
            raise EngineError(f"on {self.name}: no such image: {reference}")
        config = json.dumps({"config": {"Labels": image.labels}, "id": image.id}).encode()
        tags = [] if image.reference == image.id else [image.reference]
        manifest = json.dumps([{"Config": "config.json", "RepoTags": tags, "Layers": []}]).encode()
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as tar:
            for name, data in (("config.json", config), ("manifest.json", manifest)):
                entry = tarfile.TarInfo(name)
                entry.size = len(data)
                tar.addfile(entry, io.BytesIO(data))
        yield buffer.getvalue()

    async def load(self, archive: AsyncIterable[bytes]) -> list[str]:
        self._answer("load")
        data = b"".join([chunk async for chunk in archive])
        try:
            with tarfile.open(fileobj=io.BytesIO(data)) as tar:
                manifest = json.loads(_read(tar, "manifest.json"))
                tags = []
                for entry in manifest:
                    config = json.loads(_read(tar, entry["Config"]))
                    labels = config.get("config", {}).get("Labels") or {}
                    for tag in entry.get("RepoTags") or []:
                        self.add_image(tag, labels)
                        tags.append(tag)
                    if "id" in config:  # the image keeps its id, as Docker's does through save and load
                        for name in entry.get("RepoTags") or [config["id"]]:
                            image = self._images.setdefault(
                                _normalise(name), FakeImage(name, config["id"], self.clock(), labels)
                            )
                            image.id = config["id"]
        except (tarfile.TarError, KeyError, ValueError) as exc:
            raise EngineError(f"loading the archive failed: {exc}") from None
        return tags

    async def close(self) -> None:
        self.closed = True

    # helpers

    def _answer(self, verb: str) -> None:
        """Count the call; raise what an unreachable, closed or failing engine raises."""
        self.calls[verb] += 1
        if self.closed:
            raise EngineUnavailable(f"the connection to the fake engine {self.name} is closed")
        if not self.reachable:
            raise EngineUnavailable(f"the fake engine {self.name} does not answer")
        failures = self._failures.get(verb)
        if failures:
            raise failures.pop(0)

    def _find(self, reference: str) -> FakeImage | None:
        """An image by reference, or by id (`sha256:...`), as the engine finds either."""
        found = self._images.get(_normalise(reference))
        return found or next((image for image in self._images.values() if image.id == reference), None)

    def _get(self, container_id: str) -> FakeContainer:
        try:
            return self._containers[container_id]
        except KeyError:
            raise EngineError(f"on {self.name}: No such container: {container_id[:12]}") from None

    def _run(self, container: FakeContainer) -> None:
        container.running, container.exit_code = True, None
        container.started_at = self.clock()
        container.cgroup = next(_CGROUPS)
        container.port = self.ports.publish(container)
        self._notify()

    def _exit(self, container: FakeContainer, exit_code: int) -> None:
        if container.running:
            container.running, container.exit_code = False, exit_code
            self.ports.release(container.port)
            container.port = None
        self._notify()

    def _notify(self) -> None:
        for woken in self._followers:
            woken.set()

    def _container(self, container: FakeContainer) -> Container:
        """The container as a listing reports it: the one made last time while its state is the same, as
        `DockerRuntime.containers` keeps what it inspected until the engine lists another state (so a pass costs
        the fakes no more Python than it costs a real engine's runtime; the engine's own work is not in Python)."""
        state = (container.running, container.exit_code, container.started_at, container.port)
        if container.listed is not None and container.listed[0] == state:
            return container.listed[1]
        spec = container.spec
        made = Container(
            node=self.name,
            id=container.id,
            tenant=container.labels[TENANT_LABEL],
            app=spec.app,
            revision=spec.revision,
            instance=container.instance,
            running=container.running,
            exit_code=container.exit_code,
            started_at=container.started_at,
            endpoint=container.endpoint,
            published=container.port if container.running else None,
            volumes=Container.volumes_of(container.labels),
        )
        container.listed = (state, made)
        return made


class FakeExec(ExecSession):
    """A command that answers at once: it echoes its input to stdout (as `cat` does) and exits 0 at the end of
    its input, or 137 when killed. Enough for the exec plumbing above the runtime, and no more."""

    def __init__(self, command: list[str], tty: bool) -> None:
        self.command = command
        self.tty = tty
        self.size: tuple[int, int] | None = None
        self._output: asyncio.Queue[tuple[int, bytes] | None] = asyncio.Queue()
        self._exit_code: int | None = None

    async def read(self) -> tuple[int, bytes] | None:
        if self._exit_code is not None and self._output.empty():
            return None
        return await self._output.get()

    async def write(self, data: bytes) -> None:
        if self._exit_code is None:
            await self._output.put((1, data))

    async def close_input(self) -> None:
        await self._end(0)

    async def resize(self, width: int, height: int) -> None:
        self.size = (width, height)

    async def exit_code(self) -> int | None:
        return self._exit_code

    async def kill(self) -> None:
        await self._end(KILL_EXIT_CODE)

    async def _end(self, code: int) -> None:
        if self._exit_code is None:
            self._exit_code = code
            await self._output.put(None)


class FakeHealthChecker(HealthChecker):
    """Health checks of the fake engines' made-up endpoints: a container answers its `health` while it runs and
    its engine answers; a port nothing is published on is refused; nothing is connected to."""

    def __init__(self, ports: FakePorts) -> None:  # no HTTP client: nothing is ever reached
        self.timeout = 0.0
        self.ports = ports
        self.checks: Counter[str] = Counter()  # endpoint -> times checked

    async def check(self, endpoint: str, path: str | None, kind: str = AppKind.WEB) -> str:
        self.checks[endpoint] += 1
        container = self.ports.container(endpoint)
        if container is None or not container.running:
            return REFUSED
        if container.runtime is not None and not container.runtime.reachable:
            return self._silent
        return container.health

    async def close(self) -> None:
        pass


def _normalise(reference: str) -> str:
    """Docker's reading of a reference without a tag: `:latest`."""
    name = reference.rsplit("/", 1)[-1]
    return reference if ":" in name or "@" in name else f"{reference}:latest"


def _info(image: FakeImage) -> ImageInfo:
    return ImageInfo(
        id=image.id,
        tags=[] if image.reference == image.id else [image.reference],  # untagged: its tag moved
        size_bytes=IMAGE_BYTES,
        created=image.created,
        labels=dict(image.labels),
        ports=list(image.ports),
        digests=list(image.digests),
        onbuild=list(image.onbuild),
    )


def _labels(dockerfile: str) -> dict[str, str]:
    """The `LABEL key=value ...` pairs of a Dockerfile (quotes stripped; enough for the sample images)."""
    labels = {}
    for line in dockerfile.splitlines():
        words = line.strip().split()
        if words and words[0].upper() == "LABEL":
            for pair in words[1:]:
                key, _, value = pair.partition("=")
                labels[key.strip('"')] = value.strip('"')
    return labels


def _read(tar: tarfile.TarFile, name: str) -> bytes:
    member = tar.extractfile(name)
    if member is None:
        raise KeyError(name)
    return member.read()
