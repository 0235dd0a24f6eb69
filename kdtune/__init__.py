"""kdtune: student initialization and knowledge distillation sweeps for multilingual classifiers.

Reproduces and extends "The Privileged Students: On the Value of Initialization in Multilingual
Knowledge Distillation" (Wibowo, Solorio, Aji; arXiv 2406.16524).
"""

__version__ = "0.1.0"
