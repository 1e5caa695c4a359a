"""MINE MI evaluation: estimator accuracy on Gaussians, bound forms, non-finite guard, pairs, CLI end to end."""
import json
import math
import os

import numpy as np
import PIL.Image
import pytest
import torch
from click.testing import CliRunner

import eval_MI_MINE
from dnnlib.util import UserError
from metrics import mine


def correlated_gaussians(n, d, rho, seed=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g)
    y = rho * x + math.sqrt(1 - rho ** 2) * torch.randn(n, d, generator=g)
    return x, y


@pytest.mark.parametrize('d, rho', [(5, 0.7), (8, 0.5)])
def test_gaussian_mi_within_10_percent(d, rho):
    x, y = correlated_gaussians(10000, d, rho)
    true_mi = -d / 2 * math.log(1 - rho ** 2)
    # The real training function with the sound bound, a small net, and large batches for a low-variance estimate.
    out = mine.train_mine(mine.TensorPairs(x, y), iters=1000, hidden=128, batch_size=256, eval_batch_size=1000,
                          lr=1e-3, bound='dv', shuffle='permutation', average_last=5)
    assert abs(out['mi'][0] - true_mi) < 0.1 * true_mi, (out['mi'][0], true_mi)


def test_naive_bound_matches_logsumexp():
    g = torch.Generator().manual_seed(0)
    t_joint, t_marginal = torch.randn(2, 128, generator=g, dtype=torch.float64) * 5
    naive = mine.dv_bound(t_joint, t_marginal, 'dv-naive')
    stable = mine.dv_bound(t_joint, t_marginal, 'dv')
    assert torch.allclose(naive, stable, rtol=1e-12)
    big = torch.full((4,), 200.0)  # exp overflows fp32 only in the naive form
    assert not mine.dv_bound(big, big, 'dv-naive').isfinite()
    assert mine.dv_bound(big, big, 'dv').item() == pytest.approx(0.0, abs=1e-4)


def test_nonfinite_batches_raise_after_limit():
    x, y = correlated_gaussians(64, 4, 0.5)
    source = mine.TensorPairs(x * 1e6, y * 1e6)  # T ~ 1e5: exp overflows in the naive bound
    with pytest.raises(UserError, match='--bound=dv'):
        mine.train_mine(source, iters=5, hidden=8, bound='dv-naive', max_nonfinite=5)
    out = mine.train_mine(source, iters=5, hidden=8, bound='dv')
    assert out['nonfinite_train'] == 0 and math.isfinite(out['mi'][0])


def test_evaluate_skips_and_counts_nonfinite_batches():
    x, y = correlated_gaussians(256, 4, 0.5)
    x[128:] *= 1e6  # the second eval batch overflows
    net = mine.StatisticsNetwork(8, hidden=8)
    means, skipped = mine.evaluate([net], mine.TensorPairs(x, y), torch.arange(256), batch_size=128,
                                   bound='dv-naive', shuffle='permutation', generator=torch.Generator())
    first, _ = mine.evaluate([net], mine.TensorPairs(x[:128], y[:128]), torch.arange(128), batch_size=128,
                             bound='dv-naive', shuffle='permutation', generator=torch.Generator())
    assert skipped == 1 and means == pytest.approx(first)


def test_eval_schedule():
    full = mine.eval_schedule(100000)
    assert full[:2] == [20, 420] and full[-2:] == [99620, 100000] and len(full) == 251
    assert mine.eval_schedule(30) == list(range(3, 31, 3))
    assert mine.eval_schedule(1) == [1]


def test_layer_pairs():
    g = torch.Generator().manual_seed(0)
    fg, bg = torch.randint(0, 256, (2, 3, 3, 4, 4), dtype=torch.uint8, generator=g)
    mask = torch.randint(0, 256, (3, 1, 4, 4), dtype=torch.uint8, generator=g)
    layers = dict(fg=fg, bg=bg, mask=mask)
    f, b, m = (fg.float() - 127.5) / 127.5, (bg.float() - 127.5) / 127.5, mask.float() / 255
    idx = torch.tensor([2, 0])
    (x1, y1), (x2, y2) = mine.LayerPairs(layers, 'separate')(idx)
    for got, want in [(x1, f * m), (y1, b * m), (x2, b * (1 - m)), (y2, f * (1 - m))]:
        assert torch.allclose(got, want[idx].flatten(1), atol=1e-6)
    [(x, y)] = mine.LayerPairs(layers, 'single')(idx)
    assert torch.allclose(x, f[idx].flatten(1), atol=1e-6) and torch.allclose(y, b[idx].flatten(1), atol=1e-6)


