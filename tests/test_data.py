"""Synthetic pairs: the on-the-fly sampler, w statistics, the dataset zip and its tool."""

import io
import json
import zipfile

import numpy as np
import pytest
import torch

from conftest import assert_one_line_error, run_cli
from eg3d_regressor_plugin.errors import UserError
from eg3d_regressor_plugin.training import data


def test_derive_seed():
    assert data.derive_seed(0, 1, 2) == data.derive_seed(0, 1, 2)
    assert len({data.derive_seed(0, r, s) for r in range(2) for s in range(50)}) == 100


def test_epoch_batch_covers_each_item_once_per_epoch_and_splits_ranks():
    size, n, world = 10, 2, 2
    seen = [i for step in range(5) for rank in range(world) for i in data.epoch_batch(step, n, rank, world, size, seed=3)]
    assert sorted(seen[:size]) == list(range(size))  # the first epoch
    assert sorted(seen[size:2 * size]) == list(range(size))  # the second, in another order
    assert seen[:size] != seen[size:]
    assert data.epoch_batch(1, n, 0, world, size, 3) != data.epoch_batch(1, n, 1, world, size, 3)


@pytest.mark.eg3d
def test_sampler_shapes_reproducible_and_rng_untouched(tiny_G):
    from eg3d_regressor_plugin import cameras
    sampler = data.PairSampler(tiny_G, resolution=32, trunc_range=(0.5, 1.0))
    rng = torch.get_rng_state()
    a = sampler.sample(2, 0, 0, 0)
    assert torch.equal(torch.get_rng_state(), rng)  # the render's seeding leaves the global RNG alone
    assert a['img'].shape == (2, 3, 32, 32) and a['w'].shape == (2, 14, 512)
    assert a['pose'].shape == (2, 2) and a['c'].shape == (2, 25)
    assert all(v.device == tiny_G.backbone.mapping.w_avg.device for v in a.values())
    assert a['img'].min() >= -1 and a['img'].max() <= 1
    yaw, pitch, radius = cameras.label_to_pose(a['c'])
    assert torch.allclose(torch.stack([yaw, pitch], 1), a['pose'], atol=1e-4)
    b = sampler.sample(2, 0, 0, 0)
    assert all(torch.equal(a[k], b[k]) for k in a)
    other = sampler.draw([data.derive_seed(0, 0, 1, j) for j in range(2)])  # the next step's samples
    assert not torch.equal(sampler.draw([data.derive_seed(0, 0, 0, j) for j in range(2)])['z'], other['z'])


@pytest.mark.eg3d
def test_codes_follow_eg3d_mapping_and_truncation(tiny_G):
    from eg3d_regressor_plugin import cameras
    seeds = [3, 4]
    sampler = data.PairSampler(tiny_G, resolution=32, trunc_range=(0.7, 0.7), cond_pose='same')
    d = sampler.draw(seeds)
    # z is EG3D gen_samples.py's z for the seed; w its truncated mapping conditioned on the pose.
    assert np.allclose(d['z'][0].numpy(), np.random.RandomState(3).randn(tiny_G.z_dim), atol=1e-6)
    c = cameras.pose_to_label(d['pose'][:, 0], d['pose'][:, 1])
    expected = tiny_G.mapping(d['z'], c, truncation_psi=0.7)
    assert torch.allclose(sampler.codes(d['z'], d['psi'], c), expected, atol=1e-5)
    frontal = data.PairSampler(tiny_G, cond_pose='frontal').draw(seeds)
    assert torch.equal(frontal['cond_pose'], torch.zeros(2, 2)) and torch.equal(frontal['pose'], d['pose'])
    with pytest.raises(UserError):
        data.PairSampler(tiny_G, cond_pose='sideways')


@pytest.mark.eg3d
def test_w_stats(tiny_G):
    stats = data.estimate_w_stats(tiny_G, num=400, batch=200)
    w_avg = tiny_G.backbone.mapping.w_avg
    assert stats['center'].shape == stats['scale'].shape == (14, 512)
    assert torch.equal(stats['center'], w_avg.reshape(1, -1).repeat(14, 1))
    assert (stats['scale'] > 0).all()
    # Normalised fresh samples have about unit spread per dimension.
    sampler = data.PairSampler(tiny_G)
    d = sampler.draw(range(1000, 1200))
    from eg3d_regressor_plugin import cameras
    w = sampler.codes(d['z'], d['psi'], cameras.pose_to_label(d['cond_pose'][:, 0], d['cond_pose'][:, 1]))
    rms = (((w - stats['center']) / stats['scale']) ** 2).mean().sqrt()
    assert 0.8 < float(rms) < 1.25


