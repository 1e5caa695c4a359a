"""The training command at toy size, for the fault tests and the fault campaign: a run of a few one-iteration ticks.

    python -m benchmarks.tiny_run --ticks=4 -- <train_ILS_64.py options>

The options are parsed, checked and turned into a run directory by the real command line (train_cli.prepare_run);
then, before training starts, the networks shrink to at most 16 channels and one mapping layer, the run to `--ticks`
ticks of one iteration each, and the snapshot grids to 4 x 4 samples. These overrides are recorded in
training_options.json, under "overrides" too. Everything after that is the real code: the training loop, then the
automatic evaluation if the options ask for it. So the documented `python train_ILS_64.py --resume=<run dir>`
continues such a run, with the stored (tiny) options.
"""
import os
import sys

import click

from dnnlib.util import cli_errors, write_json
from pipeline import train_cli
from training import presets

CHANNELS = dict(channel_base=128, channel_max=16)


def shrink(args, ticks):
    """Make the loop arguments of a resolved run tiny; returns the overrides applied."""
    tick_kimg = args['batch_size'] / 1000  # One iteration.
    overrides = dict(CHANNELS, mapping_layers=1, total_kimg=ticks * tick_kimg, kimg_per_tick=tick_kimg,
                     grid_max_side=4)
    args['G_kwargs']['synthesis_kwargs'].update(CHANNELS)
    args['G_kwargs']['mapping_kwargs']['num_layers'] = 1
    args['D_kwargs'].update(CHANNELS)
    args.update(total_kimg=overrides['total_kimg'], kimg_per_tick=tick_kimg, grid_max_side=4, overrides=overrides)
    return overrides


def main(argv):
    ticks = 4
    if argv and argv[0].startswith('--ticks='):
        ticks, argv = int(argv[0].split('=', 1)[1]), argv[1:]
    if argv and argv[0] == '--':
        argv = argv[1:]
    cfg_names, default_cfg = presets.SCRIPT_PRESETS[64]

    @click.command()
    @train_cli.click_options(cfg_names, default_cfg, default_auto_test=False)
    @cli_errors
    def command(**opts):
        run = train_cli.prepare_run(opts, 64, cfg_names, train_cli.given_options(opts))
        if not run.go:
            return
        args = run.args
        shrink(args, ticks)
        write_json(os.path.join(args['run_dir'], 'training_options.json'), args)
        print(f'Training in {args["run_dir"]}')
        train_cli.launch(args, run.training_set)
        train_cli.evaluate(args)

    command.main(argv, prog_name='tiny_run')


if __name__ == '__main__':
    main(sys.argv[1:])
