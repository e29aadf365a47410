"""Subcommands of the `udfs` command line, one module per group."""
