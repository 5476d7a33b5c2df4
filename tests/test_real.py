"""Real photos: `label` (a folder with a non-face and a corrupt file, resume, refusals), `train
--real` from each kind of SPEC (EG3D zip, label zip, folder of photos), and the chain label ->
train --real -> gen on a photo. Photos: scikit-image's astronaut and variants."""

import csv
import importlib.util
import io
import json
import zipfile

import numpy as np
import PIL.Image
import pytest
import torch

from conftest import assert_one_line_error, run_cli

skimage_data = pytest.importorskip('skimage.data')
if not all(importlib.util.find_spec(m) for m in ('dlib', 'face_recognition_models')):
    pytest.skip('needs dlib-bin and face-recognition-models (the "align" extra)', allow_module_level=True)

FAST = dict(arch='unet', arch_kwargs={'size': 'tiny'}, input_res=32, batch=4, lr=1e-3, tick_kimg=0.004, snap=1,
            seed=0, reuse=2, val_seeds=[0, 1], grid=2, w_stats_samples=200, workers=0, real_holdout=1)


@pytest.fixture(scope='module')
def photos(tmp_path_factory):
    """astronaut (PNG), its mirror image (JPEG), a darker crop (JPEG), a coffee cup (no face), a corrupt file."""
    d = tmp_path_factory.mktemp('photos')
    a = skimage_data.astronaut()
    PIL.Image.fromarray(a).save(d / 'a_astronaut.png')
    PIL.Image.fromarray(a[:, ::-1]).save(d / 'b_mirror.jpg', quality=90)
    PIL.Image.fromarray((a[20:480, 40:500] * 0.8).astype(np.uint8)).save(d / 'c_dark.jpg', quality=85)
    PIL.Image.fromarray(skimage_data.coffee()).save(d / 'd_coffee.png')
    (d / 'e_corrupt.jpg').write_bytes(b'\xff\xd8\xff\xe0 not really a jpeg')
    return d


@pytest.fixture(scope='module')
def label_zip(tmp_path_factory, photos, tiny_pkl, tiny_regressor):
    """`eg3d-regress label` on the folder (2 alignment processes, 2 refinement steps)."""
    dest = tmp_path_factory.mktemp('label') / 'labelled.zip'
    proc = run_cli('label', '--network', tiny_pkl, '--regressor', tiny_regressor, '--images', photos, '--dest', dest,
                   '--refine-steps', 2, '--batch', 2, '--device', 'cpu')
    assert proc.returncode == 0, proc.stderr
    return dest, proc.stdout


@pytest.fixture(scope='module')
def eg3d_zip(tmp_path_factory, label_zip):
    """EG3D's own dataset layout (images + dataset.json, nothing else): the label zip's crops."""
    src, _ = label_zip
    dest = tmp_path_factory.mktemp('eg3dzip') / 'faces.zip'
    with zipfile.ZipFile(src) as z, zipfile.ZipFile(dest, 'w') as out:
        for name in z.namelist():
            if name.endswith('.png') or name == 'dataset.json':
                out.writestr(name, z.read(name))
    return dest


@pytest.fixture(scope='module')
def pairs_zip(tmp_path_factory, tiny_G):
    from eg3d_regressor_plugin.training.dataset_writer import make_dataset_zip
    dest = tmp_path_factory.mktemp('pairs') / 'pairs.zip'
    return make_dataset_zip(tiny_G, dest, 8, resolution=32, batch=8, progress=False)


@pytest.mark.eg3d
@pytest.mark.slow
def test_label_folder_skips_and_lists(label_zip, tiny_G):
    from eg3d_regressor_plugin.training.data import PairDataset
    dest, stdout = label_zip
    assert 'Skipped d_coffee.png: no face found' in stdout and 'Skipped e_corrupt.jpg' in stdout
    assert '3 photos labelled, 2 skipped' in stdout
    ds = PairDataset(dest, G=tiny_G)
    assert len(ds) == 3 and ds.resolution == 128
    item = ds[0]
    assert item['img'].shape == (3, 128, 128) and item['w'].shape == (14, 512) and item['c'].shape == (25,)
    with zipfile.ZipFile(dest) as z:
        rows = list(csv.DictReader(io.StringIO(z.read('labels.csv').decode())))
        meta = json.loads(z.read('regressor_dataset.json'))
    assert [r['source'] for r in rows] == ['a_astronaut.png', 'b_mirror.jpg', 'c_dark.jpg']
    assert all(float(r['psnr']) >= float(r['psnr_regressor']) - 0.5 for r in rows)  # refined: not worse
    assert meta['kind'] == 'label' and meta['generator']['w_avg_sha']
    assert [s['name'] for s in meta['skipped']] == ['d_coffee.png', 'e_corrupt.jpg']


