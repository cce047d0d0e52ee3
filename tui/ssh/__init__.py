"""The SSH front: the console for operators and tenants, and tenant-scoped commands (asyncssh)."""

from tui.ssh.server import Access, Grant, SshServer, serve_ssh

__all__ = ["Access", "Grant", "SshServer", "serve_ssh"]
