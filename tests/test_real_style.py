"""Real-style synthetic pairs (`train --real --real-style`): the background mask of a render,
the styling (composite onto a real image, crop jitter, blur, noise, JPEG), its determinism per
step, the masks in dataset zips, and training with it."""

import json
import zipfile

import pytest
import torch

from conftest import assert_one_line_error, run_cli
from eg3d_regressor_plugin import render
from eg3d_regressor_plugin.training import real_style


def _head_depth(n=2, size=64, radius=20):
    """Depth maps of a disk (a head, depth ~2.5) in front of a far plane (3.3)."""
    d = torch.full((n, 1, size, size), 3.3)
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing='ij')
    disk = ((yy - size // 2) ** 2 + (xx - size // 2) ** 2) < radius ** 2
    d[:, 0, disk] = 2.5 + 0.1 * torch.rand(n, int(disk.sum()), generator=torch.Generator().manual_seed(0))
    return d, disk


def test_background_mask_of_a_head_in_front_of_a_plane():
    d, disk = _head_depth()
    for size in (32, 64, 128):
        m = render.background_mask(d, size)
        assert m.shape == (2, 1, size, size) and float(m.min()) >= 0 and float(m.max()) <= 1
        inside = torch.nn.functional.interpolate(disk[None, None].float(), size=(size, size))[0, 0] > 0
        # The head is foreground, the plane background, apart from the soft edge between them.
        k = 9  # the soft edge: the resampling and the 5-tap blur
        core = torch.nn.functional.max_pool2d((~inside)[None].float(), k, 1, k // 2)[0] == 0
        far = torch.nn.functional.max_pool2d(inside[None].float(), k, 1, k // 2)[0] == 0
        assert float(m[0, 0][core].max()) == 0 and float(m[0, 0][far].min()) == 1


def _batch(n=8, r=32, mask_value=None):
    g = torch.Generator().manual_seed(1)
    syn = dict(img=torch.rand(n, 3, r, r, generator=g) * 0.2 - 0.1, w=torch.randn(n, 14, 512, generator=g),
               pose=torch.rand(n, 2, generator=g), c=torch.rand(n, 25, generator=g))
    if mask_value is not None:
        syn['mask'] = torch.full((n, 1, r, r), float(mask_value))
    return syn


def test_style_images_composites_onto_the_background():
    syn = _batch(4, 32)
    yy = torch.linspace(-0.9, 0.9, 128)
    background = torch.stack([yy[:, None].expand(128, 128)] * 3)[None].repeat(4, 1, 1, 1)  # a vertical ramp
    for m, near_background in ((1.0, True), (0.0, False)):
        out = real_style.style_images(syn['img'], torch.full((4, 1, 32, 32), m), background,
                                      torch.Generator().manual_seed(0))
        assert out.shape == (4, 3, 128, 128) and float(out.min()) >= -1 and float(out.max()) <= 1
        # The ramp survives crop jitter, blur, noise and JPEG; the synthetic image is a flat grey.
        ramp = torch.corrcoef(torch.stack([out.mean((0, 1, 3)), yy]))[0, 1]
        assert (ramp > 0.95) == near_background, (m, float(ramp))


def test_real_style_is_per_step_and_keeps_labels():
    syn = _batch(8, 32, mask_value=0.5)
    real = torch.rand(3, 3, 128, 128, generator=torch.Generator().manual_seed(2)) * 2 - 1
    style = real_style.RealStyle(0.5, seed=0, rank=0, resolution=32)
    a, b, c = style(syn, real, 7), style(syn, real, 7), style(syn, real, 8)
    assert torch.equal(a['img'], b['img']) and not torch.equal(a['img'], c['img'])
    changed = [bool((a['img'][i] != syn['img'][i]).any()) for i in range(8)]
    assert 0 < sum(changed) < 8
    assert torch.equal(a['clean'], syn['img'])
    for k in ('w', 'pose', 'c', 'mask'):
        assert torch.equal(a[k], syn[k])
    assert a['img'].shape == syn['img'].shape
    none = real_style.RealStyle(0.0, 0, 0, 32)(syn, real, 7)
    assert torch.equal(none['img'], syn['img'])
    every = real_style.RealStyle(1.0, 0, 0, 32)(syn, real, 7)
    assert all(bool((every['img'][i] != syn['img'][i]).any()) for i in range(8))
    other_rank = real_style.RealStyle(0.5, 0, 1, 32)(syn, real, 7)
    assert not torch.equal(other_rank['img'], a['img'])
    with pytest.raises(ValueError):
        real_style.RealStyle(1.5, 0, 0, 32)


@pytest.mark.eg3d
def test_dataset_zip_holds_the_renders_masks(tmp_path, tiny_G):
    from eg3d_regressor_plugin.training import data
    from eg3d_regressor_plugin.training.dataset_writer import make_dataset_zip
    dest = make_dataset_zip(tiny_G, tmp_path / 'pairs.zip', 3, resolution=32, batch=3, progress=False)
    ds = data.PairDataset(dest, G=tiny_G)
    assert ds.has_masks
    sampler = data.PairSampler(tiny_G, 32)
    fresh = sampler.sample_seeds([data.derive_seed(0, i) for i in range(3)], render_seed=data.derive_seed(0, 0),
                                 masks=True)
    items = ds.load_all()
    assert items['mask'].shape == (3, 1, 32, 32) and items['mask'].dtype == torch.uint8
    assert (items['mask'].float() / 255 - fresh['mask']).abs().max() < 1 / 255 + 1e-6
    assert ds[1]['mask'].shape == (1, 32, 32)
    ds.with_masks = False  # a reader that does not need them (plain training, real images) skips them
    assert 'mask' not in ds.load_all() and 'mask' not in ds[1] and ds.nbytes() < data.PairDataset(dest).nbytes()
    assert 0 < float(fresh['mask'].mean()) < 1  # a render shows both head and background
    # A zip from before masks (the members removed) still reads, without them.
    old = tmp_path / 'old.zip'
    with zipfile.ZipFile(dest) as z, zipfile.ZipFile(old, 'w') as out:
        for name in z.namelist():
            if not name.startswith('masks/'):
                out.writestr(name, z.read(name))
    old_ds = data.PairDataset(old, G=tiny_G)
    assert not old_ds.has_masks and 'mask' not in old_ds.load_all() and 'mask' not in old_ds[0]
    meta = json.loads(zipfile.ZipFile(dest).read(data.DATASET_META))
    assert 'masks/' in meta['layout']


@pytest.mark.eg3d
def test_train_real_style_bad_value_is_one_line(tmp_path, tiny_pkl):
    proc = run_cli('train', '--network', tiny_pkl, '--outdir', tmp_path, '--real', tmp_path, '--real-style', '1.5',
                   '--device', 'cpu')
    line = assert_one_line_error(proc)
    assert '--real-style' in line and '[0, 1]' in line
