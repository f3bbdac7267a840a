"""Running steps: the app, ``ctx``, HTTP, cron, queue and state triggers, delivery, events and logging."""
