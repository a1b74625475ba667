"""The named mutants `scripts/mutate.py` applies: each breaks one guarantee on purpose.

Adding one is one entry: a unique name, the file under ``src/``, the exact original text and
its replacement (several pairs for a mutant that moves code; a triple names another file), the
tests that must notice, and what the mutant breaks in words. The original text must occur exactly once in the file, so a
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
    edits: tuple[tuple[str, ...], ...]
    """``(original, replacement)`` pairs, applied in order; each original occurs exactly once.
    A guarantee kept in two layers is broken in both: ``(file, original, replacement)``
    triples edit another file than `file`."""
    tests: list[str]
    """pytest arguments selecting the tests that must fail."""
    why: str
    """The guarantee this mutant breaks."""


SQLITE = "tether/store/sqlite_sql.py"
SQLITE_LAYERS = "tether/store/sqlite_layers_sql.py"
POSTGRES = "tether/store/postgres_sql.py"
PG_JOURNAL = "tether/store/postgres_journal_sql.py"
GATE = "tether/trust/gate.py"
CONTEXT = "tether/engine/context.py"
STEP_BUDGET = "tether/engine/step_budget.py"
STEPS = "tether/engine/steps.py"

CONTRACT = "tests/integration/test_store_contract.py"
FENCED = f"{CONTRACT}::test_every_write_is_fenced_after_a_takeover"
ZOMBIE = "tests/integration/test_engine_runs.py::test_a_zombie_worker_cannot_write_after_takeover"
CONCURRENT_CONSUMES = f"{CONTRACT}::test_concurrent_consumes_of_many_runs_each_get_their_own_signal"
RACING_WRITE = ("tests/integration/test_postgres_store.py"
                "::test_a_write_racing_a_takeover_waits_for_it_and_is_fenced")
MAILBOX = f"{CONTRACT}::test_signal_sent_before_the_wait_is_kept_and_consumed_in_order"
LOST_WAKE_UP = f"{CONTRACT}::test_no_lost_wake_up_between_suspend_and_signal"
BURST = (
    "tests/integration/test_postgres_store.py::"
    "test_starts_and_signals_of_one_loop_turn_each_get_their_own_answer"
)
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
POISON_TESTS = [
    "tests/integration/test_engine_runs.py::test_a_run_taken_over_too_often_fails_as_poison",
    "tests/integration/test_engine_leases.py"
    "::test_a_run_that_kills_its_workers_at_one_step_fails_as_poison[sqlite]",
]
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
        # Both journal upserts: the plain one and the one that carries the step's events.
        (("({_STEP_COLUMNS})\nSELECT" + " ?," * 13 + " ?\nWHERE EXISTS (SELECT 1 FROM runs WHERE {_HELD_LIVE})",
          "({_STEP_COLUMNS})\nSELECT" + " ?," * 13
          + f" ?\nWHERE EXISTS (SELECT 1 FROM runs WHERE id = ? AND {NOT_NULL})"),
         ("ev_pos)\nSELECT" + " ?," * 14 + " ?\nWHERE EXISTS (SELECT 1 FROM runs WHERE {_HELD_LIVE})",
          "ev_pos)\nSELECT" + " ?," * 14
          + f" ?\nWHERE EXISTS (SELECT 1 FROM runs WHERE id = ? AND {NOT_NULL})"),),
        [sqlite(FENCED), sqlite(ZOMBIE)],
        "a journal write is not conditional on the fencing token",
    ),
    Mutant(
        "sqlite-fencing-finish", SQLITE,
        (('        f"WHERE {condition} RETURNING {RUN_COLUMNS}",',
          f'        "WHERE id = ? AND {NOT_NULL} AND status = \'running\' RETURNING "'
          '        f"{RUN_COLUMNS}",'),),
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
        (('    if conn.execute(f"SELECT 1 FROM runs WHERE {_HELD_LIVE}", (run_id, token)).fetchone() '
          'is None:\n        return None\n    # Idempotent as on PostgreSQL',
          f'    if conn.execute("SELECT 1 FROM runs WHERE id = ? AND {NOT_NULL}", (run_id, token))'
          '.fetchone() is None:\n        return None\n    # Idempotent as on PostgreSQL'),),
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
        "pg-fencing-write-step", PG_JOURNAL,
        ((" WHERE EXISTS (SELECT 1 FROM runs WHERE {HELD_LIVE} FOR SHARE)\nON CONFLICT",
          f" WHERE EXISTS (SELECT 1 FROM runs WHERE id = %s AND {PG_NOT_NULL} FOR SHARE)\n"
          "ON CONFLICT"),),
        [pg(FENCED), pg(ZOMBIE)],
        "a journal write (one statement per write) is not conditional on the fencing token",
    ),
    Mutant(
        "pg-fencing-write-steps-batch", PG_JOURNAL,
        (("  FROM s JOIN held h ON h.id = s.run_id AND h.fencing = s.token",
          "  FROM s JOIN held h ON h.id = s.run_id"),),
        [RACING_WRITE],
        "journal writes grouped into one statement are not conditional on their tokens",
    ),
    Mutant(
        "pg-fencing-finish", PG_JOURNAL,
        (("WHERE id = %s AND fencing = %s AND status = 'running'\n       AND (%s = 'cancelled'",
          f"WHERE id = %s AND {PG_NOT_NULL} AND status = 'running'\n       AND (%s = 'cancelled'"),),
        [pg(FENCED), pg(ZOMBIE)],
        "finishing a run is not conditional on the fencing token",
    ),
    Mutant(
        "pg-fencing-suspend", PG_JOURNAL,
        (("    if row is None or row[0] != token:\n        return None, False",
          "    if row is None:\n        return None, False"),),
        [pg(FENCED)],
        "suspending a run is not conditional on the fencing token",
    ),
    Mutant(
        "pg-fencing-consume-signal", PG_JOURNAL,
        (('_CONSUME_SIGNAL = f"""\nWITH held AS (SELECT 1 FROM runs WHERE {HELD_LIVE} FOR SHARE),',
          '_CONSUME_SIGNAL = f"""\nWITH held AS (SELECT 1 FROM runs WHERE id = %s AND '
          f'{PG_NOT_NULL} FOR SHARE),'),),
        [pg(FENCED)],
        "consuming a signal is not conditional on the fencing token",
    ),
    Mutant(
        "pg-fencing-consume-signals-batch", PG_JOURNAL,
        (("    SELECT r.id FROM runs r JOIN req ON req.run_id = r.id AND req.token = r.fencing",
          "    SELECT r.id FROM runs r JOIN req ON req.run_id = r.id"),),
        [pg(CONCURRENT_CONSUMES)],
        "signals consumed for several runs in one statement ignore the tokens",
    ),
    Mutant(
        "pg-fencing-release", PG_JOURNAL,
        (('f"progress = NULL, wake_at = {NOW}, updated_at = {NOW} WHERE {HELD} RETURNING 1",',
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
        "pg-fencing-suspend-batch", PG_JOURNAL,
        ((" WHERE r.id = ANY(%b::text[]) AND r.id = p.id AND r.fencing = p.token\n",
          " WHERE r.id = ANY(%b::text[]) AND r.id = p.id AND p.token IS NOT NULL\n"),),
        ["tests/integration/test_postgres_store.py::"
         "test_suspensions_of_one_loop_turn_share_a_statement_and_keep_their_guarantees"],
        "suspensions applied together are not conditional on the fencing token",
    ),
    Mutant(
        "pg-suspend-batch-ignores-pending-signal", PG_JOURNAL,
        (("UPDATE runs r SET status = CASE WHEN p.pending THEN 'queued' ELSE 'waiting' END,",
          "UPDATE runs r SET status = CASE WHEN false THEN 'queued' ELSE 'waiting' END,"),),
        ["tests/integration/test_postgres_store.py::"
         "test_suspensions_of_one_loop_turn_share_a_statement_and_keep_their_guarantees"],
        "a run suspended with others for a signal already in its mailbox waits for ever",
    ),
    Mutant(
        "pg-cancel-does-not-fence-live-writes", POSTGRES,
        (('HELD_LIVE = HELD + " AND NOT cancel_requested"', "HELD_LIVE = HELD"),),
        [pg(CANCEL_FENCES)],
        "a run being cancelled keeps journaling and can finish as succeeded",
    ),
    Mutant(
        "pg-fence-without-row-lock", PG_JOURNAL,
        ((" WHERE EXISTS (SELECT 1 FROM runs WHERE {HELD_LIVE} FOR SHARE)\nON CONFLICT",
          " WHERE EXISTS (SELECT 1 FROM runs WHERE {HELD_LIVE})\nON CONFLICT"),
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
        "pg-mailbox-newest-first", PG_JOURNAL,
        (("         WHERE run_id = %s AND name = %s AND consumed_seq IS NULL\n"
          "           AND EXISTS (SELECT 1 FROM held) AND NOT EXISTS (SELECT 1 FROM earlier)\n"
          "         ORDER BY id LIMIT 1 FOR UPDATE)",
          "         WHERE run_id = %s AND name = %s AND consumed_seq IS NULL\n"
          "           AND EXISTS (SELECT 1 FROM held) AND NOT EXISTS (SELECT 1 FROM earlier)\n"
          "         ORDER BY id DESC LIMIT 1 FOR UPDATE)"),),
        [pg(MAILBOX)],
        "a wait consumes the newest waiting signal instead of the oldest",
    ),
    Mutant(
        "pg-mailbox-newest-first-batch", PG_JOURNAL,
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
        "pg-mailbox-ignores-signal-name", PG_JOURNAL,
        (("         WHERE run_id = %s AND name = %s AND consumed_seq IS NULL\n",
          "         WHERE run_id = %s AND %s::text IS NOT NULL AND consumed_seq IS NULL\n"),),
        [pg(MAILBOX)],
        "a wait for one signal consumes a signal of another name",
    ),
    # --- no lost wake-up: a signal wakes the run waiting for it, even one suspending now ----
    Mutant(
        "sqlite-signal-does-not-wake", SQLITE,
        (("f\"WHERE id = ? AND status = 'waiting' AND {_WAITS_FOR}\",",
          "f\"WHERE id = ? AND status = 'never' AND {_WAITS_FOR}\","),),
        [sqlite(SIGNAL_WAKES), sqlite(LOST_WAKE_UP)],
        "a signal to a run waiting for it does not make the run runnable",
    ),
    Mutant(
        "pg-signal-does-not-wake", POSTGRES,
        (("     WHERE r.id = t.id AND t.status = 'waiting'\n       AND (t.waiting_for = %s",
          "     WHERE r.id = t.id AND t.status = 'never'\n       AND (t.waiting_for = %s"),),
        [pg(SIGNAL_WAKES), pg(LOST_WAKE_UP)],
        "a signal to a run waiting for it does not make the run runnable",
    ),
    Mutant(
        "sqlite-suspend-ignores-pending-signal", SQLITE,
        (("    pending = bool(names) and (", "    pending = False and ("),),
        [sqlite(MAILBOX), sqlite(LOST_WAKE_UP)],
        "a run suspending for a signal already in its mailbox is left waiting",
    ),
    Mutant(
        "pg-suspend-ignores-pending-signal", PG_JOURNAL,
        (("            SELECT EXISTS (\n                SELECT 1 FROM signals WHERE run_id = %s",
          "            SELECT false AND EXISTS (\n                SELECT 1 FROM signals WHERE run_id = %s"),),
        [pg(MAILBOX), pg(LOST_WAKE_UP)],
        "a run suspending for a signal already in its mailbox is left waiting",
    ),
    Mutant(
        "pg-signal-batch-does-not-wake", POSTGRES,
        (("     WHERE r.id = t.id AND t.status = 'waiting'\n       AND (t.waiting_for = req.name",
          "     WHERE r.id = t.id AND t.status = 'never'\n       AND (t.waiting_for = req.name"),),
        [BURST],
        "signals sent together (one statement for the batch) do not make their runs runnable",
    ),
    Mutant(
        "pg-start-batch-answers-the-wrong-run", POSTGRES,
        (("        run = made.pop(new.id, None)\n",
          "        run = made.pop(new.id, None)\n        run = run and next(iter(made.values()), run)\n"),),
        [BURST],
        "runs started together get another run's record back",
    ),
    Mutant(
        "sqlite-signal-wakes-any-wait", SQLITE,
        (("f\"WHERE id = ? AND status = 'waiting' AND {_WAITS_FOR}\",",
          "\"WHERE id = ? AND status = 'waiting' AND ? IS NOT NULL AND ? IS NOT NULL\","),),
        [sqlite(SIGNAL_WAKES)],
        "a signal wakes a run that waits for another signal",
    ),
    Mutant(
        "pg-signal-wakes-any-wait", POSTGRES,
        (("       AND (t.waiting_for = %s\n"
          "            OR position(('|' || %s || '|') IN ('|' || t.waiting_for || '|')) > 0)",
          "       AND (%s::text IS NOT NULL AND %s::text IS NOT NULL)"),),
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
        "pg-write-does-not-notify", "tether/store/postgres_commit.py",
        (("        if write.notify:  # after the commit",
          "        if False:  # after the commit"),),
        [pg(WAIT_FOR_WORK), NOTIFY],
        "a write that makes a run runnable does not NOTIFY idle workers",
    ),
    # --- leases: expiry decides takeover, heartbeats extend, claims are exclusive ----------
    Mutant(
        "sqlite-claim-ignores-lease-expiry", SQLITE,
        (("WHERE status = 'running' AND lease_expires < ? AND lease_owner <> ? AND {runnable}",
          "WHERE status = 'running' AND lease_expires < ? + 3600 AND lease_owner <> ? AND {runnable}"),),
        [sqlite(EXPIRED), sqlite(TWO_CLAIMERS)],
        "a claim takes over runs whose lease is still live",
    ),
    Mutant(
        "pg-claim-ignores-lease-expiry", PG_JOURNAL,
        (("WHERE (({_TAKEOVER}) OR ({_STRAY}))",
          "WHERE ((status = 'running' AND lease_owner <> %s AND %s::float8 IS NOT NULL)"
          " OR ({_STRAY}))"),),
        [pg(EXPIRED), pg(TWO_CLAIMERS)],
        "a claim takes over runs whose lease is still live",
    ),
    Mutant(
        "sqlite-claim-one-ignores-lease-expiry", SQLITE,
        (("\" OR (status = 'running' AND lease_expires < ? AND lease_owner <> ?)\"",
          "\" OR (status = 'running' AND lease_expires < ? + 3600 AND lease_owner <> ?)\""),),
        [sqlite(CLAIM_ONE)],
        "claiming one run by id takes it from a live holder",
    ),
    Mutant(
        "pg-claim-one-ignores-lease-expiry", PG_JOURNAL,
        (("                    OR ({_TAKEOVER}))\n             FOR UPDATE SKIP LOCKED)",
          "                    OR (status = 'running' AND lease_owner <> %s AND %s::float8 IS NOT NULL))\n"
          "             FOR UPDATE SKIP LOCKED)"),),
        [pg(CLAIM_ONE)],
        "claiming one run by id takes it from a live holder",
    ),
    Mutant(
        "sqlite-heartbeat-does-not-extend", SQLITE,
        (('f"UPDATE runs SET lease_expires = ? WHERE {held} RETURNING id, cancel_requested",',
          'f"UPDATE runs SET lease_expires = lease_expires + 0 * ? WHERE {held} '
          'RETURNING id, cancel_requested",'),),
        [sqlite(HEARTBEAT)],
        "a heartbeat reports the leases renewed but does not move their expiry",
    ),
    Mutant(
        "pg-heartbeat-does-not-extend", PG_JOURNAL,
        (("        UPDATE runs r SET lease_expires = {NOW} + %s,",
          "        UPDATE runs r SET lease_expires = r.lease_expires + 0 * %s,"),),
        [pg(HEARTBEAT)],
        "a heartbeat reports the leases renewed but does not move their expiry",
    ),
    Mutant(
        "pg-claim-not-locked", PG_JOURNAL,
        (("             ORDER BY wake_at\n             LIMIT %s\n             FOR UPDATE SKIP LOCKED)",
          "             ORDER BY wake_at\n             LIMIT %s)"),
         ("             ORDER BY lease_expires\n             LIMIT %s\n             FOR UPDATE SKIP LOCKED)",
          "             ORDER BY lease_expires\n             LIMIT %s)")),
        [pg(TWO_CLAIMERS)],
        "two workers claiming at once can both take the same run",
    ),
    Mutant(
        "engine-poison-off-by-one", "tether/engine/executor.py",
        (("        if claim.recovered and claim.stalls > self._max_recoveries:",
          "        if claim.recovered and claim.stalls > self._max_recoveries + 1:"),),
        POISON_TESTS,
        "a run that lost more than max_recoveries holders in a row without progress "
        "runs once more instead of failing as poison",
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
        (('    held = "lease_owner = ? AND status = \'running\'"',
          '    held = "? IS NOT NULL AND status = \'running\'"'),),
        [sqlite(HEARTBEAT)],
        "a worker's heartbeat keeps other workers' (dead) runs alive",
    ),
    # --- budgets: checked before the call, with the call's estimate, against every budget -----
    Mutant(
        "budget-check-after-the-call", CONTEXT,
        (("            self._check_budget(estimate, budgets)\n            reservation = await",
          "            reservation = await"),
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
        "budget-node-budgets-ignored", STEP_BUDGET,
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
        "gate-decision-not-checked-against-the-store", GATE,
        (("        await _check_recorded(ctx, store, approval_id, decision)", "        pass"),),
        [APPROVALS],
        "a decision signal put in the mailbox is acted on without a matching recorded decision",
    ),
    Mutant(
        "gate-fork-never-asks-again", GATE,
        (("        if following is None or following.name == ASK_AGAIN_STEP:",
          "        if False:"),),
        [APPROVALS],
        "a fork that kept another run's request but not its decision waits on it forever",
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
        "idempotency-key-includes-attempt", STEPS,
        (('        return f"{self.run_id}:{self.seq}"',
          '        return f"{self.run_id}:{self.seq}:{self.attempt}"'),),
        IDEMPOTENCY_TESTS,
        "the key changes with every retry, so the outside system sees a new request",
    ),
    Mutant(
        "idempotency-key-without-seq", STEPS,
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
