"""lessoncast: party-lesson distribution and attendance. This package holds only the CLI entry point."""

__version__ = "0.1.0"
