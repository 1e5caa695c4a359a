"""`make demo` entry point (see pipeline/demo.py)."""
from pipeline.demo import main

if __name__ == '__main__':
    main()