@pytest.mark.eg3d
def test_label_resumes(tmp_path, photos, tiny_G, tiny_regressor, monkeypatch):
    from eg3d_regressor_plugin import labelling
    from eg3d_regressor_plugin.training import dataset_writer
    dest = tmp_path / 'out.zip'
    calls = []
    real_label_one = labelling._label_one
    monkeypatch.setattr(labelling, '_label_one', lambda *a: calls.append(1) or real_label_one(*a))

    def interrupted(self, *a, **k):
        raise KeyboardInterrupt
    with monkeypatch.context() as m:
        m.setattr(dataset_writer.ShardStore, 'assemble', interrupted)
        with pytest.raises(KeyboardInterrupt):
            labelling.label_photos(tiny_G, tiny_regressor, photos, dest, refine_steps=0, batch=2, workers=1, progress=False)
    assert len(calls) == 3 and not dest.exists()
    assert len(list((tmp_path / '.out.zip.partial').glob('shard-*.zip'))) == 3
    lines = []
    out = labelling.label_photos(tiny_G, tiny_regressor, photos, dest, refine_steps=0, batch=2, workers=1,
                                 progress=False, log=lines.append)
    assert len(calls) == 3  # nothing labelled again
    assert 'Resuming' in lines[0] and out['labelled'] == 3 and len(out['skipped']) == 2
    assert not (tmp_path / '.out.zip.partial').exists()


@pytest.mark.eg3d
def test_label_refusals(tmp_path, photos, eg3d_zip, tiny_pkl, tiny_regressor):
    base = ['label', '--network', tiny_pkl, '--device', 'cpu']
    corrupt = tmp_path / 'corrupt.zip'
    corrupt.write_bytes(b'PK\x03\x04 this is not a zip')
    line = assert_one_line_error(run_cli(*base, '--regressor', tiny_regressor, '--images', corrupt, '--dest', tmp_path / 'a.zip'))
    assert '--images' in line and 'zip' in line
    # An EG3D zip without its camera labels: needed unless --predict-pose.
    nolabels = tmp_path / 'nolabels.zip'
    with zipfile.ZipFile(eg3d_zip) as z, zipfile.ZipFile(nolabels, 'w') as out:
        for name in z.namelist():
            if name != 'dataset.json':
                out.writestr(name, z.read(name))
    line = assert_one_line_error(run_cli(*base, '--regressor', tiny_regressor, '--images', nolabels, '--dest', tmp_path / 'b.zip'))
    assert 'camera label' in line and '--predict-pose' in line
    # A regressor made for another generator.
    ckpt = torch.load(tiny_regressor, weights_only=True)
    ckpt['generator'] = dict(ckpt['generator'], w_avg_sha='0000000000000000')
    other = tmp_path / 'other.pt'
    torch.save(ckpt, other)
    line = assert_one_line_error(run_cli(*base, '--regressor', other, '--images', photos, '--dest', tmp_path / 'c.zip'))
    assert 'another generator' in line


@pytest.mark.eg3d
def test_train_real_refuses_a_label_set_of_another_generator(tmp_path, label_zip, tiny_pkl):
    src, _ = label_zip
    other = tmp_path / 'other.zip'
    with zipfile.ZipFile(src) as z, zipfile.ZipFile(other, 'w') as out:
        for name in z.namelist():
            body = z.read(name)
            if name == 'regressor_dataset.json':
                meta = json.loads(body)
                meta['generator']['w_avg_sha'] = '0000000000000000'
                body = json.dumps(meta)
            out.writestr(name, body)
    line = assert_one_line_error(run_cli('train', '--network', tiny_pkl, '--outdir', tmp_path / 'runs', '--kimg', 0.004,
                                         '--real', other, '--device', 'cpu'))
    assert line.startswith('Error: --real') and 'another generator' in line


@pytest.mark.eg3d
@pytest.mark.slow
@pytest.mark.parametrize('kind', ['eg3d-zip', 'label', 'photos'])
def test_train_real_each_spec(kind, tmp_path, tiny_pkl, pairs_zip, eg3d_zip, label_zip, photos):
    from eg3d_regressor_plugin.training import training_loop as loop
    spec = {'eg3d-zip': eg3d_zip, 'label': label_zip[0], 'photos': photos}[kind]
    loop.training_loop(tmp_path, tiny_pkl, kimg=0.008, data_zip=pairs_zip, real=str(spec), real_ratio=0.5,
                       real_w_loss=1.0, **FAST)  # the pseudo-label term is off by default
    log = (tmp_path / 'log.txt').read_text()
    assert f'({kind};' in log
    stats = [json.loads(l) for l in (tmp_path / 'stats.jsonl').read_text().splitlines()]
    last = stats[-1]
    for key in ('Loss/w_l1', 'Loss/real_img_mse', 'Loss/real_id', 'Loss/real_delta_reg', 'Val/real_psnr', 'Val/real_id_sim'):
        assert key in last and np.isfinite(last[key]), key
    assert ('Loss/real_w_l1' in last) == (kind == 'label')
    assert ('Loss/real_pose' in last) == (kind != 'photos')
    # Resuming continues the mixed batches exactly as one run would have.
    snap = tmp_path / 'regressor-snapshot-000000.pt'
    assert torch.load(snap, weights_only=True)['state']['cur_nimg'] == 8


