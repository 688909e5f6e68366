"""`rtfd chaos`: fault injection on the running native stack, with zero-loss reconciliation.

Each scenario (rtfd.chaos.scenarios) drives load, injects a fault (crashed broker or TaskManager, restarted
PostgreSQL, stopped registry, bad input, exhausted connections with a crashed alert consumer), measures the time
until every component is healthy and the pipeline flows again, and reconciles delivered transaction ids with the
archive and the alerts on Kafka with the alerts table (rtfd.chaos.reconcile). docs/reliability.md has the figures.
"""
