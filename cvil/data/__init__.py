"""cvil.data."""
