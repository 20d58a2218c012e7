"""GitHub: webhook verification and routing, and (later) the REST client."""
