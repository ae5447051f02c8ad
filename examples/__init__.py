"""Example networks for ``nasconv space from-model`` (bring your own network): each a plain
PyTorch model with a factory function, as a user's own code would be. Not part of the nasconv
package: the examples are imported by path (``examples/vgg.py:vgg16_cifar``) or as ``examples.vgg``
from the repository root."""
