"""The SAM-CP head: patch encoder, unified affinity decoder, classifier."""
