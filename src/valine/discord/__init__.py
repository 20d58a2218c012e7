"""Discord: interaction verification and handling, and (later) the REST client."""
