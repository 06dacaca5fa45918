"""Flows (journeys): a definition read from its JSON form (definition.py) and checked before it
is saved (check.py). Runs, their timers and their decisions come next (issue 12)."""
