"""Every statement of `jobs` that reads or writes procrastinate's tables or calls its
SQL functions.

procrastinate's schema is frozen by migration 0001, and
tests/integration/test_queue_sql.py pins what these statements rely on. The
producer side imports this module: it imports sqlalchemy only.
"""

from __future__ import annotations

from sqlalchemy import text

# -- `jobs status` and /metrics (jobs.ops.queries) ------------------------------------

# Backlog by queue and status, due jobs, queue lag, live workers, pending emails: one scrape.
GAUGES = text("""
WITH active AS (
    SELECT queue_name, status::text AS status, count(*) AS n
      FROM procrastinate_jobs WHERE status IN ('todo', 'doing')
     GROUP BY queue_name, status
), failed AS (
    SELECT queue_name, count(*) AS n
      FROM procrastinate_jobs WHERE status = 'failed'
     GROUP BY queue_name
), due AS (
    SELECT queue_name, count(*) AS n, min(scheduled_at) AS oldest_scheduled,
           min(id) FILTER (WHERE scheduled_at IS NULL) AS oldest_unscheduled
      FROM procrastinate_jobs
     WHERE status = 'todo' AND (scheduled_at IS NULL OR scheduled_at <= now())
     GROUP BY queue_name
)
SELECT 'jobs' AS kind, queue_name AS queue, status, n::float8 AS value FROM active
UNION ALL SELECT 'jobs', queue_name, 'failed', n::float8 FROM failed
UNION ALL SELECT 'due', queue_name, NULL, n::float8 FROM due
UNION ALL
SELECT 'lag', queue_name, NULL, greatest(0, extract(epoch FROM now() - least(
           oldest_scheduled,
           (SELECT min(e.at) FROM procrastinate_events e
             WHERE e.job_id = due.oldest_unscheduled AND e.type = 'deferred'))))::float8
  FROM due
UNION ALL
SELECT 'workers', NULL, NULL, count(*)::float8 FROM procrastinate_workers
 WHERE last_heartbeat >= now() - make_interval(secs => :stalled_after)
UNION ALL
SELECT 'emails_pending', NULL, NULL, count(*)::float8 FROM email_messages
 WHERE status = 'pending'
""")

# Succeeded / failed / retried events of the last hour and day, by queue and task.
OUTCOMES = text("""
SELECT j.queue_name, j.task_name, e.type::text AS type,
       count(*) FILTER (WHERE e.at >= now() - interval '1 hour') AS last_hour,
       count(*) AS last_day
  FROM procrastinate_events e
  -- LIMIT keeps this a primary-key lookup per recent event: the cost follows the
  -- window, never the size of the jobs table
 CROSS JOIN LATERAL (SELECT queue_name, task_name FROM procrastinate_jobs
                      WHERE id = e.job_id LIMIT 1) j
 WHERE e.type IN ('succeeded', 'failed', 'deferred_for_retry')
   AND e.at >= now() - interval '24 hours'
 GROUP BY j.queue_name, j.task_name, e.type
""")

# Every worker: its last heartbeat, that heartbeat's age, its running jobs, and where it
# runs and what it serves (worker_info, written by `jobs worker`; NULL for other workers).
WORKERS = text("""
SELECT w.id, w.last_heartbeat,
       extract(epoch FROM now() - w.last_heartbeat)::float8 AS age,
       (SELECT count(*) FROM procrastinate_jobs j
         WHERE j.worker_id = w.id AND j.status = 'doing') AS running,
       i.host, i.pid, i.queues
  FROM procrastinate_workers w
  LEFT JOIN worker_info i ON i.worker_id = w.id
 ORDER BY w.id
""")

# -- stalled jobs (jobs.ops.recovery) -----------------------------------------------

# `doing` jobs whose worker is gone or silent (procrastinate's rule), locked: handled once.
STALLED_JOBS = text("""
SELECT j.id, j.task_name, j.args
  FROM procrastinate_jobs j
  LEFT JOIN procrastinate_workers w ON w.id = j.worker_id
 WHERE j.status = 'doing'
   AND (w.id IS NULL OR w.last_heartbeat < now() - make_interval(secs => :stalled_after))
 ORDER BY j.id
   FOR UPDATE OF j SKIP LOCKED
""")

