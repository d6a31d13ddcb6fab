"""The lessoncast server: Flask app, database, jobs, broker supervision and CLI commands."""
