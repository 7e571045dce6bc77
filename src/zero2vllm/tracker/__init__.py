"""The tracker: plan, store, progress, actions, durations, review, summary, report, evidence.

Imports only the standard library and the light CLI libraries (a test enforces it)."""
