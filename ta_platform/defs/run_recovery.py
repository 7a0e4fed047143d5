"""Crash safety at the orchestration level: dead runs are failed and their pool slots freed.

Why: a run executed in process (``ta-platform materialize``, ``dagster asset materialize``) that is
killed with SIGKILL never reports its end. Its record stays STARTED and the pool slot its step
claimed (``gpu``, limit 1) stays taken, so every later extraction waits forever (Dagster logs
"Step still blocked by limit for pool gpu" at DEBUG only). Dagster's run monitoring (enabled in
config/dagster.yaml, run by the daemon of ``dagster dev``) fails runs stuck STARTING, cancels runs
stuck CANCELING and frees the slots of runs that have ended, but it cannot see a STARTED run whose
process died: the default run launcher has no worker health check, and in-process runs have no
launcher at all.

So ``ta-platform materialize`` tags every run it launches with its process identity
(``ta_platform.common.process_identity``) and, before each stage and while a stage waits for a
pool, applies these rules to every run that is in progress or holds a pool slot or queue entry:

- tagged with a runner on this host whose process is gone (or whose pid now belongs to a newer
  process): the run is reported failed and its slots and queued claims are freed;
- finished (success, failure, canceled) yet still holding slots: the slots are freed (the same
  rule as run monitoring's ``free_slots_after_run_end_seconds``);
- holding slots but absent from the run storage (deleted): the slots are freed;
- anything else (a live runner, another host, a run launched from the UI or the daemon) is left
  alone and named when a stage has to wait for its slot.

Every freed run is returned as a ``Recovery`` whose ``describe()`` is the log line.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import dagster as dg

from ta_platform.common.process_identity import DEAD, ProcessIdentity

IN_PROGRESS = (dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.CANCELING)
FINISHED = (dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED)
# A tagged run killed between its creation and its start stays NOT_STARTED: judged like a started one.
JUDGED = (dg.DagsterRunStatus.NOT_STARTED, *IN_PROGRESS)


def runner_tags() -> dict[str, str]:
    """Tags identifying this process as the runner of the runs it executes in process."""
    return ProcessIdentity.current().as_tags()


def job_pools(job: dg.JobDefinition) -> set[str]:
    """The concurrency pools the steps of ``job`` claim (e.g. ``{"gpu"}`` for activations)."""
    return {op.pool for op in job.graph.iterate_op_defs() if getattr(op, "pool", None)}


@dataclass(frozen=True)
class Recovery:
    """One run whose orchestration state was cleaned, and why."""

    run_id: str
    job_name: str
    status: str
    reason: str
    pools: tuple[str, ...]
    marked_failed: bool

    def describe(self) -> str:
        action = "marked FAILED and freed" if self.marked_failed else "freed"
        slots = f"its slots in pool(s) {', '.join(self.pools)}" if self.pools else "(it held no pool slot)"
        return f"[recovery] {action} run {self.run_id} ({self.job_name or 'unknown job'}, was {self.status}) " \
               f"{slots}: {self.reason}"


@dataclass
class PoolUse:
    """Which runs hold or wait for which pools' slots, each as run id -> pool -> step keys.

    ``claimed``: slots taken. ``assigned``: queue entries granted a slot; they count against the
    limit until freed, even when the step died before taking the slot. ``waiting``: queue entries
    not yet granted (a step blocked by the limit).
    """

    claimed: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    assigned: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    waiting: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    limits: dict[str, int] = field(default_factory=dict)

    def pools_of(self, run_id: str) -> tuple[str, ...]:
        """Every pool in which ``run_id`` holds or waits for a slot (what freeing it releases)."""
        return tuple(sorted({*self.claimed.get(run_id, {}), *self.assigned.get(run_id, {}),
                             *self.waiting.get(run_id, {})}))

    def holders(self, pool: str) -> dict[str, list[str]]:
        """run id -> steps that take one of ``pool``'s slots (claimed, or granted and not yet claimed)."""
        held: dict[str, set[str]] = {}
        for table in (self.claimed, self.assigned):
            for run_id, by_pool in table.items():
                held.setdefault(run_id, set()).update(by_pool.get(pool, []))
        return {run_id: sorted(steps) for run_id, steps in sorted(held.items()) if steps}


