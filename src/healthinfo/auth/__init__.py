"""Who the caller is (tokens) and what they may do with a kit (access rules)."""
