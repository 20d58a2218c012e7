"""RunStore adapters: SQLite (the embedded default) and, later, DynamoDB."""
