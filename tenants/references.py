"""Image references as Docker reads them: which registry a reference names, and its one canonical spelling.

`registry.example.com/team/web:1.4`, `localhost:5000/web`, `nginx` (Docker Hub). Ownership of images
(`tenants.images`) is keyed by the canonical spelling, so that `nginx`, `nginx:latest`,
`docker.io/library/nginx` and `index.docker.io/library/nginx:latest` are one reference for every rule.
"""

DOCKER_HUB = "docker.io"
_HUB_ALIASES = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io"})
DEFAULT_TAG = "latest"


def split_registry(reference: str) -> tuple[str, str]:
    """(registry host[:port], the rest): the first path component is a registry only if it has a '.' or a
    ':' or is `localhost` (Docker's rule); anything else is a Docker Hub repository."""
    first, slash, rest = reference.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost"):
        host = first.lower()
        return (DOCKER_HUB if host in _HUB_ALIASES else host), rest
    return DOCKER_HUB, reference


def registry_host(reference: str) -> str:
    """The registry a reference is pulled from (`docker.io` when it names none)."""
    return split_registry(reference)[0]


def has_tag(reference: str) -> bool:
    """Whether the reference names a tag or a digest (else Docker reads it as `:latest`)."""
    _, rest = split_registry(reference)
    last = rest.rsplit("/", 1)[-1]
    return ":" in last or "@" in last


def tag_of(reference: str) -> str | None:
    """The tag the reference names (`latest` when it names neither a tag nor a digest; None for a digest)."""
    _, rest = split_registry(reference)
    last = rest.rsplit("/", 1)[-1]
    if "@" in last:
        return None
    return last.partition(":")[2] or DEFAULT_TAG


def canonical(reference: str) -> str:
    """The one spelling of a reference: its registry, Docker Hub's `library/` for official images, and a tag
    (`latest` when it names neither a tag nor a digest)."""
    host, rest = split_registry(reference)
    if host == DOCKER_HUB and "/" not in rest:
        rest = f"library/{rest}"
    return f"{host}/{rest}" if has_tag(reference) else f"{host}/{rest}:{DEFAULT_TAG}"


def is_latest(reference: str) -> bool:
    """A reference that names no fixed version (`:latest`, or no tag): pulled again for each new revision, as
    Kubernetes' default pull policy for such references is `Always`."""
    return tag_of(reference) == DEFAULT_TAG
