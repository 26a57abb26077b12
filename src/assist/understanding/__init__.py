"""The understanding pipeline: pure typed stages from a customer turn to an Analysis."""
