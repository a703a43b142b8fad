"""Self-training: rounds of label -> select -> retrain -> evaluate, and the audit of pseudo-labels
against ground truth."""