#----------------------------------------------------------------------------
# Dataset zip.

@pytest.fixture(scope='module')
def dataset_zip(tmp_path_factory, tiny_G):
    from eg3d_regressor_plugin.training.dataset_writer import make_dataset_zip
    path = tmp_path_factory.mktemp('ds') / 'pairs.zip'
    make_dataset_zip(tiny_G, path, count=6, seed=5, batch=4, resolution=32, progress=False)
    return path


@pytest.mark.eg3d
def test_dataset_round_trip(dataset_zip, tiny_G):
    from eg3d_regressor_plugin.images import to_uint8
    ds = data.PairDataset(dataset_zip, G=tiny_G)
    assert len(ds) == 6 and ds.resolution == 32
    item = ds[5]
    assert item['img'].shape == (3, 32, 32) and item['w'].shape == (14, 512)
    assert item['pose'].shape == (2,) and item['c'].shape == (25,)
    # The stored pairs are what the sampler renders for the sample seeds of the second shard.
    seeds = [data.derive_seed(5, i) for i in (4, 5)]
    ref = data.PairSampler(tiny_G, resolution=32).sample_seeds(seeds)
    assert np.array_equal(to_uint8(ref['img'])[1], to_uint8(item['img']))
    assert torch.equal(ref['w'][1], item['w'])
    assert torch.allclose(ref['pose'][1], item['pose'], atol=1e-4)
    with zipfile.ZipFile(dataset_zip) as z:
        labels = json.loads(z.read('dataset.json'))['labels']
        assert labels[0][0] == '00000/img00000000.png' and len(labels[0][1]) == 25
        assert np.load(z.open('ws/00000/img00000000.npy')).shape == (1, 14, 512)
        assert json.loads(z.read(data.DATASET_META))['generator']['num_ws'] == 14
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=3)))
    assert batch['img'].shape == (3, 3, 32, 32)


def test_dataset_todo_skips_the_samples_complete_shards_hold():
    from eg3d_regressor_plugin.training.dataset_writer import _todo
    assert _todo([], 10, 4) == [(0, 4), (4, 4), (8, 2)]
    # Shards written out of order by parallel workers, one of another batch size.
    shards = [(0, 4, None), (8, 2, None), (12, 4, None)]
    assert _todo(shards, 14, 4) == [(4, 4), (10, 2)]
    assert _todo(shards, 6, 3) == [(4, 2)]


@pytest.mark.eg3d
def test_dataset_rendered_by_two_processes_matches_one(tmp_path, dataset_zip, tiny_G):
    from eg3d_regressor_plugin.training.dataset_writer import make_dataset_zip
    dest = make_dataset_zip(tiny_G, tmp_path / 'par.zip', count=6, seed=5, batch=4, resolution=32, progress=False,
                            workers=2)
    with zipfile.ZipFile(dest) as a, zipfile.ZipFile(dataset_zip) as b:
        assert json.loads(a.read('dataset.json')) == json.loads(b.read('dataset.json'))
        for name in b.namelist():
            if name.endswith('.png'):  # other thread counts may round a pixel the other way
                diff = np.abs(_png_array(a.read(name)).astype(int) - _png_array(b.read(name)).astype(int))
                assert diff.max() <= 1, name
            elif name.endswith('.npy'):
                assert np.allclose(np.load(io.BytesIO(a.read(name))), np.load(io.BytesIO(b.read(name))), atol=1e-5)
    assert not (tmp_path / '.par.zip.partial').exists()


def _png_array(raw):
    import PIL.Image
    return np.asarray(PIL.Image.open(io.BytesIO(raw)))


@pytest.mark.eg3d
def test_preloaded_and_streamed_batches_are_the_same(dataset_zip, tiny_G, monkeypatch):
    from eg3d_regressor_plugin.training.sources import DatasetSource
    ds = data.PairDataset(dataset_zip, G=tiny_G)
    kw = dict(batch_gpu=2, seed=1, rank=1, world=2, device=torch.device('cpu'), resolution=16, start_step=3, workers=0)
    preloaded = DatasetSource(ds, **kw)
    monkeypatch.setattr(DatasetSource, 'PRELOAD_BYTES', 0)
    streamed = DatasetSource(ds, **kw)
    assert preloaded.items is not None and streamed.items is None
    for step in (3, 4, 5, 6):  # into the second epoch (6 items, 4 per step over both ranks)
        a, b = preloaded.batch(step), streamed.batch(step)
        assert a['img'].shape == (2, 3, 16, 16)
        for k in ('img', 'w', 'pose', 'c'):
            assert torch.equal(a[k], b[k]), (step, k)


