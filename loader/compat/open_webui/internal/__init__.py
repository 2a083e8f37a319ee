"""Open WebUI's database plumbing."""
