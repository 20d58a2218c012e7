"""Stand-ins of the outside world (GitHub, Discord) for tests, demos and local runs."""