@pytest.mark.eg3d
def test_dataset_resumes_after_interruption(tmp_path, dataset_zip, tiny_G, monkeypatch):
    from eg3d_regressor_plugin.training import dataset_writer
    dest = tmp_path / 'pairs.zip'
    calls = []
    real_write = dataset_writer.write_shard

    def write_then_die(*args):
        if calls:
            raise KeyboardInterrupt  # interrupted while rendering the second shard
        calls.append(1)
        real_write(*args)
    monkeypatch.setattr(dataset_writer, 'write_shard', write_then_die)
    with pytest.raises(KeyboardInterrupt):
        dataset_writer.make_dataset_zip(tiny_G, dest, count=6, seed=5, batch=4, resolution=32, progress=False)
    assert not dest.exists()
    assert len(list((tmp_path / '.pairs.zip.partial').glob('shard-*.zip'))) == 1
    monkeypatch.setattr(dataset_writer, 'write_shard', real_write)
    with pytest.raises(UserError, match='other settings'):
        dataset_writer.make_dataset_zip(tiny_G, dest, count=6, seed=6, batch=4, resolution=32, progress=False)
    dataset_writer.make_dataset_zip(tiny_G, dest, count=6, seed=5, batch=4, resolution=32, progress=False)
    assert not (tmp_path / '.pairs.zip.partial').exists()
    with zipfile.ZipFile(dest) as a, zipfile.ZipFile(dataset_zip) as b:
        for name in b.namelist():
            if name != data.DATASET_META:
                assert a.read(name) == b.read(name), name
    with pytest.raises(UserError, match='already exists'):
        dataset_writer.make_dataset_zip(tiny_G, dest, count=6, seed=5, progress=False)


@pytest.mark.eg3d
def test_dataset_for_another_generator_is_refused(dataset_zip):
    from eg3d_regressor_plugin import presets
    other, _ = presets.build_networks('tiny', seed=1, w_avg_samples=100)
    with pytest.raises(UserError, match='another generator'):
        data.PairDataset(dataset_zip, G=other)


def test_unreadable_datasets_are_refused(tmp_path):
    missing = tmp_path / 'missing.zip'
    with pytest.raises(UserError, match='not found'):
        data.PairDataset(missing)
    text = tmp_path / 'text.zip'
    text.write_text('hello')
    with pytest.raises(UserError, match='not a zip'):
        data.PairDataset(text)
    plain = tmp_path / 'plain.zip'
    with zipfile.ZipFile(plain, 'w') as z:
        z.writestr('00000/img00000000.png', b'')
    with pytest.raises(UserError, match='not a regressor dataset'):
        data.PairDataset(plain)
    broken = tmp_path / 'broken.zip'
    with zipfile.ZipFile(broken, 'w') as z:
        z.writestr('dataset.json', json.dumps({'labels': [['00000/img00000000.png', [0.0] * 25]]}))
        z.writestr(data.DATASET_META, json.dumps({'format': data.DATASET_FORMAT, 'count': 1, 'resolution': 8}))
    with pytest.raises(UserError, match='incomplete'):
        data.PairDataset(broken)


def test_dataset_command_bad_options(tmp_path):
    dest = tmp_path / 'exists.zip'
    dest.write_bytes(b'x')
    assert 'already exists' in assert_one_line_error(
        run_cli('dataset', '--network', tmp_path / 'G.pkl', '--count', 2, '--dest', dest))
    assert 'cond-pose' in assert_one_line_error(
        run_cli('dataset', '--network', tmp_path / 'G.pkl', '--count', 2, '--dest', tmp_path / 'd.zip', '--cond-pose', 'up'))
    assert 'not found' in assert_one_line_error(
        run_cli('dataset', '--network', tmp_path / 'G.pkl', '--count', 2, '--dest', tmp_path / 'd.zip'))
    assert '--workers 0' in assert_one_line_error(
        run_cli('dataset', '--network', tmp_path / 'G.pkl', '--count', 2, '--dest', tmp_path / 'd.zip', '--workers', 0))
