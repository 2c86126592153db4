"""Images: the frozen ResNet-10 encoder (weights, conversion, identity), the reward classifier and
its success rule, camera crop/resize and image augmentation.
"""
