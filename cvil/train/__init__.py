"""cvil.train."""
