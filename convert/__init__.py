"""edgeclf's converter: Keras -> .tflite in float32 / float16 / dynamic / int8, verified against Keras."""
