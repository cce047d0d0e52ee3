"""The Textual console, and serving it (and tenant shells) over SSH. A pure client of the control API:
it never opens the database or Docker, so it shows exactly what its token may see.

Nothing is imported here: the git hook's program (`tui.ssh.receive`) must start without Textual or asyncssh.
"""
