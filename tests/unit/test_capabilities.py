"""An image's labels ask for capabilities; only a few harmless ones are ever granted (tenants write labels)."""

import pytest

from hosting.paas.runtime import CAPABILITIES_LABEL, EngineError, declared_capabilities


def test_no_label_and_an_empty_label_ask_for_nothing() -> None:
    assert declared_capabilities({}) == []
    assert declared_capabilities({CAPABILITIES_LABEL: ""}) == []


def test_harmless_capabilities_are_granted_whatever_their_spelling() -> None:
    assert declared_capabilities({CAPABILITIES_LABEL: "net_bind_service, CAP_CHOWN"}) == ["NET_BIND_SERVICE", "CHOWN"]


@pytest.mark.parametrize("wanted", ["SYS_ADMIN", "chown,NET_ADMIN", "CAP_SYS_PTRACE", "ALL", "NET_RAW"])
def test_an_image_asking_for_more_is_refused_naming_what(wanted: str) -> None:
    with pytest.raises(EngineError, match="never grants") as refused:
        declared_capabilities({CAPABILITIES_LABEL: wanted})
    assert "CHOWN" not in str(refused.value).split("grantable")[0]
