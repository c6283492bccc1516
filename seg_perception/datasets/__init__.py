"""Label space and dataset folder formats (Cityscapes, BDD100K, our synthetic world)."""
