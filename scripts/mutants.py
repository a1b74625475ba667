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

# --- reservations: what steps in flight may still spend counts against every limit ------------
LAYERS = "tether/store/postgres_layers_sql.py"
LEDGER = "tether/engine/ledger.py"
GUARDS = "tether/agents/guards.py"
SPEND = "tests/integration/test_spend_reservations.py"
RESERVERS = f"{SPEND}::test_concurrent_reservers_on_two_connections_never_pass_the_limit"
SETTLES = f"{SPEND}::test_a_reservation_settles_into_the_journal_without_a_gap"
DEAD_HOLDER = f"{SPEND}::test_a_dead_holders_reservation_counts_as_spent_until_the_window_passes_it"
TAKEN_OVER_HOLDER = f"{SPEND}::test_a_zombie_cannot_release_its_reservation_after_a_takeover"
BUDGETS = "tests/integration/test_budget_reservations.py"
PARALLEL_CALLS = f"{BUDGETS}::test_a_parallel_under_a_call_budget_sends_exactly_the_budget"
DOLLAR_CAP = f"{BUDGETS}::test_a_dollar_cap_ends_the_run_at_or_under_it"
SPEND_CHECK = "        if spent + reserved + cost_usd > window.max_usd + _SPEND_TOLERANCE:"

# --- leases --------------------------------------------------------------------------------------
LEASE = "tether/engine/lease.py"
STORE_LEASES = "tests/integration/test_store_leases.py"
ENGINE_LEASES = "tests/integration/test_engine_leases.py"
OWN_RUN = f"{STORE_LEASES}::test_a_claimer_never_takes_over_a_run_it_holds_itself"
STRAYS = f"{STORE_LEASES}::test_a_claim_takes_back_runs_leased_to_it_that_it_does_not_execute"
RENEWS_ASKED = f"{STORE_LEASES}::test_a_heartbeat_renews_only_the_runs_asked_and_says_which"
STALLS = f"{STORE_LEASES}::test_stalls_count_takeovers_without_progress_only"

# --- waits, interrupts ---------------------------------------------------------------------------
WAIT_ANY_STORE = "tests/integration/test_store_wait_any.py::test_consume_first_signal_takes_the_oldest_of_the_names_once"
WAIT_ANY = "tests/integration/test_engine_wait_any.py"
INTERRUPTS = "tests/integration/test_engine_interrupts.py"

# --- trust and access ----------------------------------------------------------------------------
SERVER_AUTH = "tests/e2e/test_server_auth.py"
TRUST_REVIEWERS = ("tests/integration/test_trust_approvals.py"
                   "::test_the_runs_starter_cannot_approve_and_reviewers_can_be_restricted")

