"""Train ILSGAN at 128x128 (see README). All logic lives in training/train_cli.py."""
import click

from dnnlib.util import cli_errors
from training import presets, train_cli


@click.command()
@train_cli.click_options(128, *presets.SCRIPT_PRESETS[128], default_auto_test=False)
@cli_errors
def main(**opts):
    train_cli.main(128, **opts)


if __name__ == '__main__':
    main()
