"""cvil.eval."""
