"""The composition root: builds settings, Redis, the inbox, handlers and adapters once per
worker process.
"""
