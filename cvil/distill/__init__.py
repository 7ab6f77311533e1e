"""cvil.distill."""
