"""The SSH front: the console for operators and tenants, and tenant-scoped commands (asyncssh)."""

from tui.ssh.server import Access, Grant, serve_ssh

__all__ = ["Access", "Grant", "serve_ssh"]
