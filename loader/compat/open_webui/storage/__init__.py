"""Open WebUI's file storage (not available in Sluice)."""
