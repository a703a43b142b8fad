"""The Ray side of training the head: training examples built on Ray Data, the Ray Train
TorchTrainer."""
