"""GitHub: webhook verification, the webhook endpoint and the REST and GraphQL client."""
