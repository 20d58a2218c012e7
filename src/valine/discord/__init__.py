"""Discord: interaction verification, the interactions endpoint and the REST client."""
