"""Data quality, freshness, drift, PII and ownership: the governance of every feature."""
