"""The learned critic: one prompt builder, a strict verdict parser, inference, training and evaluation.

`prompt` and `verdict` are plain Python. `model`, `train` and `tiny` import torch and transformers when they are
called, so importing this package stays cheap for the reward path.
"""
