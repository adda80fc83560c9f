"""The Celery app, its broker transport, and the thin task shells (ids in, state re-fetched)
that dispatch to the features.
"""
