"""Who: tenants, their apps (desired state), plans and quotas, keys and tokens, the audit log.

The domain knows no runtime and no screen: it imports nothing else of Strata. Its service modules
(`tenancy`, `apps`, `keys`, `tokens`, `audit`) are the only writers of the control-plane database.
"""
