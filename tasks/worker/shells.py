"""The worker's Celery tasks: thin shells that take an engine item's id, re-read its state and
run the plain function that does the work (the functions are what the tests call).

Every message is sent by the engine (tasks/engine/schedule.py) or the receiver (tasks/intake/inbox.py); a
task never re-queues itself and never relies on Celery's retries: when and whether work runs
again is the engine's decision, in one place.
"""

from __future__ import annotations

from tasks.deploy import driver
from tasks.engine.schedule import TASKS
from tasks.wiring.runtime import runtime
from tasks.worker import jobs, periodic
from tasks.worker.celery_app import app
from tasks.worker.dispatch import process_delivery

_OPTIONS = {"acks_late": True, "reject_on_worker_lost": True, "ignore_result": True}


@app.task(name=TASKS["d"], **_OPTIONS)
def process_event(delivery_id: str) -> str:
    return process_delivery(runtime(), delivery_id)


@app.task(name=TASKS["s"], **_OPTIONS)
def advance_deploy(deploy_id: str) -> str:
    return driver.advance_deploy(runtime(), deploy_id)


@app.task(name=TASKS["j"], **_OPTIONS)
def run_job(ident: str) -> str:
    return jobs.run_job(runtime(), ident)


@app.task(name=TASKS["p"], **_OPTIONS)
def run_periodic(name: str) -> str:
    return periodic.run_periodic(runtime(), name)
