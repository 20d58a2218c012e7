"""The runtimes: the local server, the command line and (later) the Lambda handlers."""
