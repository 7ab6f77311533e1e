"""cvil.analysis: tools over trained models (the Fig. 3 embedding plot, `cvil embed-plot`)."""
