"""The procrastinate tasks: thin bodies that take settings, open one transaction and
call the stage packages. This module only names the tasks and queues, so that the
producer side (which defers by name) never imports a task body or worker code.
"""

from __future__ import annotations

DEFAULT_QUEUE = "default"
EMAIL_QUEUE = "email"
QUEUES = (DEFAULT_QUEUE, EMAIL_QUEUE)

DELIVER_TASK = "email.deliver"
PROMOTION_TASK = "promotion.send_promotion_emails"
RECOVER_TASK = "maintenance.recover_stalled"
PRUNE_TASK = "maintenance.prune"

# Transactional mail (welcome, password reset) is fetched before bulk chunks.
TRANSACTIONAL_PRIORITY = 10
BULK_PRIORITY = 0
