"""What state each run of a plan is in: done, running, queued, failed (and why),
interrupted or missing, from the results store and the executor's word on its jobs."""
from __future__ import annotations

from harness import store
from harness.plan import Plan, key
from harness.plugins import registry

STATES = ("done", "running", "queued", "failed", "interrupted", "missing")


def live_jobs(plan: Plan) -> dict[str, str]:
    """Spec key -> ``queued`` or ``running`` for the plan's jobs its executor still holds."""
    executor = registry().executors.get(plan.executor)
    return executor.live(plan) if executor is not None else {}


def run_states(plan: Plan, live: dict[str, str] | None = None) -> list[dict]:
    """One row per run: its state (done, running, queued, failed, interrupted or missing)
    and, for a failure, the reason (from status.json or the job's log). ``live``: the
    executor's word on its jobs, asked here when not given."""
    live = live_jobs(plan) if live is None else live
    rows = []
    for spec in plan.runs:
        status = store.run_status(plan.run_dir(spec))
        job = plan.jobs.get(key(spec))
        state, reason = _state(status, live.get(key(spec)), job is not None)
        if state == "failed" and reason in ("", store.DIED):  # the job's log may say why
            reason = _job_log_tail(plan, job) or reason or "the job ended without a result"
        rows.append({"method": spec.method, "dataset": spec.dataset, "seed": spec.seed,
                     "state": state, "job": job or "", "reason": reason})
    return rows


def _state(status: dict, live: str | None, submitted: bool) -> tuple[str, str]:
    """A run's state from its ``store.run_status`` and the executor's word on its job."""
    if status["status"] == "finished":
        return "done", ""
    if live is not None:  # the job is in the executor's hands (a requeued one, too)
        return live, ""
    if status["status"] in ("failed", "interrupted"):
        return status["status"], status.get("reason", "")
    if submitted:
        return "failed", ""  # the job ended without a result: killed, timed out, lost
    if status["status"] == "running":  # its process lives (or runs on another machine)
        return "running", ""
    return "missing", ""


def _job_log_tail(plan: Plan, job: str | None, lines: int = 3) -> str:
    """The last lines of a job's stderr: why a job died before the run said so."""
    if not job:
        return ""
    logs = sorted(store.jobs_dir(plan.options.results, plan.run_id).glob(f"{job}_*_log.err"))
    if not logs:
        return ""
    tail = [line for line in logs[-1].read_text(errors="replace").splitlines() if line.strip()]
    return " | ".join(tail[-lines:])
