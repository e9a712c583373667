"""SID generator: token vocabulary, T5 model, SID trie and constrained beam search."""