@pytest.mark.eg3d
@pytest.mark.parametrize('which', ['label', 'eg3d-zip'])
def test_streamed_zip_gives_the_in_memory_batches(which, tmp_path, tiny_G, tiny_pkl, label_zip, eg3d_zip, pairs_zip,
                                                  monkeypatch):
    """A zip too large for memory streams from disk (real_data.STREAM_BYTES): the same held-out
    images and the same batches, step by step, as when it is held in memory; training runs on it."""
    from eg3d_regressor_plugin.training import real_data, sources, training_loop as loop
    spec = label_zip[0] if which == 'label' else eg3d_zip
    mem = real_data.load_real(spec, tiny_G, 32, stream=False)
    monkeypatch.setattr(real_data, 'STREAM_BYTES', 0)
    lines = []
    streamed = real_data.load_real(spec, tiny_G, 32, log=lines.append)
    assert 'stream' in streamed and 'img' not in streamed and streamed['kind'] == mem['kind'] == which
    assert any('stream from disk' in l for l in lines)
    (train_m, val_m), (train_s, val_s) = real_data.split_holdout(mem, 1), real_data.split_holdout(streamed, 1)
    for k in ('img', 'w', 'has_w', 'c', 'has_c'):
        assert torch.equal(val_m[k], val_s[k]), k
    cpu = torch.device('cpu')
    src_m = sources.RealSource(train_m, 2, 5, 0, 1, cpu, 16)
    src_s = sources.RealSource(train_s, 2, 5, 0, 1, cpu, 16, start_step=3)
    assert torch.equal(src_m.stat_images(), src_s.stat_images())
    for step in range(3, 7):  # past an epoch of the 2 training images
        bm, bs = src_m.batch(step), src_s.batch(step)
        for k in ('img', 'target', 'w', 'has_w', 'c', 'has_c', 'pose'):
            assert torch.equal(bm[k], bs[k]), (step, k)
    loop.training_loop(tmp_path, tiny_pkl, kimg=0.008, data_zip=pairs_zip, real=str(spec), real_ratio=0.5,
                       real_w_loss=1.0, **FAST)  # the pseudo-label term is off by default
    assert 'stream from disk' in (tmp_path / 'log.txt').read_text()
    stats = [json.loads(l) for l in (tmp_path / 'stats.jsonl').read_text().splitlines()]
    assert np.isfinite(stats[-1]['Val/real_psnr']) and np.isfinite(stats[-1]['Loss/real_img_mse'])


@pytest.mark.eg3d
def test_streamed_zip_damaged_member_is_one_line(tmp_path, tiny_G, eg3d_zip):
    """A member that does not decode stops a streamed set with one line naming it, also when a
    DataLoader worker read it."""
    from eg3d_regressor_plugin.errors import UserError
    from eg3d_regressor_plugin.training import real_data, sources
    bad = tmp_path / 'bad.zip'
    with zipfile.ZipFile(eg3d_zip) as z, zipfile.ZipFile(bad, 'w') as out:
        names = [n for n in z.namelist() if n.endswith('.png')]
        for n in z.namelist():
            out.writestr(n, b'not a png' if n == names[0] else z.read(n))
    real = real_data.load_real(bad, tiny_G, 32, stream=True)
    src = sources.RealSource(real, len(names), 0, 0, 1, torch.device('cpu'), 16, workers=1)
    with pytest.raises(UserError) as e:
        src.batch(0)  # every image: the damaged one among them
    assert len(str(e.value).splitlines()) == 1 and names[0] in str(e.value), str(e.value)


@pytest.mark.eg3d
@pytest.mark.slow
def test_chain_label_train_gen(tmp_path, label_zip, photos, tiny_pkl, pairs_zip):
    src, _ = label_zip
    proc = run_cli('train', '--network', tiny_pkl, '--outdir', tmp_path / 'runs', '--data', pairs_zip, '--kimg', 0.008,
                   '--tick', 0.004, '--arch', 'unet', '--input-res', 32, '--batch', 4, '--val-seeds', '0-1',
                   '--real', src, '--real-ratio', 0.5, '--real-holdout', 1, '--workers', 0, '--device', 'cpu')
    assert proc.returncode == 0, proc.stderr
    (run,) = (tmp_path / 'runs').iterdir()
    assert run.name.endswith('-real')
    assert 'real PSNR' in (run / 'log.txt').read_text()
    snap = sorted(run.glob('regressor-snapshot-*.pt'))[-1]
    proc = run_cli('gen', '--network', tiny_pkl, '--regressor', snap, '--image', photos / 'a_astronaut.png',
                   '--outdir', tmp_path / 'gen', '--views', 0, '--device', 'cpu')
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / 'gen' / 'a_astronaut' / 'reconstruction.png').is_file()
    assert np.load(tmp_path / 'gen' / 'a_astronaut' / 'w.npy').shape == (1, 14, 512)


