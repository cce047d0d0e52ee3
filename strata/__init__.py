"""Composition root: the CLI, settings, the daemon that wires the parts, and the control API it serves.

Nothing else imports `strata`; it imports everything.
"""
