"""edgeclf's benchmarks: latency, accuracy and size of .tflite models (TFLite runtime only)."""
