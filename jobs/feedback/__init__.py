"""Deliverability feedback: what receivers say after a message was sent.

Bounces and complaints arrive as delivery status notifications (RFC 3464) and
feedback reports (RFC 5965) at `jobs inbound`, addressed to a VERP return path
that names the ledger row, or as provider webhooks (`jobs.web.webhooks`). Every
raw event is stored once (`events`), matched to its ledger row, and acted on:
hard bounces and complaints put the address on the suppression list
(`suppressions`), repeated soft bounces do too, and a promotion run whose
bounce or complaint rate crosses its limit is paused (`breaker`).
"""
