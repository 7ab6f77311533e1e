"""cvil.data.synth."""
