"""Synthetic and packaged datasets: MNIST digits and the Moving MNIST generator."""