def write_samples(root, n=40, size=32, sizes=None):
    """A synthetic sample folder in the generator's layout, with random 8-bit layers."""
    rng = np.random.default_rng(0)
    for layer in ('bg', 'fg', 'mask', 'fg*mask', 'img'):
        os.makedirs(os.path.join(root, layer))
        for i in range(n):
            s = (sizes or {}).get((layer, i), size)
            img = rng.integers(0, 256, (s, s, 3), dtype=np.uint8)
            PIL.Image.fromarray(img).save(os.path.join(root, layer, f'{i + 1:06d}.png'))
    return str(root)


def test_load_layers_resizes_and_keeps_mask_channel(tmp_path):
    syn = write_samples(tmp_path / 'syn', n=3, size=8)
    layers = mine.load_layers(syn, resolution=4)
    assert layers['fg'].shape == (3, 3, 4, 4) and layers['mask'].shape == (3, 1, 4, 4)
    with PIL.Image.open(os.path.join(syn, 'mask', '000002.png')) as img:
        want = np.asarray(img.resize((4, 4), PIL.Image.BILINEAR))[:, :, 0]
    assert np.array_equal(layers['mask'][1, 0].numpy(), want)


def test_cli_end_to_end(tmp_path):
    syn = write_samples(tmp_path / 'syn', size=32)
    result = CliRunner().invoke(eval_MI_MINE.main, [f'--path={syn}', '--iters=30', '--resolution=16', '--bound=dv'])
    assert result.exit_code == 0, result.output
    assert '[ Separate ]:' in result.output and '[ Single ]:' in result.output
    run_dir = os.path.join(syn, 'MI-estimation-MINE', '00000')
    for mode, keys in [('separate', ['ave_MI_train1', 'ave_MI_train2']), ('single', ['ave_MI_train'])]:
        files = set(os.listdir(os.path.join(run_dir, mode)))
        assert {'log.txt', 'training_options.json', 'stats.jsonl', 'metric-eval-MI-train.jsonl',
                'metric-eval-MI-val.jsonl', mine.RESULTS_NAME} <= files
        with open(os.path.join(run_dir, mode, 'metric-eval-MI-train.jsonl')) as f:
            assert [json.loads(line)['iter'] for line in f] == list(range(3, 31, 3))
        with open(os.path.join(run_dir, mode, mine.RESULTS_NAME)) as f:
            result = json.load(f)
            assert all(math.isfinite(result[k]) for k in keys)
    with open(os.path.join(run_dir, mine.RESULTS_NAME)) as f:
        assert set(json.load(f)) == {'separate', 'single'}

    # An explicit outdir with finished modes is reused, not retrained.
    result = CliRunner().invoke(eval_MI_MINE.main, [f'--path={syn}', f'--outdir={run_dir}', '--mode=single',
                                                    '--iters=30', '--resolution=16', '--bound=dv'])
    assert result.exit_code == 0 and 'reusing' in result.output


def bad_folder(tmp_path, case):
    if case == 'missing':
        return str(tmp_path / 'nope')
    if case == 'no-fg':
        os.makedirs(tmp_path / 'syn' / 'bg')
        return str(tmp_path / 'syn')
    syn = write_samples(tmp_path / 'syn', n=0 if case == 'empty' else 3, size=8,
                        sizes={('bg', 1): 16} if case == 'sizes' else None)
    if case == 'mismatch':
        os.remove(os.path.join(syn, 'mask', '000002.png'))
    return syn


@pytest.mark.parametrize('case, message', [('missing', 'not found'), ('no-fg', 'no fg/ folder'),
                                           ('empty', 'no PNG files'), ('mismatch', 'different files'),
                                           ('sizes', 'is 16x16 but')])
def test_cli_bad_input_exits_2_with_one_line(tmp_path, case, message):
    result = CliRunner().invoke(eval_MI_MINE.main, [f'--path={bad_folder(tmp_path, case)}', '--iters=1'])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith('error: ') and message in lines[0], result.stderr
