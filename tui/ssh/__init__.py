"""The SSH front: the console for operators and tenants, and tenant-scoped commands (asyncssh).

Only the warning filter below is done here, and without importing anything (not even cryptography, ~5 ms), so
that the git hook's program (`tui.ssh.receive`, a new process on every push) starts fast."""

import warnings

# asyncssh (2.24, the latest) names cryptography's deprecated DSA classes as it is imported; nothing here makes,
# offers or needs a DSA key. Set before asyncssh's first import (in the console's fork server, this one). The
# warning is cryptography's `CryptographyDeprecationWarning`, a `UserWarning`: the message and module single it out.
warnings.filterwarnings("ignore", "DSA is deprecated", UserWarning, r"asyncssh\.")
