"""The named mutants `scripts/mutate.py` applies: each breaks one guarantee on purpose.

Adding one is one entry: a unique name, the file under ``src/``, the exact original text and
its replacement (several pairs for a mutant that moves code), the tests that must notice, and
what the mutant breaks in words. The original text must occur exactly once in the file, so a
mutant whose code moved is reported ``did not apply`` instead of silently testing nothing.
Test selections are pytest arguments (node ids, ``-k`` expressions).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Mutant:
    name: str
    file: str
    """Path under ``src/``."""
    edits: tuple[tuple[str, str], ...]
    """``(original, replacement)`` pairs, applied in order; each original occurs exactly once."""
    tests: list[str]
    """pytest arguments selecting the tests that must fail."""
    why: str
    """The guarantee this mutant breaks."""


SQLITE = "tether/store/sqlite_sql.py"
POSTGRES = "tether/store/postgres_sql.py"
GATE = "tether/trust/gate.py"
CONTEXT = "tether/engine/context.py"

CONTRACT = "tests/integration/test_store_contract.py"
FENCED = f"{CONTRACT}::test_every_write_is_fenced_after_a_takeover"
ZOMBIE = "tests/integration/test_engine_runs.py::test_a_zombie_worker_cannot_write_after_takeover"
CONCURRENT_CONSUMES = f"{CONTRACT}::test_concurrent_consumes_of_many_runs_each_get_their_own_signal"
RACING_WRITE = ("tests/integration/test_postgres_store.py"
                "::test_a_write_racing_a_takeover_waits_for_it_and_is_fenced")
MAILBOX = f"{CONTRACT}::test_signal_sent_before_the_wait_is_kept_and_consumed_in_order"
LOST_WAKE_UP = f"{CONTRACT}::test_no_lost_wake_up_between_suspend_and_signal"
SIGNAL_WAKES = f"{CONTRACT}::test_signal_wakes_a_waiting_run"
EXPIRED = f"{CONTRACT}::test_expired_lease_is_taken_over_and_counted"
WAIT_FOR_WORK = f"{CONTRACT}::test_wait_for_work_returns_on_new_work"
NOTIFY = ("tests/integration/test_postgres_store.py"
          "::test_notify_wakes_a_waiting_worker_in_another_process")
CLAIM_ONE = f"{CONTRACT}::test_claim_run_takes_one_runnable_run_only"
HEARTBEAT = f"{CONTRACT}::test_heartbeat_extends_every_lease_of_its_owner"
TWO_CLAIMERS = f"{CONTRACT}::test_two_concurrent_claimers_never_get_the_same_run"
APPROVALS = "tests/integration/test_trust_approvals.py"
BUDGET_TESTS = [
    "tests/integration/test_agent_guards.py",
    "tests/unit/test_engine_context.py::test_step_budget_fails_the_run_naming_the_limit",
]
IDEMPOTENCY_TESTS = [
    "tests/integration/test_agent_loop.py"
    "::test_tool_retries_keep_the_idempotency_key_and_failures_reach_the_model",
]

ENGINE_FENCING_TESTS = [
    "tests/integration/test_engine_runs.py::test_a_worker_whose_run_was_taken_over_stops_at_its_next_write",
]
REPLAY_TESTS = ["tests/unit/test_replay.py", "tests/unit/test_engine_context.py"]
POISON_TESTS = ["tests/integration/test_engine_runs.py::test_a_run_taken_over_too_often_fails_as_poison"]
DIGEST_TESTS = [APPROVALS, "tests/unit/test_trust_policy.py"]
CANCEL_FENCES = f"{CONTRACT}::test_cancel_running_run_fences_its_live_writes"

NOT_NULL = "? IS NOT NULL"  # keeps the token's placeholder, ignores its value
PG_NOT_NULL = "%s::bigint IS NOT NULL"


def sqlite(node: str) -> str:
    return f"{node}[sqlite]"


def pg(node: str) -> str:
    return f"{node}[postgres]"


MUTANTS: list[Mutant] = [
    # --- fencing: a holder whose lease was taken over (or whose run is cancelled) cannot write
    Mutant(
        "sqlite-fencing-write-step", SQLITE,
        (("WHERE EXISTS (SELECT 1 FROM runs WHERE {_HELD_LIVE})\nON CONFLICT",
          f"WHERE EXISTS (SELECT 1 FROM runs WHERE id = ? AND {NOT_NULL})\nON CONFLICT"),),
        [sqlite(FENCED), sqlite(ZOMBIE)],
        "a journal write is not conditional on the fencing token",
    ),
    Mutant(
        "sqlite-fencing-finish", SQLITE,
        (('            f"WHERE {condition}",',
          f'            "WHERE id = ? AND {NOT_NULL} AND status = \'running\'",'),),
        [sqlite(FENCED), sqlite(ZOMBIE)],
        "finishing a run is not conditional on the fencing token",
    ),
    Mutant(
        "sqlite-fencing-suspend", SQLITE,
        (('f"lease_expires = NULL, progress = NULL, updated_at = ? WHERE {_HELD_LIVE}",',
          f'"lease_expires = NULL, progress = NULL, updated_at = ? WHERE id = ? AND {NOT_NULL}",'),),
        [sqlite(FENCED)],
        "suspending a run is not conditional on the fencing token",
    ),
    Mutant(
        "sqlite-fencing-consume-signal", SQLITE,
        (('if conn.execute(f"SELECT 1 FROM runs WHERE {_HELD_LIVE}", (run_id, token))',
          f'if conn.execute("SELECT 1 FROM runs WHERE id = ? AND {NOT_NULL}", (run_id, token))'),),
        [sqlite(FENCED), sqlite(CONCURRENT_CONSUMES)],
        "consuming a signal is not conditional on the fencing token",
    ),
    Mutant(
        "sqlite-fencing-release", SQLITE,
        (('f"progress = NULL, wake_at = ?, updated_at = ? WHERE {_HELD}",',
          f'"progress = NULL, wake_at = ?, updated_at = ? WHERE id = ? AND {NOT_NULL}",'),),
        [sqlite(FENCED)],
        "releasing a run is not conditional on the fencing token",
    ),
    Mutant(
        "pg-fencing-write-step", POSTGRES,
        ((" WHERE EXISTS (SELECT 1 FROM runs WHERE {_HELD_LIVE} FOR SHARE)\nON CONFLICT",
          f" WHERE EXISTS (SELECT 1 FROM runs WHERE id = %s AND {PG_NOT_NULL} FOR SHARE)\n"
          "ON CONFLICT"),),
        [pg(FENCED), pg(ZOMBIE)],
        "a journal write (one statement per write) is not conditional on the fencing token",
    ),
    Mutant(
        "pg-fencing-write-steps-batch", POSTGRES,
        (("  FROM s JOIN held h ON h.id = s.run_id AND h.fencing = s.token",
          "  FROM s JOIN held h ON h.id = s.run_id"),),
        [RACING_WRITE],
        "journal writes grouped into one statement are not conditional on their tokens",
    ),
    Mutant(
        "pg-fencing-finish", POSTGRES,
        (("WHERE id = %s AND fencing = %s AND status = 'running'\n   AND (%s = 'cancelled'",
          f"WHERE id = %s AND {PG_NOT_NULL} AND status = 'running'\n   AND (%s = 'cancelled'"),),
        [pg(FENCED), pg(ZOMBIE)],
        "finishing a run is not conditional on the fencing token",
    ),
    Mutant(
        "pg-fencing-suspend", POSTGRES,
        (("    if row is None or row[0] != token:\n        return None, False",
          "    if row is None:\n        return None, False"),),
        [pg(FENCED)],
        "suspending a run is not conditional on the fencing token",
    ),
    Mutant(
        "pg-fencing-consume-signal", POSTGRES,
        (("WITH held AS (SELECT 1 FROM runs WHERE {_HELD_LIVE} FOR SHARE),",
          f"WITH held AS (SELECT 1 FROM runs WHERE id = %s AND {PG_NOT_NULL} FOR SHARE),"),),
        [pg(FENCED)],
        "consuming a signal is not conditional on the fencing token",
    ),
    Mutant(
        "pg-fencing-consume-signals-batch", POSTGRES,
        (("    SELECT r.id FROM runs r JOIN req ON req.run_id = r.id AND req.token = r.fencing",
          "    SELECT r.id FROM runs r JOIN req ON req.run_id = r.id"),),
        [pg(CONCURRENT_CONSUMES)],
        "signals consumed for several runs in one statement ignore the tokens",
    ),
    Mutant(
        "pg-fencing-release", POSTGRES,
        (('f"progress = NULL, wake_at = {NOW}, updated_at = {NOW} WHERE {_HELD} RETURNING 1",',
          f'f"progress = NULL, wake_at = {{NOW}}, updated_at = {{NOW}} WHERE id = %s AND '
          f'{PG_NOT_NULL} RETURNING 1",'),),
        [pg(FENCED)],
        "releasing a run is not conditional on the fencing token",
    ),
    Mutant(
        "engine-ignores-a-fenced-write", CONTEXT,
        (("        if not written:\n            raise self._stop(await self._lost())",
          "        if False:\n            raise self._stop(await self._lost())"),),
        ENGINE_FENCING_TESTS,
        "a worker whose journal write was fenced off keeps running the run (a zombie)",
    ),
    Mutant(
        "sqlite-cancel-does-not-fence-live-writes", SQLITE,
        (('_HELD_LIVE = _HELD + " AND cancel_requested = 0"', "_HELD_LIVE = _HELD"),),
        [sqlite(CANCEL_FENCES)],
        "a run being cancelled keeps journaling and can finish as succeeded",
    ),
    Mutant(
        "pg-cancel-does-not-fence-live-writes", POSTGRES,
        (('_HELD_LIVE = _HELD + " AND NOT cancel_requested"', "_HELD_LIVE = _HELD"),),
        [pg(CANCEL_FENCES)],
        "a run being cancelled keeps journaling and can finish as succeeded",
    ),
    Mutant(
        "pg-fence-without-row-lock", POSTGRES,
        ((" WHERE EXISTS (SELECT 1 FROM runs WHERE {_HELD_LIVE} FOR SHARE)\nON CONFLICT",
          " WHERE EXISTS (SELECT 1 FROM runs WHERE {_HELD_LIVE})\nON CONFLICT"),
         ("     ORDER BY r.id FOR SHARE OF r)\nINSERT INTO steps", "     ORDER BY r.id)\nINSERT INTO steps")),
        [RACING_WRITE],
        "the fence reads the run row without locking it: a write racing a takeover lands",
    ),
    # --- the mailbox: signals are consumed oldest first, by a wait for their name -------------
    Mutant(
        "sqlite-mailbox-newest-first", SQLITE,
        (('"WHERE run_id = ? AND name = ? AND consumed_seq IS NULL ORDER BY id LIMIT 1",',
          '"WHERE run_id = ? AND name = ? AND consumed_seq IS NULL ORDER BY id DESC LIMIT 1",'),),
        [sqlite(MAILBOX)],
        "a wait consumes the newest waiting signal instead of the oldest",
    ),
    Mutant(
        "pg-mailbox-newest-first", POSTGRES,
        (("ORDER BY id LIMIT 1 FOR UPDATE)", "ORDER BY id DESC LIMIT 1 FOR UPDATE)"),),
        [pg(MAILBOX)],
        "a wait consumes the newest waiting signal instead of the oldest",
    ),
    Mutant(
        "pg-mailbox-newest-first-batch", POSTGRES,
        (("ORDER BY o.id LIMIT 1 FOR UPDATE)", "ORDER BY o.id DESC LIMIT 1 FOR UPDATE)"),),
        [pg(CONCURRENT_CONSUMES)],
        "runs resuming together consume their newest signals instead of the oldest",
    ),
    Mutant(
        "sqlite-mailbox-ignores-signal-name", SQLITE,
        (('"WHERE run_id = ? AND name = ? AND consumed_seq IS NULL ORDER BY id LIMIT 1",',
          '"WHERE run_id = ? AND ? IS NOT NULL AND consumed_seq IS NULL ORDER BY id LIMIT 1",'),),
        [sqlite(MAILBOX)],
        "a wait for one signal consumes a signal of another name",
    ),
    Mutant(
        "pg-mailbox-ignores-signal-name", POSTGRES,
        (("         WHERE run_id = %s AND name = %s AND consumed_seq IS NULL\n",
          "         WHERE run_id = %s AND %s::text IS NOT NULL AND consumed_seq IS NULL\n"),),
        [pg(MAILBOX)],
        "a wait for one signal consumes a signal of another name",
    ),
    # --- no lost wake-up: a signal wakes the run waiting for it, even one suspending now ----
    Mutant(
        "sqlite-signal-does-not-wake", SQLITE,
        (("\"WHERE id = ? AND status = 'waiting' AND waiting_for = ?\",",
          "\"WHERE id = ? AND status = 'never' AND waiting_for = ?\","),),
        [sqlite(SIGNAL_WAKES), sqlite(LOST_WAKE_UP)],
        "a signal to a run waiting for it does not make the run runnable",
    ),
    Mutant(
        "pg-signal-does-not-wake", POSTGRES,
        (("WHERE r.id = t.id AND t.status = 'waiting' AND t.waiting_for = %s",
          "WHERE r.id = t.id AND t.status = 'never' AND t.waiting_for = %s"),),
        [pg(SIGNAL_WAKES), pg(LOST_WAKE_UP)],
        "a signal to a run waiting for it does not make the run runnable",
    ),
    Mutant(
        "sqlite-suspend-ignores-pending-signal", SQLITE,
        (("    pending = waiting_for is not None and (", "    pending = False and ("),),
        [sqlite(MAILBOX), sqlite(LOST_WAKE_UP)],
        "a run suspending for a signal already in its mailbox is left waiting",
    ),
    Mutant(
        "pg-suspend-ignores-pending-signal", POSTGRES,
        (("        pending = await cur.fetchone() is not None", "        pending = False"),),
        [pg(MAILBOX), pg(LOST_WAKE_UP)],
        "a run suspending for a signal already in its mailbox is left waiting",
    ),
    Mutant(
        "sqlite-signal-wakes-any-wait", SQLITE,
        (("\"WHERE id = ? AND status = 'waiting' AND waiting_for = ?\",",
          "\"WHERE id = ? AND status = 'waiting' AND ? IS NOT NULL\","),),
        [sqlite(SIGNAL_WAKES)],
        "a signal wakes a run that waits for another signal",
    ),
    Mutant(
        "pg-signal-wakes-any-wait", POSTGRES,
        (("WHERE r.id = t.id AND t.status = 'waiting' AND t.waiting_for = %s",
          "WHERE r.id = t.id AND t.status = 'waiting' AND %s::text IS NOT NULL"),),
        [pg(SIGNAL_WAKES)],
        "a signal wakes a run that waits for another signal",
    ),
    Mutant(
        "sqlite-create-does-not-wake-idle-workers", "tether/store/sqlite.py",
        (("        if result[2] and owner is None:\n            self._notify()",
          "        if False:\n            self._notify()"),),
        [sqlite(WAIT_FOR_WORK)],
        "a new run does not wake a worker of this process waiting for work",
    ),
    Mutant(
        "pg-write-does-not-notify", "tether/store/postgres.py",
        (("            if write.notify:  # after the commit",
          "            if False:  # after the commit"),),
        [pg(WAIT_FOR_WORK), NOTIFY],
        "a write that makes a run runnable does not NOTIFY idle workers",
    ),
    # --- leases: expiry decides takeover, heartbeats extend, claims are exclusive ----------
    Mutant(
        "sqlite-claim-ignores-lease-expiry", SQLITE,
        (("WHERE status = 'running' AND lease_expires < ? AND {runnable}",
          "WHERE status = 'running' AND lease_expires < ? + 3600 AND {runnable}"),),
        [sqlite(EXPIRED), sqlite(TWO_CLAIMERS)],
        "a claim takes over runs whose lease is still live",
    ),
    Mutant(
        "pg-claim-ignores-lease-expiry", POSTGRES,
        (("OR (status = 'running' AND lease_expires < {NOW}))\n               AND ((version",
          "OR (status = 'running' AND lease_expires < {NOW} + 3600))\n               AND ((version"),),
        [pg(EXPIRED), pg(TWO_CLAIMERS)],
        "a claim takes over runs whose lease is still live",
    ),
    Mutant(
        "sqlite-claim-one-ignores-lease-expiry", SQLITE,
        (("\" OR (status = 'running' AND lease_expires < ?))\",",
          "\" OR (status = 'running' AND lease_expires < ? + 3600))\","),),
        [sqlite(CLAIM_ONE)],
        "claiming one run by id takes it from a live holder",
    ),
    Mutant(
        "pg-claim-one-ignores-lease-expiry", POSTGRES,
        (("OR (status = 'running' AND lease_expires < {NOW}))\n             FOR UPDATE",
          "OR (status = 'running' AND lease_expires < {NOW} + 3600))\n             FOR UPDATE"),),
        [pg(CLAIM_ONE)],
        "claiming one run by id takes it from a live holder",
    ),
    Mutant(
        "sqlite-heartbeat-does-not-extend", SQLITE,
        (("\"UPDATE runs SET lease_expires = ? WHERE lease_owner = ? AND status = 'running'\",",
          "\"UPDATE runs SET lease_expires = lease_expires + 0 * ? WHERE lease_owner = ? "
          "AND status = 'running'\","),),
        [sqlite(HEARTBEAT)],
        "a heartbeat reports the leases renewed but does not move their expiry",
    ),
    Mutant(
        "pg-heartbeat-does-not-extend", POSTGRES,
        (("        UPDATE runs r SET lease_expires = {NOW} + %s,",
          "        UPDATE runs r SET lease_expires = r.lease_expires + 0 * %s,"),),
        [pg(HEARTBEAT)],
        "a heartbeat reports the leases renewed but does not move their expiry",
    ),
    Mutant(
        "pg-claim-not-locked", POSTGRES,
        (("             LIMIT %s\n             FOR UPDATE SKIP LOCKED)",
          "             LIMIT %s)"),),
        [pg(TWO_CLAIMERS)],
        "two workers claiming at once can both take the same run",
    ),
    Mutant(
        "engine-poison-off-by-one", "tether/engine/executor.py",
        (("        if claim.recovered and run.recoveries > self._max_recoveries:",
          "        if claim.recovered and run.recoveries > self._max_recoveries + 1:"),),
        POISON_TESTS,
        "a run taken over more than max_recoveries times runs once more instead of failing",
    ),
    Mutant(
        "sqlite-timer-ignored", SQLITE,
        (("WHERE status = 'waiting' AND wake_at <= ? AND {runnable}",
          "WHERE status = 'waiting' AND wake_at <= ? + 3600 AND {runnable}"),),
        [sqlite(f"{CONTRACT}::test_timer_makes_a_waiting_run_due")],
        "a run sleeping on a durable timer is claimed before its time",
    ),
    Mutant(
        "sqlite-heartbeat-renews-other-owners", SQLITE,
        (("\"UPDATE runs SET lease_expires = ? WHERE lease_owner = ? AND status = 'running'\",",
          "\"UPDATE runs SET lease_expires = ? WHERE ? IS NOT NULL AND status = 'running'\","),),
        [sqlite(HEARTBEAT)],
        "a worker's heartbeat keeps other workers' (dead) runs alive",
    ),
    # --- budgets: checked before the call, with the call's estimate, against every budget -----
    Mutant(
        "budget-check-after-the-call", CONTEXT,
        (("            self._check_budget(estimate, budgets)\n            if record_input",
          "            if record_input"),
         ("                usage = carried + step_ctx.usage\n",
          "                usage = carried + step_ctx.usage\n"
          "                self._check_budget(estimate, budgets)\n")),
        BUDGET_TESTS,
        "the budget is checked after the step ran (and spent) instead of before",
    ),
    Mutant(
        "budget-estimate-ignored", "tether/engine/budget.py",
        (("        after = spent + estimate\n", "        after = spent\n"),),
        BUDGET_TESTS,
        "the check looks at what was spent, not at what the next call may spend",
    ),
    Mutant(
        "budget-limit-off-by-one", "tether/engine/budget.py",
        (("            if limit is not None and value > limit:",
          "            if limit is not None and value > limit + 1:"),),
        BUDGET_TESTS,
        "a budget of N model calls allows N + 1",
    ),
    Mutant(
        "budget-node-budgets-ignored", CONTEXT,
        (("        for budget, spent, scope in budgets:\n            self._check_one(",
          "        for budget, spent, scope in ():\n            self._check_one("),),
        BUDGET_TESTS,
        "an agent's own budget (a node budget) is never checked",
    ),
    # --- approvals: a decision runs only with the arguments it was given for ------------------
    Mutant(
        "gate-unedited-approval-for-other-args", GATE,
        (('        if not decision.get("edited") and decision.get("digest") != digest:',
          "        if False:"),),
        [APPROVALS],
        "an approval not marked edited may carry other arguments than the proposed ones",
    ),
    Mutant(
        "gate-recorded-digest-not-rechecked", GATE,
        (('    if gated["digest"] != digest:', "    if False:"),),
        [APPROVALS],
        "the digest journaled by the gate step is not compared with the replayed proposal",
    ),
    Mutant(
        "gate-decision-args-not-checked-against-digest", GATE,
        (('        if not isinstance(given, dict) or args_digest(args) != decision.get("digest"):',
          "        if not isinstance(given, dict):"),),
        [APPROVALS],
        "a decision's arguments are not checked against the digest recorded with it",
    ),
    Mutant(
        "digest-not-canonical", "tether/trust/digest.py",
        (("    return json.dumps(value, sort_keys=True,", "    return json.dumps(value, sort_keys=False,"),),
        DIGEST_TESTS,
        "equal arguments in another key order get another digest",
    ),
    # --- idempotency key: stable across retries and takeovers, distinct per step --------------
    Mutant(
        "idempotency-key-includes-attempt", CONTEXT,
        (('        return f"{self.run_id}:{self.seq}"',
          '        return f"{self.run_id}:{self.seq}:{self.attempt}"'),),
        IDEMPOTENCY_TESTS,
        "the key changes with every retry, so the outside system sees a new request",
    ),
    Mutant(
        "idempotency-key-without-seq", CONTEXT,
        (('        return f"{self.run_id}:{self.seq}"', '        return f"{self.run_id}"'),),
        ["tests/integration/test_engine_runs.py::test_many_concurrent_runs_each_step_once[sqlite]"],
        "two steps of one run share an idempotency key: the second effect is deduplicated away",
    ),
    # --- replay and branches ------------------------------------------------------------------
    Mutant(
        "engine-replay-reruns-completed-steps", CONTEXT,
        (("            if rec.status == \"completed\":\n                return decode(rec.output)",
          "            if False:\n                return decode(rec.output)"),),
        REPLAY_TESTS,
        "a step whose result is journaled runs again on replay",
    ),
    Mutant(
        "engine-nondeterminism-unchecked", CONTEXT,
        (("        if rec is not None and (rec.name != name or rec.kind != kind):",
          "        if False:"),),
        REPLAY_TESTS,
        "replay hands a recorded result to a different step without noticing",
    ),
    Mutant(
        "engine-branches-run-one-after-another", CONTEXT,
        (("            return list(await asyncio.gather(*(run(s, c) for s, c in zip(slots, calls, strict=True))))",
          "            return [await run(s, c) for s, c in zip(slots, calls, strict=True)]"),),
        ["tests/integration/test_agent_pipelines.py"
         "::test_parallel_branches_run_concurrently_and_replay_deterministically"],
        "Parallel branches run one after the other instead of concurrently",
    ),
]
