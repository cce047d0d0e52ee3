"""Where and how things run: `iaas` (virtual machines) and `paas` (containers on them).

Imports `tenants` only; `paas` may use `iaas`, never the reverse.
"""
