"""Segmentation score of a generator's synthetic pairs (E64 protocol): U-Net input and scoring at --scale.

\b
  python eval_segmentation.py --syn-data=<run>/synthetic_data-004200 --real-data=cub --data-root=<DRC_processed>
"""
from metrics.seg_eval import make_cli

main = make_cli(default_scale=64, default_input_size=None, help_text=__doc__)

if __name__ == '__main__':
    main()
