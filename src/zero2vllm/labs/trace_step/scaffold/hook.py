"""Your hook: vLLM calls on_step after every Scheduler.schedule() of an offline run.

scheduler_output is vLLM's SchedulerOutput (vllm/v1/core/sched/output.py). Read it there: which
field says how many tokens each request runs this step, and where each request's KV block ids
are (a new request brings all of its blocks; a running one only the blocks added this step).
This file runs inside vLLM's venv: import from vllm freely, nothing from zero2vllm.
"""


def on_step(scheduler_output) -> dict:
    # TODO: return {"total": int, "tokens": {req_id: int}, "blocks": {req_id: [all its block ids]}}
    raise NotImplementedError("fill in on_step")
