"""edgeclf's device side: model contract, preprocessing, TFLite runtime and the app.

Importing this package loads neither TensorFlow nor the host-side stages.
"""

__version__ = "0.1.0"
