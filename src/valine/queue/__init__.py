"""JobQueue adapters: a durable SQLite queue for the local runtime and, later, SQS."""
