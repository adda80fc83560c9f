"""The Celery app, its broker transport, the thin task shells (ids in, state re-fetched) that
dispatch to the features, and how a worker process starts (start.py).
"""
