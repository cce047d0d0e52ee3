"""schemathesis's hooks for fuzzing the control API (`SCHEMATHESIS_HOOKS`): an image archive is bytes, and a remote
host (or hypervisor) is asked for on loopback only."""

import schemathesis

schemathesis.serializer.alias("application/x-tar", "application/octet-stream")


@schemathesis.hook
def before_call(context: schemathesis.HookContext, case: schemathesis.Case, kwargs: dict) -> None:
    """A remote host or hypervisor the fuzzer adds (`POST /nodes` with `ssh` or `uri`) is one on loopback where
    nothing listens: the daemon connects to whatever they name, and the tests send traffic to loopback only, and look
    up no names."""
    if case.method.upper() == "POST" and case.path == "/nodes" and isinstance(case.body, dict):
        if "ssh" in case.body:
            case.body["ssh"] = "root@127.0.0.1:9"
        if "uri" in case.body:
            case.body["uri"] = "qemu+ssh://root@127.0.0.1:9/system"
