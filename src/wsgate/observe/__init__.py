"""Observability: error log, access log, metrics, status pages."""
