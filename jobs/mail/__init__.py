"""Transactional email, from the caller's transaction to the SMTP server.

`enqueue` writes a ledger row and its delivery job in the caller's transaction;
`ledger` holds every rule about a row's status and failure; `delivery` locks a
batch of pending rows, builds each message (`templates`, `message`, `address`),
sends it over the worker's pooled connections (`pool`, `smtp`) within the global
budget (`ratelimit`) and records the outcomes; `preview` renders or sends one
message outside the queue (`jobs preview`, `jobs send-test`). Only `enqueue` and
what it needs (`address`, `message`, `templates`) are imported by the producer side.
"""