def pool_use(instance: dg.DagsterInstance, pools: Iterable[str] | None = None) -> PoolUse:
    """The instance's concurrency state (what ``dagster instance concurrency get --all`` shows)."""
    storage = instance.event_log_storage
    use = PoolUse()
    if not storage.supports_global_concurrency_limits:
        return use
    keys = sorted(set(pools) if pools is not None else storage.get_concurrency_keys())
    for key, info in storage.get_concurrency_infos(keys).items():
        use.limits[key] = info.slot_count
        for slot in info.claimed_slots:
            use.claimed.setdefault(slot.run_id, {}).setdefault(key, []).append(slot.step_key)
        for step in info.pending_steps:
            table = use.waiting if step.assigned_timestamp is None else use.assigned
            table.setdefault(step.run_id, {}).setdefault(key, []).append(step.step_key)
    return use


def _verdict(run: dg.DagsterRun | None, holds_slots: bool) -> tuple[bool, str] | None:
    """(mark failed?, reason) when ``run``'s orchestration state must be cleaned, else None."""
    if run is None:
        return (False, "the run no longer exists in the run storage") if holds_slots else None
    if run.status in FINISHED:
        return (False, f"the run already ended ({run.status.value}) but kept its slots") if holds_slots else None
    if run.status not in JUDGED:
        return None  # queued: the run queue owns it
    runner = ProcessIdentity.from_tags(dict(run.tags))
    if runner is None:
        return None  # launched from the UI, the daemon or another CLI: cannot judge its process
    state, why = runner.state()
    return (True, f"its runner {why}") if state == DEAD else None


def recover_dead_runs(instance: dg.DagsterInstance) -> list[Recovery]:
    """Fail the in-progress runs whose runner is gone and free every slot held by a dead run."""
    use = pool_use(instance)
    in_progress = {r.dagster_run.run_id: r.dagster_run
                   for r in instance.get_run_records(filters=dg.RunsFilter(statuses=list(JUDGED)))}
    candidates = sorted({*in_progress, *use.claimed, *use.assigned, *use.waiting})
    recoveries = []
    for run_id in candidates:
        run = in_progress.get(run_id) or instance.get_run_by_id(run_id)
        pools = use.pools_of(run_id)
        verdict = _verdict(run, holds_slots=bool(pools))
        if verdict is None:
            continue
        mark_failed, reason = verdict
        if mark_failed and run is not None:
            current = instance.get_run_by_id(run_id)  # it may have ended since we listed it
            if current is not None and current.status in JUDGED:
                instance.report_run_failed(current, f"ta-platform: {reason}; run marked failed and its "
                                                    "pool slots freed by a later command")
            else:
                mark_failed = False
        if pools:
            instance.event_log_storage.free_concurrency_slots_for_run(run_id)
        recoveries.append(Recovery(run_id=run_id, job_name=run.job_name if run else "",
                                   status=run.status.value if run else "DELETED", reason=reason,
                                   pools=pools, marked_failed=mark_failed))
    return recoveries


def describe_holders(instance: dg.DagsterInstance, pool: str, use: PoolUse, exclude: str | None = None) -> str:
    """Who holds ``pool``'s slots: run id, job, step, status and whether its runner is alive."""
    parts = []
    for run_id, steps in use.holders(pool).items():
        if run_id == exclude:
            continue
        run = instance.get_run_by_id(run_id)
        runner = ProcessIdentity.from_tags(dict(run.tags)) if run else None
        who = runner.state()[1] if runner else "launched outside ta-platform materialize (UI, daemon or CLI)"
        parts.append(f"run {run_id} ({run.job_name if run else 'deleted run'}, step {', '.join(steps)}, "
                     f"{run.status.value if run else 'DELETED'}; {who})")
    return "; ".join(parts) or "no run (the slot is being reassigned)"


