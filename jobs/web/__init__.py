"""The web side of `jobs` (Starlette): the public unsubscribe endpoint, the
operator dashboard, and the webhooks through which email providers report
bounces and complaints (`jobs.web.webhooks`)."""
