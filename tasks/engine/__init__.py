"""The one delivery engine: when any item (a delivery, a job, a deploy step, a periodic
item) runs again, with one back-off policy and one attempt budget, and errors classed by kind.
"""
