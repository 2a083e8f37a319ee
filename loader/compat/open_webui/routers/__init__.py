"""Open WebUI's HTTP routers; their handlers are stand-ins."""
