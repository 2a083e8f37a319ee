"""Open WebUI's database models; Sluice has none of their tables, so the table objects are stand-ins."""
