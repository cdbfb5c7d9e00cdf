"""Storage: SQLAlchemy tables, the encrypted resource repository, data keys."""
