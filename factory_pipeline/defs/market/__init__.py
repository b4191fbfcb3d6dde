"""Market track assets."""
