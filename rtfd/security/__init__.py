"""Security checks that run against a live or finished stack: the log scanner (rtfd.security.logscan)."""
