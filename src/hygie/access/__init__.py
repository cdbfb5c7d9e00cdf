"""Identity and access: actors, scopes, the policy decision, API clients."""
