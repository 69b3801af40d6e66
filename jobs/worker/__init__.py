"""Running a worker process: the procrastinate worker with its sweeper of
transactional email, its HTTP endpoint (``/metrics``, ``/healthz``), health probe,
graceful shutdown on signals, the per-job timeout middleware and the retry
strategy with backoff and jitter.
Nothing on the producer side imports this package.
"""
