"""The ``advml`` command line: one subcommand per job (see :mod:`advml.cli.main`)."""
