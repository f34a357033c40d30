"""Several gateway nodes (docs/scaling.md): what they share lives in Valkey (or Redis).

`core.py` [pure] holds the decisions and the formats: the [cluster] config, key names, the server-side
scripts, how list changes, receipts and stream ids are written, and the carrier-account TPS budget a
carrier's binds share. `shared.py` [trio] is the shell that talks to Valkey through coredis. This file
imports neither, so `gateway.cluster.core` stays importable without an event loop.
"""
