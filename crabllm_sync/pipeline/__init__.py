"""The request lifecycle's shared steps: the route to an adapter (route.py,
mixed into Gateway), the one relay every stream goes through (relay.py) and
how a request ends (finish.py). gateway.py strings them together:
authenticate -> parse -> prepare -> cache -> route -> relay -> finish.
"""

from crabllm_sync.pipeline.finish import Finish, internal
from crabllm_sync.pipeline.relay import Observer, PassThrough, relay

__all__ = ["Finish", "Observer", "PassThrough", "internal", "relay"]
