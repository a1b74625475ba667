"""The second half of the named mutants (`scripts/mutants.py` has the first, and the `Mutant`
record): reservations and spend limits, leases, waits and interrupts, trust and access,
schedules, pipelines, deploys, idempotency, run events, alerts and metrics. Split off when the
list passed 800 lines; `scripts/mutate.py` runs both lists.
"""

from __future__ import annotations

from mutants import (
    CONTEXT,
    PG_JOURNAL,
    SQLITE,
    SQLITE_LAYERS,
    STEP_BUDGET,
    Mutant,
    pg,
    sqlite,
)

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
CUT = "tests/integration/test_cut_calls.py"
CUT_LISTED = f"{SPEND}::test_the_calls_a_lost_holder_left_in_flight_are_listed_once_each"
ZOMBIE_E2E = ("tests/e2e/test_budget_processes.py::"
              "test_a_paused_worker_woken_after_a_takeover_cannot_release_its_reservation")
SPEND_CHECK = "        if spent + reserved + cost_usd > window.max_usd + _SPEND_TOLERANCE:"

# --- leases --------------------------------------------------------------------------------------
COMPAT = "tests/integration/test_schema_compat.py"
COMPAT_REFUSED = f"{COMPAT}::test_a_store_from_a_future_that_declares_older_code_unsafe_is_refused"
COMPAT_RUNNING = f"{COMPAT}::test_a_running_worker_stops_when_a_newer_tether_migrates_the_store_under_it"
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

LAYER_MUTANTS: list[Mutant] = [
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
        [sqlite(TAKEN_OVER_HOLDER), sqlite(ZOMBIE_E2E)],
        "a worker that lost its run releases its reservation though its call may have been billed",
    ),
    Mutant(
        "pg-spend-zombie-releases", LAYERS,
        (('"DELETE FROM spend_reservations r WHERE r.id = %s AND EXISTS (SELECT 1 FROM runs u "\n'
          '        "WHERE u.id = r.run_id AND u.fencing = r.token AND u.status = \'running\')",',
          '"DELETE FROM spend_reservations r WHERE r.id = %s",'),),
        [pg(TAKEN_OVER_HOLDER), pg(ZOMBIE_E2E)],
        "a worker that lost its run releases its reservation though its call may have been billed",
    ),
    Mutant(
        "sqlite-cut-calls-include-the-holders", SQLITE_LAYERS,
        (('"SELECT h.id, h.run_id, h.token, h.usage, h.created_at FROM run_holds h "\n'
          '    "WHERE {where} AND h.token <> (SELECT u.fencing FROM runs u WHERE u.id = h.run_id) "',
          '"SELECT h.id, h.run_id, h.token, h.usage, h.created_at FROM run_holds h "\n'
          '    "WHERE {where} "'),),
        [sqlite(CUT_LISTED)],
        "a call in flight on the run's live holder is reported as cut by a crash",
    ),
    Mutant(
        "pg-cut-calls-reservation-twice", LAYERS,
        (('    "AND NOT EXISTS (SELECT 1 FROM run_holds o WHERE o.id = h.id) "\n'
          '    "GROUP BY h.id, h.run_id, h.token ORDER BY 5, 1"',
          '    "GROUP BY h.id, h.run_id, h.token ORDER BY 5, 1"'),),
        [pg(CUT_LISTED)],
        "a cut call with a hold and a spend reservation is reported twice",
    ),
    Mutant(
        "ledger-shutdown-releases-the-cut-call", CONTEXT,
        (("                        reservation.abandon()\n",
          "                        await reservation.release()\n"),),
        [sqlite(f"{CUT}::test_a_call_cut_short_by_a_workers_shutdown_is_counted_as_cut")],
        "a call cut short by a worker's graceful stop is released: counted nowhere, sent again",
    ),
    Mutant(
        "engine-lost-send-not-marked", "tether/engine/executor.py",
        (("            resent=_lost_in(run) if claim.recovered else None,",
          "            resent=None,"),),
        [sqlite(f"{CUT}::test_a_run_without_a_budget_marks_the_step_a_lost_worker_was_in")],
        "the step a lost worker of a run without a budget was in reads as sent once",
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
        "schedule-queue-starts-every-held-tick", "tether/engine/schedules.py",
        (("        if len(ticks) > 1 and record.overlap != \"allow\":",
          "        if False:"),),
        [sqlite("tests/integration/test_schedules.py::test_queue_starts_the_ticks_it_held_once")],
        "overlap='queue' starts every tick it held at once: the schedule runs several times at "
        "once and its backlog grows",
    ),
    Mutant(
        "schedule-fixed-hour-twice-when-clocks-go-back", "tether/engine/schedules.py",
        (("        if not (fixed_hour and datetime.fromtimestamp(tick, zone).fold):",
          "        if True:"),),
        ["tests/integration/test_schedules.py::test_a_daily_schedule_runs_once_on_the_night_"
         "clocks_go_back"],
        "a daily job runs twice on the night clocks go back",
    ),
    Mutant(
        "child-outlives-cancelled-parent", "tether/engine/executor.py",
        (("            if status == \"cancelled\":\n                await self._cancel_children(run_id)\n",
          ""),),
        [sqlite("tests/integration/test_child_runs.py::test_the_worker_of_a_cancelled_parent_"
                "cancels_its_children")],
        "a child the parent started after App.cancel read its journal runs on after the cancel",
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
    Mutant(
        "schema-requirement-ignored", "tether/store/migrate.py",
        (("    if found is None or found.requires <= known:", "    if True:"),),
        [sqlite(COMPAT_REFUSED), pg(COMPAT_REFUSED)],
        "older code opens (and writes to) a store whose migration declares it unsafe",
    ),
    Mutant(
        "worker-never-rechecks-schema", "tether/engine/worker.py",
        (("                await self.app.store.check_schema()",
          "                await asyncio.sleep(0)"),),
        [sqlite(COMPAT_RUNNING)],
        "a worker running when a newer tether migrates the store keeps writing beside it",
    ),
]