class PoolWaitWatch:
    """Reports, at INFO and every ``report_every`` seconds, a run that waits for a pool slot.

    Why: Dagster logs a blocked step at DEBUG only, so a stage waiting on a slot looks hung. Each
    ``check`` also frees dead holders (``recover_dead_runs``), so a runner that dies while this run
    waits does not block it. ``check`` takes the time as an argument (deterministic tests); ``start``
    runs it in a daemon thread every ``poll`` seconds while the stage executes.
    """

    def __init__(self, instance: dg.DagsterInstance, run_id: str, pools: Iterable[str],
                 log: Callable[[str], None], *, label: str = "", report_every: float = 60.0, poll: float = 5.0,
                 owns_instance: bool = False):
        self.instance, self.run_id, self.pools, self.log = instance, run_id, sorted(pools), log
        self.owns_instance = owns_instance
        self.label, self.report_every, self.poll = label, report_every, poll
        self._waiting_since: float | None = None
        self._last_report: float | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def check(self, now: float) -> str | None:
        """One poll at time ``now``: the INFO line printed, if any."""
        use = pool_use(self.instance, self.pools)
        waiting = sorted(use.waiting.get(self.run_id, {}))
        if not waiting:
            self._waiting_since = self._last_report = None
            return None
        for recovery in recover_dead_runs(self.instance):
            self.log(recovery.describe())
        if self._waiting_since is None:
            self._waiting_since = now
        waited = now - self._waiting_since
        if waited < self.report_every or (self._last_report is not None and now - self._last_report < self.report_every):
            return None
        self._last_report = now
        use = pool_use(self.instance, self.pools)
        holders = "; ".join(f"pool {pool} ({use.limits.get(pool, '?')} slot(s)) held by "
                            f"{describe_holders(self.instance, pool, use, exclude=self.run_id)}" for pool in waiting)
        line = f"{self.label}run {self.run_id} has waited {waited:.0f}s for a slot: {holders}"
        self.log(line)
        run = self.instance.get_run_by_id(self.run_id)
        if run is not None:  # the same line, at INFO, in the run's event log (the UI shows it)
            self.instance.report_engine_event(line, run)
        return line

    def _loop(self) -> None:
        while not self._stop.wait(self.poll):
            try:
                self.check(time.monotonic())
            except Exception as exc:  # a reporting failure must never break the stage it watches
                self.log(f"{self.label}pool wait watch failed: {exc}")

    def __enter__(self) -> PoolWaitWatch:
        if self.pools:
            self._thread = threading.Thread(target=self._loop, name="pool-wait-watch", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        if self.owns_instance:
            self.instance.dispose()


class StageGuard:
    """What ``ta-platform materialize`` does around each stage: clean dead runs, name busy pools,
    tag the run with its runner and watch it while it waits for a slot."""

    def __init__(self, instance: dg.DagsterInstance, log: Callable[[str], None], *, report_every: float = 60.0):
        self.instance, self.log, self.report_every = instance, log, report_every

    def before(self, label: str, job: dg.JobDefinition) -> None:
        """Free dead runs' state, then say right away when a pool this stage needs is taken."""
        for recovery in recover_dead_runs(self.instance):
            self.log(recovery.describe())
        pools = job_pools(job)
        use = pool_use(self.instance, pools)
        for pool in sorted(pools):
            held = sum(len(steps) for steps in use.holders(pool).values())
            if use.limits.get(pool) and held >= use.limits[pool]:
                self.log(f"{label}pool {pool} is busy, this stage will wait for it (reported every "
                         f"{self.report_every:.0f}s): held by {describe_holders(self.instance, pool, use)}")

    def tags(self, tags: dict[str, str]) -> dict[str, str]:
        return {**tags, **runner_tags()}

    def watch(self, label: str, job: dg.JobDefinition, run_id: str) -> PoolWaitWatch:
        """A watch over ``run_id`` on its own instance handle (the stage's handle stays single-threaded)."""
        pools = job_pools(job)
        instance = dg.DagsterInstance.get() if pools else self.instance
        return PoolWaitWatch(instance, run_id, pools, self.log, label=label, report_every=self.report_every,
                             owns_instance=bool(pools))
