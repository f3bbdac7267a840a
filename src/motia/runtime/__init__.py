"""Running steps: the app, ``ctx``, HTTP and cron triggers, logging and the server."""
