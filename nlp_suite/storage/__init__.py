"""SQL storage: typed ORM, sessions, migrations and repository functions."""
