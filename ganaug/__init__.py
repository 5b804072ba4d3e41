"""ganaug: find the GAN data-augmentation policy that most improves an image classifier (Ray Tune + Optuna).

One command, `ganaug tune|evaluate|generate|pipeline` (ganaug.cli); importing the package loads nothing heavy.
"""

# The one place the version lives: pyproject.toml reads it ([tool.setuptools.dynamic]).
__version__ = "0.1.0"
