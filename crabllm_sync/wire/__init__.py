"""Wire types of the APIs the gateway speaks to its clients."""
