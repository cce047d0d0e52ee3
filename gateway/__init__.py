"""The HTTP front door: route table, reverse proxy, per-route metrics, rate limits.

It learns routes through one narrow interface the control plane fills, and imports no `hosting`, no `tui`.
"""
