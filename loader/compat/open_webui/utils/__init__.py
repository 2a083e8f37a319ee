"""Open WebUI's utilities: the pure ones work, the server-bound ones are stand-ins."""
