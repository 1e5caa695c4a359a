"""Segmentation score of a generator's synthetic pairs (E128 protocol): U-Net input 64, logits upsampled x2 and
scored against 128 x 128 masks.

\b
  python eval_segmentation_eval128.py --syn-data=<run>/synthetic_data-004200 --real-data=cub --data-root=<DRC_processed>
"""
from metrics.seg_eval import make_cli

main = make_cli(default_scale=128, default_input_size=64, help_text=__doc__)

if __name__ == '__main__':
    main()