@pytest.mark.eg3d
@pytest.mark.slow
def test_train_real_two_process_ddp(tmp_path, tiny_pkl, pairs_zip, label_zip):
    """--real with --gpus 2 (gloo on the CPU): each rank trains on its share of the real images,
    rank 0 validates the held-out ones, and the ranks end with the same weights."""
    proc = run_cli('train', '--network', tiny_pkl, '--outdir', tmp_path, '--data', pairs_zip, '--kimg', 0.016,
                   '--tick', 0.008, '--snap', 1, '--gpus', 2, '--arch', 'unet', '--input-res', 32, '--batch', 4,
                   '--val-seeds', '0-1', '--real', label_zip[0], '--real-ratio', 0.5, '--real-holdout', 1,
                   '--real-w-loss', 1, '--workers', 0, '--device', 'cpu')
    assert proc.returncode == 0, proc.stderr
    (run,) = tmp_path.iterdir()
    log = (run / 'log.txt').read_text()
    assert 'the 2 ranks hold identical weights' in log and '(label;' in log
    stats = [json.loads(l) for l in (run / 'stats.jsonl').read_text().splitlines()]
    assert len(stats) == 2 and all(np.isfinite(s['Val/real_psnr']) and np.isfinite(s['Loss/real_w_l1']) for s in stats)
    ckpt = torch.load(sorted(run.glob('regressor-snapshot-*.pt'))[-1], weights_only=True)
    assert ckpt['state']['cur_nimg'] == 16 and ckpt['state']['world'] == 2


@pytest.mark.eg3d
@pytest.mark.slow
def test_train_real_resume_continues_exactly(tmp_path, tiny_pkl, pairs_zip, eg3d_zip):
    from eg3d_regressor_plugin.training import training_loop as loop
    a, c = tmp_path / 'a', tmp_path / 'c'
    a.mkdir(), c.mkdir()
    opts = dict(FAST, data_zip=pairs_zip, real=str(eg3d_zip), id_loss=0.1)
    loop.training_loop(a, tiny_pkl, kimg=0.008, **opts)
    snap = a / 'regressor-snapshot-000000.pt'
    loop.training_loop(a, tiny_pkl, kimg=0.016, resume=snap, **opts)
    loop.training_loop(c, tiny_pkl, kimg=0.016, **opts)
    resumed, straight = torch.load(snap, weights_only=True), torch.load(c / snap.name, weights_only=True)
    assert resumed['state']['step'] == straight['state']['step'] == 4
    for k, v in straight['state_dict'].items():
        assert torch.equal(resumed['state_dict'][k], v), k


@pytest.mark.eg3d
@pytest.mark.slow
def test_train_real_style_pairs(tmp_path, tiny_pkl, pairs_zip, eg3d_zip):
    """Real-style pairs from a dataset zip with masks, from on-the-fly renders (masks rendered),
    and from a zip written before masks (one log line; they keep their backgrounds); styling
    changes what the network learns."""
    from eg3d_regressor_plugin.training import training_loop as loop
    old = tmp_path / 'old.zip'
    with zipfile.ZipFile(pairs_zip) as z, zipfile.ZipFile(old, 'w') as out:
        for name in z.namelist():
            if not name.startswith('masks/'):
                out.writestr(name, z.read(name))
    weights = {}
    for name, data_zip, style in (('masks', pairs_zip, 1.0), ('fly', None, 1.0), ('old', old, 1.0), ('none', pairs_zip, 0.0)):
        d = tmp_path / name
        d.mkdir()
        loop.training_loop(d, tiny_pkl, kimg=0.008, data_zip=data_zip, real=str(eg3d_zip), real_style=style, **FAST)
        log = (d / 'log.txt').read_text()
        assert ('no background masks' in log) == (name == 'old'), name
        weights[name] = torch.load(d / 'regressor-snapshot-000000.pt', weights_only=True)['state_dict']
        assert all(torch.isfinite(v).all() for v in weights[name].values() if v.is_floating_point())
    assert any(not torch.equal(v, weights['none'][k]) for k, v in weights['masks'].items())
    assert any(not torch.equal(v, weights['old'][k]) for k, v in weights['masks'].items())
