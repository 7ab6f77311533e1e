"""cvil.models."""
