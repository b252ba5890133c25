"""Training the learned stages here: the synthetic data engine, the pairs it makes, the training command."""
