"""Journal adapters: SQLite (embedded default) and DynamoDB (production)."""
