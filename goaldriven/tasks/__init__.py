"""Tasks (objective + data + model + metrics) and the distributed training loop that runs any of them."""
