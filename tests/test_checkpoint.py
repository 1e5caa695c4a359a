"""Snapshots load without running code: our own format, the original's pickles, and tampered files."""
import os
import pickle

import pytest
import torch

import golden_tolerance as tol
import legacy
from dnnlib.util import UserError
from golden_tolerance import rel_err
from training import checkpoint, networks
from training import legacy as pickle_reader


def test_legacy_pickle_reproduces_reference_layers(golden):
    gold = golden.networks
    with open(golden.pickle_path, 'rb') as f:
        snap = legacy.load_network_pkl(f)
    assert isinstance(snap['G_ema'], networks.PerturbGenerator)
    assert isinstance(snap['D'], networks.DiscriminatorOpen)
    with torch.no_grad():
        out = snap['G_ema'](gold['z'], None, return_layers=True, noise_mode='const')
        d_out = snap['D'](gold['D_in'], None)
    for k in ('bg', 'fg', 'mask', 'img'):
        assert rel_err(out[k], gold['layers'][k]) < tol.NETWORKS, k
    assert d_out.shape == (gold['D_in'].shape[0], 1)
    # load_snapshot dispatches on the file's content.
    again = checkpoint.load_snapshot(golden.pickle_path)
    assert again['training_set_kwargs']['resolution'] == golden.res


class _Boom:
    """Pickles to a call of os.system: loading it normally would run a shell command."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (os.system, (f'touch {self.path}',))


def test_malicious_pickle_is_refused_and_nothing_runs(tmp_path):
    marker = tmp_path / 'pwned'
    evil = tmp_path / 'evil.pkl'
    with open(evil, 'wb') as f:
        pickle.dump({'G_ema': _Boom(marker), 'G': None, 'D': None}, f)
    with open(evil, 'rb') as f, pytest.raises(UserError, match='os|posix|system'):
        legacy.load_network_pkl(f)
    with pytest.raises(UserError):
        checkpoint.load_snapshot(str(evil))
    assert not marker.exists()


def test_persistent_object_cannot_smuggle_code(tmp_path):
    # A persistent object whose state holds a callable global is refused too, not just top-level objects.
    marker = tmp_path / 'pwned'
    evil = tmp_path / 'evil2.pkl'

    class Evil:
        def __reduce__(self):
            return (pickle_reader._reconstruct_persistent_obj, ({'type': 'class', 'state': {'x': _Boom(marker)}},))
    Evil.__reduce__.__module__ = 'torch_utils.persistence'
    with open(evil, 'wb') as f:
        pickle.dump({'G_ema': Evil()}, f)
    with pytest.raises(UserError):
        checkpoint.load_snapshot(str(evil))
    assert not marker.exists()


def _tiny_G():
    return networks.PerturbGenerator(z_dim=8, c_dim=0, w_dim=8, img_resolution=8, img_channels=3,
                                     mapping_kwargs=dict(num_layers=1),
                                     synthesis_kwargs=dict(channel_base=64, channel_max=8, num_fp16_res=0, conv_clamp=256))


def test_own_snapshot_round_trip(tmp_path):
    G = _tiny_G().eval()
    D = networks.DiscriminatorOpen(c_dim=0, img_resolution=8, img_channels=3, channel_base=64, channel_max=8).eval()
    path = tmp_path / 'network-snapshot-000000.pt'
    checkpoint.save_snapshot(path, {'G': G, 'D': D, 'G_ema': G, 'augment_pipe': None},
                             training_set_kwargs={'data': 'synthetic', 'resolution': 8}, extra={'kimg': 0})
    snap = checkpoint.load_snapshot(str(path))
    z = torch.randn(2, 8)
    with torch.no_grad():
        assert torch.equal(snap['G_ema'](z, None, noise_mode='const'), G(z, None, noise_mode='const'))
    assert snap['augment_pipe'] is None and snap['training_set_kwargs']['data'] == 'synthetic'
    assert not [p for p in os.listdir(tmp_path) if p.startswith('.tmp-')]


def test_truncated_or_foreign_files_give_clear_errors(tmp_path):
    G = _tiny_G()
    path = tmp_path / 'snap.pt'
    checkpoint.save_snapshot(path, {'G_ema': G})
    data = path.read_bytes()
    (tmp_path / 'cut.pt').write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError, match='cut.pt'):
        checkpoint.load_snapshot(str(tmp_path / 'cut.pt'))
    torch.save({'weights': torch.zeros(1)}, tmp_path / 'other.pt')
    with pytest.raises(UserError, match='not an ILSGAN snapshot'):
        checkpoint.load_snapshot(str(tmp_path / 'other.pt'))
    with pytest.raises(UserError, match='cannot read'):
        checkpoint.load_snapshot(str(tmp_path / 'missing.pt'))
