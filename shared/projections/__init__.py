"""Projections: read models built from the event log with exactly-once effect."""