# Puts a `doing` job back to todo, due now (one more attempt counted).
RETRY_JOB_NOW = text("SELECT procrastinate_retry_job_v2(:job_id, now(), NULL, NULL, NULL)")

# After a database outage: the jobs a worker ran whose status it could not save go
# back to todo, due now (one attempt counted), unless another worker has them now.
RETRY_UNSAVED_JOBS = text("""
SELECT procrastinate_retry_job_v2(id, now(), NULL, NULL, NULL)
  FROM procrastinate_jobs
 WHERE id = ANY(CAST(:job_ids AS bigint[])) AND status = 'doing'
   AND (worker_id IS NULL OR worker_id = :worker_id)
""")

# Marks a `doing` (or todo) job failed, keeping its row.
FAIL_JOB = text("SELECT procrastinate_finish_job_v1(:job_id, 'failed', false)")

# -- failed work by hand (jobs.ops.requeue) -----------------------------------------

# Failed jobs (and when they failed) matching the optional queue/task/since filters, locked.
FAILED_JOBS = text("""
SELECT j.id, j.queue_name, j.task_name, j.args, f.at AS failed_at
  FROM procrastinate_jobs j
  LEFT JOIN LATERAL (SELECT max(e.at) AS at FROM procrastinate_events e
                      WHERE e.job_id = j.id AND e.type = 'failed') f ON true
 WHERE j.status = 'failed'
   AND (CAST(:queue AS text) IS NULL OR j.queue_name = :queue)
   AND (CAST(:task AS text) IS NULL OR j.task_name = :task)
   AND (CAST(:since AS interval) IS NULL OR f.at >= now() - CAST(:since AS interval))
 ORDER BY j.id
   FOR UPDATE OF j SKIP LOCKED
""")

# Re-queues a failed job afresh; no row (it stays failed) if a todo job holds its queueing lock.
REQUEUE_FAILED_JOB = text("""
UPDATE procrastinate_jobs j
   SET status = 'todo', attempts = 0, scheduled_at = now(), abort_requested = false
 WHERE j.id = :job_id AND j.status = 'failed'
   AND (j.queueing_lock IS NULL OR NOT EXISTS (
        SELECT 1 FROM procrastinate_jobs o
         WHERE o.queueing_lock = j.queueing_lock AND o.status = 'todo'))
RETURNING j.id
""")

# One job's status, task and arguments, locked.
LOCK_JOB = text(
    "SELECT status::text, task_name, args FROM procrastinate_jobs WHERE id = :job_id FOR UPDATE"
)

# Cancels a todo job, or (abort) asks a running one to abort.
CANCEL_JOB = text("SELECT procrastinate_cancel_job_v1(:job_id, :abort, false)")

# -- retention (jobs.ops.retention) -------------------------------------------------

_FINISHED = "'succeeded', 'failed', 'cancelled', 'aborted'"

# Deletes one batch of finished jobs: outcome events oldest first, keyset-paginated on (at, id).
# (index jobs_procrastinate_events_outcome_at_idx; rows it keeps are never scanned twice)
DELETE_FINISHED_JOBS = text(f"""
WITH batch AS (
    SELECT e.id, e.job_id, e.at FROM procrastinate_events e
     WHERE e.type IN ({_FINISHED}) AND e.at < :cutoff
       AND (e.at, e.id) > (:after_at, :after_id)
     ORDER BY e.at, e.id
     LIMIT :batch_size
), doomed AS (
    SELECT j.id FROM procrastinate_jobs j
     WHERE j.id IN (SELECT job_id FROM batch)
       AND j.status IN ({_FINISHED})
       AND NOT EXISTS (SELECT 1 FROM procrastinate_events n
                        WHERE n.job_id = j.id AND n.at >= :cutoff)
       FOR UPDATE OF j SKIP LOCKED
), gone AS (
    DELETE FROM procrastinate_jobs j USING doomed d WHERE j.id = d.id RETURNING j.id
), forgotten AS (
    DELETE FROM job_recoveries r USING gone g WHERE r.job_id = g.id RETURNING r.job_id
)
SELECT (SELECT count(*) FROM gone) AS deleted,
       last.at AS last_at, last.id AS last_id
  FROM (SELECT 1) AS one
  LEFT JOIN (SELECT at, id FROM batch ORDER BY at DESC, id DESC LIMIT 1) AS last ON true
""")

