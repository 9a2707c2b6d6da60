"""One module per `nanonorm` subcommand: HELP, configure(parser), run(args) -> int."""
