"""One module per group of commands; entropy_dash.cli imports them only when the command runs."""
