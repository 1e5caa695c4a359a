"""`make demo` entry point (see training/demo.py)."""
from training.demo import main

if __name__ == '__main__':
    main()
