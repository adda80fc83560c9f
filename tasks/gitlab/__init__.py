"""GitLab: the python-gitlab client adapter, the event model read from hooks, checked facts
(effects keyed by what they act on) and the one updatable comment.
"""
