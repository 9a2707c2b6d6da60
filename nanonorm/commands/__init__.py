"""One module per `nanonorm` subcommand: HELP, configure(parser), run(args) -> int. `train` keeps
its checks and resume in train_setup and its saved state in train_state."""
