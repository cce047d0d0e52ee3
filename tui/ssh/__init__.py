"""The SSH front: the console for operators and tenants, and tenant-scoped commands (asyncssh).

Only the warning filter below is done here, so the git hook's program (`tui.ssh.receive`) starts fast."""

import warnings

from cryptography.utils import CryptographyDeprecationWarning

# asyncssh (2.24, the latest) names cryptography's deprecated DSA classes as it is imported; nothing here makes,
# offers or needs a DSA key. Set before asyncssh's first import (in the console's fork server, this one).
warnings.filterwarnings("ignore", "DSA is deprecated", CryptographyDeprecationWarning, r"asyncssh\.")
