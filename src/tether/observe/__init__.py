"""Observability: spans, stats, change detection, stuck vs slow, cost and attribution."""
