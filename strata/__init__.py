"""Composition root: the CLI, settings, the daemon that wires the parts, and the control API it serves.

Nothing else imports `strata`; it imports everything.
"""

import warnings

from cryptography.utils import CryptographyDeprecationWarning

# asyncssh (2.24, the latest) names cryptography's deprecated DSA classes as it is imported (by `hosting` and
# `tui.ssh`); nothing here makes, offers or needs a DSA key. Set here, before any of them is imported.
warnings.filterwarnings("ignore", "DSA is deprecated", CryptographyDeprecationWarning, r"asyncssh\.")
