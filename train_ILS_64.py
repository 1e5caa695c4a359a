"""Train ILSGAN at 64x64 (see README). All logic lives in training/train_cli.py."""
import click

from dnnlib.util import cli_errors
from training import presets, train_cli


@click.command()
@train_cli.click_options(64, *presets.SCRIPT_PRESETS[64], default_auto_test=True)
@cli_errors
def main(**opts):
    train_cli.main(64, **opts)


if __name__ == '__main__':
    main()
