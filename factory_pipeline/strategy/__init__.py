"""Strategy representation: the signal language, modules and system specs."""
