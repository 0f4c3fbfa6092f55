"""Self-supervised objectives of thesis Chapters 3 and 6 (SimCLR, MoCo v2, SimSiam, instance recognition, RotNet,
sparse autoencoder, depth prediction), their augmentations and data, and linear evaluation. See base.py."""
