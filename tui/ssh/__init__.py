"""The SSH front: the console for operators and tenants, and tenant-scoped commands (asyncssh)."""

import warnings

from cryptography.utils import CryptographyDeprecationWarning

# asyncssh (2.24, the latest) names cryptography's deprecated DSA classes as it is imported; nothing here makes,
# offers or needs a DSA key. Set before asyncssh's first import (in the console's fork server, this one).
warnings.filterwarnings("ignore", "DSA is deprecated", CryptographyDeprecationWarning, r"asyncssh\.")

from tui.ssh.server import Access, Grant, SshServer, serve_ssh  # noqa: E402

__all__ = ["Access", "Grant", "SshServer", "serve_ssh"]
