"""`python -m tui.ssh SOCKET`: the console fork server of the SSH sessions (see `zygote`)."""

import sys

from tui.ssh.zygote import serve

serve(sys.argv[1])
