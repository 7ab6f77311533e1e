"""Significance between systems: the shared result types (`results`), paired and seed-aware tests (`significance`,
`two_level`), BLEU's own test (`bleu_significance`), the dispatch by metric (`by_metric.compare_frames`), and the
BLEU-to-accuracy ratio study behind `cvil.eval.bleu`'s preset (`bleu_ratio`)."""
