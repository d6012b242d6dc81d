"""Measurement tools: accuracy evaluation (and, later, the service benchmark)."""
