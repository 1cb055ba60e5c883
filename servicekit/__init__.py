"""Process plumbing both services share: settings, logging, tracing, addresses, ids, retries.

The bot and the sidecar depend on this package and never on each other; it depends on neither.
"""
