"""cvil.inputs: the cViL input construction (text encoding, the KD alignment pairs, code-mixing, collation, the
dataset) from what `cvil.data` reads. It may import cvil.data; cvil.data never imports it."""
