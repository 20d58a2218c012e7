"""The runtimes: the local server, the command line, the Lambda handlers and the wiring."""
