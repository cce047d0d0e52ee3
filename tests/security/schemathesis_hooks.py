"""schemathesis's hooks for fuzzing the control API (`SCHEMATHESIS_HOOKS`): an image archive is bytes."""

import schemathesis

schemathesis.serializer.alias("application/x-tar", "application/octet-stream")
