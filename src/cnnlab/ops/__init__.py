"""First principles: reference convolution and pooling in NumPy, and step-by-step traces."""
