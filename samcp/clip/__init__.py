"""The CLIP side: the open_clip text tower for vocabulary embeddings, and the region encoder /
classifier that crops masks for the frozen-CLIP ensemble."""
