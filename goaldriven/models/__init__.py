"""Networks. Every model returns {"logits": ..., "features": {name: tensor}} so neural fits can read named layers."""
