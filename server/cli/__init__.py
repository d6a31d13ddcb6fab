"""Server subcommands of ``lessoncast``, one module per area; ``lessoncast/cli.py`` lists them."""
