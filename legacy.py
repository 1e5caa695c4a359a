"""`legacy.load_network_pkl(f)`: the original's name for reading its snapshot pickles (training/legacy.py reads them
without running their code, training/checkpoint.py builds this project's networks from them)."""
from training.checkpoint import load_network_pkl

__all__ = ['load_network_pkl']