# -- task results (jobs.results.store) ----------------------------------------------

# A job's status and task (NULL once pruned) beside its stored result, if any.
READ_RESULT = text(
    "SELECT j.status AS job_status, j.task_name AS job_task, r.status, r.task_name,"
    " r.result, r.error, r.finished_at"
    " FROM (SELECT CAST(:job_id AS bigint) AS id) AS q"
    " LEFT JOIN procrastinate_jobs AS j ON j.id = q.id"
    " LEFT JOIN job_results AS r ON r.job_id = q.id"
)

# -- enqueueing (jobs.mail.enqueue, jobs.accounts) ----------------------------------

# CTE `job` deferring the delivery of the row CTE `message` inserted (params: job_params()),
# due at :scheduled_at (NULL: now), so a ledger row and its job are ONE statement. It
# inserts the job row itself, as procrastinate_defer_jobs_v1 does (the table's defaults
# and triggers do the rest: status todo, the `deferred` event, the notification), which
# spares every sign-up that function's call and its inner query (a test pins the match).
DEFER_NEW_MESSAGE = """
    job AS (
        INSERT INTO procrastinate_jobs (queue_name, task_name, priority, args, scheduled_at)
        SELECT CAST(:queue AS varchar), CAST(:task AS varchar), CAST(:priority AS integer),
               jsonb_build_object('message_ids', jsonb_build_array(message.id)),
               CAST(:scheduled_at AS timestamptz)
          FROM message
        RETURNING id AS job_id
    )"""

# -- transactional delivery in batches (jobs.mail.ledger) ----------------------------

# Up to :limit due transactional delivery jobs (oldest first) whose first message is
# pending and untried, locked: no worker fetches a job while a running delivery holds
# it (procrastinate's fetch skips locked jobs), and a job already fetched (`doing`) is
# never taken. Only the job is locked here (a row lock skipped half-way through a join
# would stay held): the taker then locks the messages themselves. `n` is how many
# messages the job carries: the caller takes one-message jobs only (a filter on it
# here would make the planner expect a handful of rows and sort them all).
# The queue, task, lock and priority are written out, not bound: they match the
# predicate of jobs_procrastinate_jobs_take_idx (migration 0013), so the planner walks
# that index in order and stops at :limit whatever its statistics say about the backlog
# (EMAIL_QUEUE, DELIVER_TASK and TRANSACTIONAL_PRIORITY of jobs.tasks; a test pins them).
TAKE_TRANSACTIONAL_JOBS = text("""
SELECT m.id AS message_id, j.id AS job_id, jsonb_array_length(j.args -> 'message_ids') AS n
  FROM procrastinate_jobs j
  JOIN email_messages m ON m.id = CAST(j.args -> 'message_ids' ->> 0 AS bigint)
 WHERE j.status = 'todo' AND j.queue_name = 'email' AND j.task_name = 'email.deliver'
   AND j.lock IS NULL AND j.priority >= 10
   AND (j.scheduled_at IS NULL OR j.scheduled_at <= now())
   AND m.status = 'pending' AND m.attempts = 0
 ORDER BY j.priority DESC, j.id
 LIMIT :limit
   FOR UPDATE OF j SKIP LOCKED
""")


# The taken jobs whose message was handled, finished as procrastinate would have: started,
# then succeeded (two statements: the status trigger records `started` and `succeeded`).
START_TAKEN_JOBS = text(
    "UPDATE procrastinate_jobs SET status = 'doing', worker_id = NULL"
    " WHERE id = ANY(CAST(:job_ids AS bigint[])) AND status = 'todo'"
)
FINISH_TAKEN_JOBS = text(
    "UPDATE procrastinate_jobs SET status = 'succeeded', attempts = attempts + 1"
    " WHERE id = ANY(CAST(:job_ids AS bigint[])) AND status = 'doing'"
)

