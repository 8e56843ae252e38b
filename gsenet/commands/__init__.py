"""One module per `gsenet` subcommand: `add_arguments(parser)` and `run(args) -> int`."""
