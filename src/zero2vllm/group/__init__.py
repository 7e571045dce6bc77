"""The group server: study groups on PostgreSQL, and the sync of each learner's local store.

Nothing in the tracker wing or `z2v status` imports this package (tests/test_architecture.py).
"""
