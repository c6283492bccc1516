"""Training the panoptic model: datasets with augmentation, losses, the training loop."""
