"""``python -m lessoncast`` runs the lessoncast command."""

from lessoncast.cli import main

main()
