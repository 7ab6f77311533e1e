"""cvil.analysis: tools that read trained models and data (the embedding aligner, the Fig. 3 embedding plot)."""