MUTANTS += [
    # --- reservations -----------------------------------------------------------------------
    Mutant(
        "sqlite-spend-reservations-not-counted", SQLITE_LAYERS,
        ((SPEND_CHECK, SPEND_CHECK.replace("spent + reserved", "spent + 0 * reserved")),),
        [sqlite(RESERVERS)],
        "a label spend limit ignores the calls in flight: concurrent workers overshoot it together",
    ),
    Mutant(
        "pg-spend-reservations-not-counted", LAYERS,
        ((SPEND_CHECK, SPEND_CHECK.replace("spent + reserved", "spent + 0 * reserved")),),
        [pg(RESERVERS)],
        "a label spend limit ignores the calls in flight: concurrent workers overshoot it together",
    ),
    Mutant(
        "sqlite-spend-journal-not-counted", SQLITE_LAYERS,
        ((SPEND_CHECK, SPEND_CHECK.replace("spent + reserved", "0 * spent + reserved")),),
        [sqlite(SETTLES)],
        "a label spend limit counts the reservations but not what was already spent",
    ),
    Mutant(
        "pg-spend-journal-not-counted", LAYERS,
        ((SPEND_CHECK, SPEND_CHECK.replace("spent + reserved", "0 * spent + reserved")),),
        [pg(SETTLES)],
        "a label spend limit counts the reservations but not what was already spent",
    ),
    Mutant(
        "sqlite-spend-dead-holder-forgotten", SQLITE_LAYERS,
        (('f"AND (created_at >= ? OR NOT {_RESERVATION_DEAD})"',
          'f"AND (0 AND created_at >= ? OR NOT {_RESERVATION_DEAD})"'),),
        [sqlite(DEAD_HOLDER)],
        "a dead worker's call in flight stops counting with its lease: the re-sent call passes the limit",
    ),
    Mutant(
        "pg-spend-dead-holder-forgotten", LAYERS,
        (("AND (r.created_at >= %s OR {_LIVE}))", "AND (false AND r.created_at >= %s OR {_LIVE}))"),),
        [pg(DEAD_HOLDER)],
        "a dead worker's call in flight stops counting with its lease: the re-sent call passes the limit",
    ),
    Mutant(
        "sqlite-spend-zombie-releases", SQLITE_LAYERS,
        (('f"DELETE FROM spend_reservations WHERE id = ? AND {_HOLDER_HOLDS}"',
          '"DELETE FROM spend_reservations WHERE id = ?"'),),
        [sqlite(TAKEN_OVER_HOLDER)],
        "a worker that lost its run releases its reservation though its call may have been billed",
    ),
    Mutant(
        "pg-spend-zombie-releases", LAYERS,
        (('"DELETE FROM spend_reservations r WHERE r.id = %s AND EXISTS (SELECT 1 FROM runs u "\n'
          '        "WHERE u.id = r.run_id AND u.fencing = r.token AND u.status = \'running\')",',
          '"DELETE FROM spend_reservations r WHERE r.id = %s",'),),
        [pg(TAKEN_OVER_HOLDER)],
        "a worker that lost its run releases its reservation though its call may have been billed",
    ),
    Mutant(
        "ledger-run-hold-not-written", STEP_BUDGET,
        (("            if self._budget is not None:\n                await hold_in_store(",
          "            if False:\n                await hold_in_store("),),
        ["tests/e2e/test_budget_processes.py::test_a_call_cut_by_a_sigkill_counts_against_the_runs_budget"],
        "a call cut by a worker's death is not counted against the run's budget on takeover",
    ),
    Mutant(
        "ledger-run-reservations-not-counted", STEP_BUDGET,
        (('            spent = self._usage + ledger.reserved("run")',
          "            spent = self._usage"),),
        [sqlite(PARALLEL_CALLS)],
        "concurrent steps of one run (Parallel branches) each see the run budget's room",
    ),
    Mutant(
        "ledger-hold-not-recorded", LEDGER,
        (("            self.held[scope] = self.reserved(scope) + estimate",
          "            self.held[scope] = self.reserved(scope)"),),
        [sqlite(PARALLEL_CALLS)],
        "a step's reservation is not held in memory, so concurrent steps do not see it",
    ),
    Mutant(
        "ledger-node-reservations-not-counted", STEP_BUDGET,
        (("self._check_one(budget, spent + ledger.reserved(scope), 0, 0.0, estimate, scope)",
          "self._check_one(budget, spent, 0, 0.0, estimate, scope)"),),
        [f"{BUDGETS}::test_concurrent_steps_under_one_node_budget_run_exactly_what_it_allows"],
        "concurrent calls under one agent's own budget each see that budget's room",
    ),
    Mutant(
        "guard-estimate-without-cost", GUARDS,
        (("    estimate = Usage(llm_calls=1, input_tokens=prompt, output_tokens=completion,\n"
          "                     cost_usd=price.cost_usd)",
          "    estimate = Usage(llm_calls=1, input_tokens=prompt, output_tokens=completion,\n"
          "                     cost_usd=0.0)"),),
        [sqlite(DOLLAR_CAP)],
        "a model call is checked against a dollar cap without its worst-case cost",
    ),
    Mutant(
        "guard-unpriced-model-counted-as-free", GUARDS,
        (("    if price.cost_usd is None:\n", "    if price.cost_usd is None and False:\n"),
         ("                     cost_usd=price.cost_usd)", "                     cost_usd=price.cost_usd or 0.0)")),
        [f"{BUDGETS}::test_an_unpriced_model_under_a_dollar_cap_is_refused_before_it_is_sent"],
        "a model with no known price passes every dollar cap as if it cost nothing",
    ),
    # --- leases -------------------------------------------------------------------------------
    Mutant(
        "sqlite-claim-takes-own-run", SQLITE,
        (("lease_expires < ? AND lease_owner <> ? AND {runnable}",
          "lease_expires < ? AND ? IS NOT NULL AND {runnable}"),),
        [sqlite(OWN_RUN)],
        "a worker whose renewal was late takes over its own run while still executing it",
    ),
    Mutant(
        "sqlite-claim-one-takes-own-run", SQLITE,
        (("\" OR (status = 'running' AND lease_expires < ? AND lease_owner <> ?)\"",
          "\" OR (status = 'running' AND lease_expires < ? AND ? IS NOT NULL)\""),),
        [sqlite(OWN_RUN)],
        "claiming one run by id takes over the claimer's own run",
    ),
    Mutant(
        "pg-claim-takes-own-run", PG_JOURNAL,
        (("    f\"status = 'running' AND lease_owner <> %s \"",
          "    f\"status = 'running' AND %s::text IS NOT NULL \""),),
        [pg(OWN_RUN)],
        "a worker whose renewal was late takes over its own run while still executing it",
    ),
    Mutant(
        "sqlite-stray-claim-takes-executing-runs", SQLITE,
        (("            f\" AND id NOT IN ({','.join('?' * len(busy))}) AND {runnable}\"",
          "            f\" AND (id NOT IN ({','.join('?' * len(busy))}) OR 1 = 1) AND {runnable}\""),),
        [sqlite(STRAYS)],
        "a claim takes back, from under its own worker, a run that worker is executing",
    ),
    Mutant(
        "pg-stray-claim-takes-executing-runs", PG_JOURNAL,
        (('"AND %b::text[] IS NOT NULL AND NOT (id = ANY(%b::text[]))"',
          '"AND %b::text[] IS NOT NULL AND %b::text[] IS NOT NULL"'),),
        [pg(STRAYS)],
        "a claim takes back, from under its own worker, a run that worker is executing",
    ),
    Mutant(
        "sqlite-heartbeat-renews-unasked-runs", SQLITE,
        (("        held += f\" AND id IN ({','.join('?' * len(ids))})\"\n        params += ids\n",
          "        pass\n"),),
        [sqlite(RENEWS_ASKED)],
        "a renewal keeps alive every run leased to the owner, also those it stopped executing",
    ),
    Mutant(
        "pg-heartbeat-renews-unasked-runs", PG_JOURNAL,
        (("AND (%b::text[] IS NULL OR id = ANY(%b::text[]))",
          "AND (%b::text[] IS NULL OR %b::text[] IS NOT NULL)"),),
        [pg(RENEWS_ASKED)],
        "a renewal keeps alive every run leased to the owner, also those it stopped executing",
    ),
    Mutant(
        "lease-renewal-extends-unrenewed-runs", LEASE,
        (("        for run_id in beat.renewed_ids:\n            if run_id in self._deadlines:",
          "        for run_id in ids:\n            if run_id in self._deadlines:"),),
        [sqlite(f"{ENGINE_LEASES}::test_a_renewal_extends_only_the_leases_the_store_renewed")],
        "a run taken over meanwhile gets a fresh local deadline from a renewal that skipped it",
    ),
    Mutant(
        "lease-ensure-trusts-an-unconfirmed-renewal", LEASE,
        (("        return run_id in beat.renewed_ids", "        return True"),),
        [sqlite(f"{ENGINE_LEASES}::test_no_step_starts_once_the_lease_was_taken_over")],
        "a step starts after the run's lease was taken over (a paused worker woken late)",
    ),
    Mutant(
        "lease-dropped-run-not-handed-back", "tether/engine/worker.py",
        (('            if status == "dropped":', "            if False:"),),
        [sqlite(f"{ENGINE_LEASES}::test_a_run_dropped_on_a_store_error_is_handed_back")],
        "a run dropped on a store error stays leased to its worker until the lease runs out",
    ),
    Mutant(
        "engine-poison-counts-takeovers", "tether/engine/executor.py",
        (("        if claim.recovered and claim.stalls > self._max_recoveries:",
          "        if claim.recovered and claim.run.recoveries > self._max_recoveries:"),),
        [sqlite(f"{ENGINE_LEASES}::test_a_run_taken_over_ten_times_while_progressing_succeeds")],
        "a run taken over often while progressing (a rolling deploy) fails as poison",
    ),
    Mutant(
        "sqlite-stalls-not-reset-by-progress", SQLITE,
        (("THEN (CASE WHEN claim_mark = ? THEN stalls + 1 ELSE 1 END)",
          "THEN (CASE WHEN claim_mark = ? THEN stalls + 1 ELSE stalls + 1 END)"),),
        [sqlite(STALLS)],
        "takeovers count as stalls even when the holder journaled steps in between",
    ),
    Mutant(
        "pg-stalls-not-reset-by-progress", PG_JOURNAL,
        (("THEN (CASE WHEN c.mark = r.claim_mark THEN r.stalls + 1 ELSE 1 END)",
          "THEN (CASE WHEN c.mark = r.claim_mark THEN r.stalls + 1 ELSE r.stalls + 1 END)"),),
        [pg(STALLS)],
        "takeovers count as stalls even when the holder journaled steps in between",
    ),
    # --- wait_for_any, swallowed suspensions, interrupts -----------------------------------------
    Mutant(
        "sqlite-wait-any-newest-first", SQLITE,
        (("AND name IN ({marks}) AND consumed_seq IS NULL ORDER BY id LIMIT 1",
          "AND name IN ({marks}) AND consumed_seq IS NULL ORDER BY id DESC LIMIT 1"),),
        [sqlite(WAIT_ANY_STORE),
         sqlite(f"{WAIT_ANY}::test_two_signals_sent_before_the_wait_the_oldest_wins_the_other_stays")],
        "wait_for_any takes the newest signal among its names instead of the oldest",
    ),
    Mutant(
        "pg-wait-any-newest-first", PG_JOURNAL,
        (("         WHERE run_id = %s AND name = ANY(%b::text[]) AND consumed_seq IS NULL\n"
          "           AND EXISTS (SELECT 1 FROM held) AND NOT EXISTS (SELECT 1 FROM earlier)\n"
          "         ORDER BY id LIMIT 1",
          "         WHERE run_id = %s AND name = ANY(%b::text[]) AND consumed_seq IS NULL\n"
          "           AND EXISTS (SELECT 1 FROM held) AND NOT EXISTS (SELECT 1 FROM earlier)\n"
          "         ORDER BY id DESC LIMIT 1"),),
        [pg(WAIT_ANY_STORE)],
        "wait_for_any takes the newest signal among its names instead of the oldest",
    ),
    Mutant(
        "sqlite-wait-any-consumes-every-name", SQLITE,
        (('    conn.execute("UPDATE signals SET consumed_seq = ? WHERE id = ?", (step.seq, row[0]))\n'
          "    payload = loads(row[2])",
          '    conn.execute(f"UPDATE signals SET consumed_seq = ? WHERE run_id = ? AND name IN '
          '({marks}) AND consumed_seq IS NULL", (step.seq, run_id, *names))\n'
          "    payload = loads(row[2])"),),
        [sqlite(WAIT_ANY_STORE)],
        "wait_for_any consumes every waiting signal among its names, not just the winner",
    ),
    Mutant(
        "pg-wait-any-consumes-every-name", PG_JOURNAL,
        (("    UPDATE signals SET consumed_seq = %s WHERE id = (\n"
          "        SELECT id FROM signals\n"
          "         WHERE run_id = %s AND name = ANY(%b::text[]) AND consumed_seq IS NULL\n"
          "           AND EXISTS (SELECT 1 FROM held) AND NOT EXISTS (SELECT 1 FROM earlier)\n"
          "         ORDER BY id LIMIT 1 FOR UPDATE)",
          "    UPDATE signals SET consumed_seq = %s WHERE id IN (\n"
          "        SELECT id FROM signals\n"
          "         WHERE run_id = %s AND name = ANY(%b::text[]) AND consumed_seq IS NULL\n"
          "           AND EXISTS (SELECT 1 FROM held) AND NOT EXISTS (SELECT 1 FROM earlier)\n"
          "         ORDER BY id FOR UPDATE)"),),
        [pg(WAIT_ANY_STORE)],
        "wait_for_any consumes every waiting signal among its names, not just the winner",
    ),
    Mutant(
        "engine-swallowed-suspension-succeeds", "tether/engine/executor.py",
        (("                ctx.check_returned()\n", ""),),
        [sqlite(f"{WAIT_ANY}::test_asyncio_wait_over_two_waits_fails_instead_of_succeeding")],
        "a workflow that hid a suspension (asyncio.wait over two waits) succeeds with a guess",
    ),
    Mutant(
        "cancel-does-not-interrupt-running-step", "tether/engine/interrupts.py",
        (("            if loop is running:\n                task.cancel()",
          "            if loop is running:\n                pass"),),
        [sqlite(f"{INTERRUPTS}::test_cancel_interrupts_a_running_async_step")],
        "a cancel waits for the running step to finish instead of interrupting it",
    ),
    Mutant(
        "max-duration-ignored-during-waits", CONTEXT,
        (("        return deadline if wake_at is None else min(wake_at, deadline)",
          "        return wake_at"),),
        [f"{INTERRUPTS}::test_max_duration_fails_a_run_that_waits_sleeps_or_works_past_it[sqlite-waits]"],
        "a run waiting for a signal outlives its max_duration until the signal comes",
    ),
    Mutant(
        "engine-starts-steps-after-the-budget-ended-the-run", CONTEXT,
        (("        if self.fatal is not None and (rec is None or rec.status not in",
          "        if False and (rec is None or rec.status not in"),),
        [sqlite(f"{BUDGETS}::test_once_the_budget_ends_the_run_no_branch_starts_a_new_step")],
        "a Parallel branch starts new steps after another branch's call was refused by the "
        "budget (the run is already failing)",
    ),
    # --- trust and access ---------------------------------------------------------------------
    Mutant(
        "auth-route-role-not-checked", "tether/server/auth.py",
        (("    if not principal.has(needed):\n        held =", "    if False:\n        held ="),),
        [sqlite(f"{SERVER_AUTH}::test_every_mutation_needs_a_token_and_the_role_it_declares")],
        "any signed-in principal (a viewer) may call every route",
    ),
    Mutant(
        "server-starter-decides-own-run", "tether/server/approvals.py",
        (("    if approval.started_by is not None and approval.started_by == principal.name:",
          "    if False:"),),
        [sqlite("tests/integration/test_server_approvals.py::test_the_runs_starter_cannot_approve_it")],
        "the API lets the principal who started a run try to decide its approval request",
    ),
    Mutant(
        "trust-starter-decides-own-run", "tether/trust/approvals.py",
        (("    if action.started_by is not None and reviewer == action.started_by:", "    if False:"),),
        [sqlite(TRUST_REVIEWERS)],
        "the one who started a run approves its own request",
    ),
    Mutant(
        "trust-policy-reviewers-ignored", "tether/trust/approvals.py",
        (("    if action.reviewers is not None and reviewer not in action.reviewers:",
          "    if False:"),),
        [sqlite(TRUST_REVIEWERS)],
        "anyone decides a request the policy reserved for named reviewers",
    ),
    Mutant(
        "reviewer-categories-ignored", "tether/access/principals.py",
        (("        return self.categories is None or category in self.categories",
          "        return True"),),
        [sqlite("tests/integration/test_server_approvals.py"
                "::test_a_reviewer_of_other_categories_cannot_decide")],
        "a reviewer limited to some risk categories decides requests of any category",
    ),
    Mutant(
        "auth-forwarded-headers-from-any-peer", "tether/server/auth.py",
        (("        if not self.trusted_peer(request):\n            return None",
          "        if False:\n            return None"),),
        [sqlite(f"{SERVER_AUTH}::test_forged_forwarded_headers_from_an_untrusted_peer_are_ignored")],
        "X-Forwarded-Host/-Proto from any client count (a forged origin passes the CSRF check)",
    ),
    Mutant(
        "auth-identity-header-from-any-peer", "tether/server/auth.py",
        (("        if self.identity_headers and self.trusted_peer(request):",
          "        if self.identity_headers:"),),
        [sqlite(f"{SERVER_AUTH}::test_forged_forwarded_headers_from_an_untrusted_peer_are_ignored")],
        "anyone who sends X-Forwarded-User: ada is signed in as ada",
    ),
    # --- schedules, degrading pipelines, deploys ---------------------------------------------
    Mutant(
        "schedule-tick-run-id-not-deterministic", "tether/engine/schedules.py",
        (('    return f"sched-{name}-{round(tick)}"',
          '    return f"sched-{name}-{round(tick)}-{time.monotonic_ns()}"'),),
        [sqlite("tests/integration/test_schedules.py::test_racing_workers_start_one_run_per_tick")],
        "two workers seeing the same tick each start a run for it",
    ),
    Mutant(
        "optional-absorbs-run-budget", "tether/agents/pipeline.py",
        (("    except BudgetExceeded:\n        raise\n    except RunFailed as exc:\n"
          "        if ctx.fatal is not None:\n            raise\n",
          "    except RunFailed as exc:\n"),
         (CONTEXT, "        if self.fatal is not None and (rec is None or rec.status not in",
          "        if False and (rec is None or rec.status not in")),
        ["tests/integration/test_agent_degrade.py"
         "::test_a_run_budget_is_never_absorbed_by_an_optional_node"],
        "an Optional node swallows the run's budget running out and the pipeline goes on "
        "(both layers: the wrapper's own check, and the engine starting nothing once the run "
        "is ending; either alone keeps the guarantee)",
    ),
    # --- run events: every completed event once, in order, across takeovers -----------------
    Mutant(
        "events-derived-start-read-twice", "tether/store/events_sql.py",
        (("   AND NOT EXISTS (SELECT 1 FROM run_events WHERE key = steps.run_id || ':' || "
          "steps.seq || ':started')\n", ""),),
        [sqlite("tests/integration/test_run_events.py"
                "::test_a_step_run_again_after_a_lost_worker_streams_its_start_once")],
        "a step run again after a takeover shows its start twice (the appended one and the "
        "one read from its journal row)",
    ),
    Mutant(
        "events-step-row-not-in-the-stream", SQLITE,
        (("    if not events:\n        return conn.execute(_UPSERT_STEP,",
          "    if True:\n        return conn.execute(_UPSERT_STEP,"),),
        [sqlite("tests/integration/test_run_events.py"
                "::test_parallel_steps_and_a_failure_each_stream_once_in_order")],
        "a completed step's events are missing from the stream",
    ),
    Mutant(
        "events-reserved-position-behind-an-event", SQLITE,
        (("    \"WHERE ? - 1 > (SELECT coalesce(max(id), 0) FROM run_events WHERE run_id = ?)"
          "\\n  AND EXISTS\",",
          "    \"WHERE ? + ? IS NOT NULL AND EXISTS\","),),
        ["tests/integration/test_sqlite_writes.py"
         "::test_an_event_appended_by_another_process_keeps_the_stream_in_order"],
        "a step row takes a reserved position although an event of its run was appended past "
        "it meanwhile: a reader resuming after that event misses the step",
    ),
    Mutant(
        "events-reserved-positions-outlive-the-claim", SQLITE,
        (("    params = step_params(run_id, step)\n    key = (run_id, token)",
          "    params = step_params(run_id, step)\n    key = (run_id, 0)"),
         ("    key = (run_id, token)\n    block = POSITION_BLOCK",
          "    key = (run_id, 0)\n    block = POSITION_BLOCK"),),
        ["tests/integration/test_sqlite_writes.py"
         "::test_a_run_claimed_back_after_another_holder_keeps_its_steps_in_order"],
        "positions reserved under an earlier claim are used after another holder wrote steps "
        "past them",
    ),
    # --- alerts and metrics --------------------------------------------------------------------
    Mutant(
        "alert-recorded-per-detector", "tether/store/alerts_sql.py",
        (("    return (alert.id, alert.key, alert.series or alert.key,",
          "    import uuid\n    return (alert.id + uuid.uuid4().hex, alert.key + uuid.uuid4().hex,"
          " alert.series or alert.key,"),),
        ["tests/integration/test_alerts_store.py"
         "::test_one_occurrence_is_recorded_once_by_racing_detectors"],
        "every worker that detects a stuck run records (and pages) its own alert",
    ),
    Mutant(
        "alert-series-not-quiet", "tether/store/alerts_sql.py",
        (("    if alert.quiet_seconds > 0:\n        recent", "    if False:\n        recent"),
         ("    if alert.quiet_seconds > 0:\n        series", "    if False:\n        series")),
        ["tests/integration/test_alerts_store.py::test_a_series_is_quiet_for_its_period"],
        "two workers on either side of a window boundary each record a spend alert",
    ),
    Mutant(
        "alert-claim-ignores-lease", "tether/store/alerts_sql.py",
        (("lease_expires IS NULL OR lease_expires < {p})", "lease_expires IS NULL OR lease_expires > -{p})"),),
        ["tests/integration/test_alerts_store.py::test_delivery_is_leased_retried_and_fenced"],
        "two workers send the same alert at once",
    ),
    Mutant(
        "alert-settle-unfenced", "tether/store/alerts_sql.py",
        (("WHERE id = {p} AND lease_owner = {p} AND state", "WHERE id = {p} AND {p} IS NOT NULL AND state"),),
        ["tests/integration/test_alerts_store.py::test_delivery_is_leased_retried_and_fenced"],
        "a worker whose lease ran out overwrites the outcome of the worker that took over",
    ),
    Mutant(
        "webhook-any-answer-delivers", "tether/observe/webhook.py",
        (("        if 200 <= response.status_code < 300:", "        if True:"),),
        [sqlite("tests/integration/test_alerts.py::test_a_receiver_that_never_accepts_leaves_the_alert_failed")],
        "a receiver answering 500 is taken as delivered: the alert is lost",
    ),
    Mutant(
        "metrics-count-a-step-twice", "tether/observe/metrics.py",
        (("                    if key in self._seen:", "                    if False:"),),
        [sqlite("tests/integration/test_metrics.py::test_metrics_show_runs_backlog_latency_tokens_and_spend")],
        "a step in the overlap of two scrapes is counted by both",
    ),
    Mutant(
        "fork-from-step-unchecked", "tether/engine/runtime.py",
        (("        if not 1 <= from_step <= end:", "        if False:"),),
        [sqlite("tests/integration/test_deploy_safety.py::test_bad_forks_are_refused_and_create_nothing")],
        "a fork from a step past the journal's end (or below 1) is created",
    ),
]
