"""edgeclf's host-side trainer (TensorFlow/Keras): data, augmentation, architectures, fit, reports."""
