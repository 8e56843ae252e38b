"""One module per `gsenet` subcommand: `add_arguments(parser)` and `run(args) -> int`."""

import os

# MLflow's client prints "View run ... at: URL" for every run it ends, without the workflowType the
# UI needs (a fresh browser opens the GenAI mode): gsenet prints its own links (gsenet.mlflow_ui).
# Set before any command runs, so Ray workers started from here inherit it too.
os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
