"""Which engine this daemon's API asks for what a user wants of an instance (its logs, a shell in it).

The leader's pool holds every node it drives. A standby's holds its own host's engine only: the remote hosts are
the leader's to drive, so a standby reaches their engines through its own SSH logins (`Tunnels`), never the
leader's, and its API answers for them while the leader is down. A node reached by neither is said to be, by
name and why (`EngineUnavailable`), so no instance is ever left out without a word.
"""

from collections.abc import Callable

from hosting.paas.nodes import NodePool
from hosting.paas.runtime import EngineUnavailable, NodeRuntime
from hosting.paas.tunnels import Tunnels


class Reach:
    """The runtime of a node by name: from `tunnels` while this daemon stands by (`leads` says it does not) and
    the node is a remote host they log in to, else from `pool`."""

    def __init__(self, pool: NodePool, tunnels: Tunnels, leads: Callable[[], bool]) -> None:
        self.pool, self.tunnels, self.leads = pool, tunnels, leads

    def runtime(self, node: str) -> NodeRuntime:
        """`node`'s engine as this daemon reaches it; `EngineUnavailable` naming the node and why if it does not."""
        if node in self.tunnels and not self.leads():
            return self.tunnels.runtime(node)
        if node in self.pool:
            return self.pool[node].runtime
        if self.leads():
            why = f"not connected to this daemon now (`strata nodes show {node}` says why)"
        else:
            why = "not reached from this daemon, which stands by (the leader's API reaches it)"
        raise EngineUnavailable(f"node {node} is {why}")