# -- browsing jobs: `jobs list/show/emails` and the dashboard (jobs.ops.browse) -------

# One page of jobs, newest first, keyset-paginated on id (:before_id), with the time of its
# latest event. :age keeps jobs deferred within that interval: the first job deferred since
# then bounds the ids (jobs_procrastinate_events_deferred_at_idx). Each filter has an index:
# jobs_procrastinate_jobs_{status,queue,task}_id_idx (migration 0011).
JOBS_PAGE = text("""
SELECT j.id, j.queue_name, j.task_name, j.status::text AS status, j.attempts,
       j.scheduled_at, last.at AS last_event_at, last.type::text AS last_event
  FROM procrastinate_jobs j
  LEFT JOIN LATERAL (SELECT e.at, e.type FROM procrastinate_events e
                      WHERE e.job_id = j.id ORDER BY e.id DESC LIMIT 1) last ON true
 WHERE (CAST(:queue AS text) IS NULL OR j.queue_name = :queue)
   AND (CAST(:task AS text) IS NULL OR j.task_name = :task)
   AND (CAST(:status AS text) IS NULL OR j.status = CAST(:status AS procrastinate_job_status))
   AND (CAST(:before_id AS bigint) IS NULL OR j.id < :before_id)
   AND (CAST(:age AS interval) IS NULL OR j.id >= coalesce(
        (SELECT d.job_id FROM procrastinate_events d
          WHERE d.type = 'deferred' AND d.at >= now() - CAST(:age AS interval)
          ORDER BY d.at LIMIT 1), 9223372036854775807))
 ORDER BY j.id DESC
 LIMIT :limit
""")

# One job, all of its columns `jobs show` and the job page display.
JOB_DETAIL = text("""
SELECT j.id, j.queue_name, j.task_name, j.status::text AS status, j.priority, j.lock,
       j.queueing_lock, j.args, j.scheduled_at, j.attempts, j.abort_requested, j.worker_id
  FROM procrastinate_jobs j WHERE j.id = :job_id
""")

# A job's events, oldest first (procrastinate_events_job_id_fkey_v1).
JOB_EVENTS = text("""
SELECT e.type::text AS type, e.at FROM procrastinate_events e
 WHERE e.job_id = :job_id ORDER BY e.at, e.id
""")

# The delivery job that carries each ledger row (jobs_procrastinate_jobs_message_ids_idx, a
# GIN index on the jobs of task 'email.deliver': the literal lets any plan use it).
JOBS_OF_MESSAGES = text("""
SELECT m.id AS message_id, max(j.id) AS job_id
  FROM unnest(CAST(:message_ids AS bigint[])) AS m(id)
  LEFT JOIN procrastinate_jobs j
    ON j.task_name = 'email.deliver' AND j.args -> 'message_ids' @> jsonb_build_array(m.id)
 GROUP BY m.id
""")

# Outcome events per minute, queue and task over the last hour (the dashboard's chart and
# its 1 h counts): jobs_procrastinate_events_outcome_at_idx, then one job lookup per event.
THROUGHPUT = text("""
SELECT date_trunc('minute', e.at) AS minute, j.queue_name, j.task_name,
       e.type::text AS type, count(*) AS n
  FROM procrastinate_events e
 CROSS JOIN LATERAL (SELECT queue_name, task_name FROM procrastinate_jobs
                      WHERE id = e.job_id LIMIT 1) j
 WHERE e.type IN ('succeeded', 'failed', 'deferred_for_retry')
   AND e.at >= date_trunc('minute', now()) - interval '59 minutes'
 GROUP BY 1, 2, 3, 4
""")

# `jobs worker` says where it runs; rows of workers procrastinate has pruned go.
RECORD_WORKER = text("""
WITH gone AS (
    DELETE FROM worker_info i
     WHERE NOT EXISTS (SELECT 1 FROM procrastinate_workers w WHERE w.id = i.worker_id)
)
INSERT INTO worker_info (worker_id, host, pid, queues)
VALUES (:worker_id, :host, :pid, :queues)
ON CONFLICT (worker_id) DO UPDATE
   SET host = excluded.host, pid = excluded.pid, queues = excluded.queues
""")
