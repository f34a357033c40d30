"""What an operator's tools read from the running gateway: Prometheus metrics, liveness and readiness.

- histogram  [pure] fixed-bucket counting for the hot paths (the bind core, the store writer): a list index
             and an add per observation, exported as a Prometheus histogram at scrape time
- health     [pure] `readiness()`: is the gateway ready for traffic, and if not, which carrier and why
             (the HTTP /ready and the admin socket both ask it)
- metrics    the scrape: a prometheus_client `Collector` that reads the parts' `statistics()` snapshots
- http       [trio] the small HTTP server: GET /metrics, /live, /ready

Nothing here is imported by this package's `__init__`: the bind core imports `gateway.ops.histogram` and must
not import trio through it (tests/unit/test_health.py checks both pure modules in a fresh interpreter).
"""
