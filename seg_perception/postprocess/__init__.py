"""From network outputs to products: panoptic grouping, role masks (drivable, lane, obstacles)."""
