"""Shared plumbing: Redis server and store, handler registry, logs, metrics, Sentry, audit.
"""
