"""Operating the queue: the status queries and their text and JSON forms
(`jobs status`), the Prometheus collector and counters, recovery of jobs left by a
dead worker, retention of finished jobs, and the hand tools `jobs retry-failed` and
`jobs cancel`.
"""
