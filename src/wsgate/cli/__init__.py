"""Command line: nginx's flags plus wsgate's subcommands."""
