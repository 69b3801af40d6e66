"""Scheduled bulk mail: campaigns say what to send, the schedule says when
(PROMOTION_CRON), a run is one (campaign, period), and the fan-out turns the run's
recipients into chunks of ledger rows with one delivery job each. `promote` is the
entry point (periodic task and `jobs promote`); `unsubscribe` signs and honours the
opt-out links every promotion carries.
"""
