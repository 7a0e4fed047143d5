"""The ``ta-platform`` command line. Each subcommand lives in its own module and imports lazily."""
