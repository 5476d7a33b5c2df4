"""Pivotal tuning (tuning.py): tune_generator, the per-face file, PTI's baseline, edits after tuning.

The target is a render of a held-out w shifted out of the generator's range by a colour shift, so
that the latent alone cannot reach it; the pivot is that held-out w itself (the best a latent can
do, roughly). One tuning run is shared by the module's tests (renders cost seconds on a CPU)."""

import copy
import os

import pytest
import torch

from eg3d_regressor_plugin import render, tuning
from eg3d_regressor_plugin.errors import UserError
from eg3d_regressor_plugin.metrics import psnr_tensor

STEPS = 4
COLOUR_SHIFT = (0.4, -0.2, 0.1)


def _state(G):
    return {k: v.detach().clone() for k, v in G.state_dict().items()}


def _same_state(G, state):
    now = G.state_dict()
    return list(now) == list(state) and all(torch.equal(now[k], state[k]) for k in state)


@pytest.fixture(scope='module')
def face(tiny_G):
    from eg3d_regressor_plugin.cameras import pose_to_label
    gen = torch.Generator().manual_seed(4321)  # a held-out code: no fixture or training draws it
    z = torch.randn([1, tiny_G.z_dim], generator=gen)
    c = pose_to_label(0.3, 0.1)
    with torch.no_grad():
        w = tiny_G.mapping(z, c, truncation_psi=0.7)
    img = render.render(tiny_G, w, c)['image']
    target = (img + torch.tensor(COLOUR_SHIFT).reshape(1, 3, 1, 1)).clamp(-1, 1)
    return dict(w=w, c=c, target=target)


@pytest.fixture(scope='module')
def tuned(tiny_G, face):
    before = _state(tiny_G)
    history = []
    G_t = tuning.tune_generator(tiny_G, face['target'], face['c'], face['w'], STEPS, locality_every=2, seed=0,
                                callback=lambda step, record: history.append(record))
    return dict(G=G_t, history=history, before=before)


@pytest.mark.eg3d
def test_tuning_raises_psnr_and_leaves_G_untouched(tiny_G, face, tuned):
    h = tuned['history']
    assert [r['step'] for r in h] == list(range(STEPS + 1))
    assert all(set(r) >= {'step', 'loss', 'psnr', 'seconds'} for r in h)
    assert h[-1]['psnr'] > h[0]['psnr'] + 3, [r['psnr'] for r in h]
    # The history's last PSNR is what render gives for the returned generator.
    assert tuning.psnr_of(tuned['G'], face['w'], face['c'], face['target']) == pytest.approx(h[-1]['psnr'], abs=1e-3)
    assert _same_state(tiny_G, tuned['before'])
    assert not any(p.requires_grad for p in tiny_G.parameters())
    assert not any(p.requires_grad for p in tuned['G'].parameters())
    # Only synthesis parameters moved; the mapping network is frozen.
    base = dict(tiny_G.named_parameters())
    changed = {n for n, p in tuned['G'].named_parameters() if not torch.equal(p, base[n])}
    assert changed and not any(n.startswith('backbone.mapping.') for n in changed)
    assert any(n.startswith('superresolution.') for n in changed) and any(n.startswith('decoder.') for n in changed)
    assert any(n.startswith('backbone.synthesis.') for n in changed)


@pytest.mark.eg3d
def test_tuning_is_deterministic_and_interrupt_leaves_G(tiny_G, face):
    before = _state(tiny_G)
    runs = [tuning.tune_generator(tiny_G, face['target'], face['c'], face['w'], 1, locality_every=1, seed=3)
            for _ in range(2)]
    assert _same_state(runs[1], _state(runs[0]))

    def interrupt(step, record):
        if step == 1:
            raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        tuning.tune_generator(tiny_G, face['target'], face['c'], face['w'], 5, locality_every=0, callback=interrupt)
    assert _same_state(tiny_G, before)


@pytest.mark.eg3d
@pytest.mark.parametrize('steps', [-1, 1.5, True])
def test_bad_steps_refused(tiny_G, face, steps):
    with pytest.raises(UserError, match='steps'):
        tuning.tune_generator(tiny_G, face['target'], face['c'], face['w'], steps)


@pytest.mark.eg3d
def test_warmup_ramps_the_rate(tiny_G, face):
    """warmup: the first Adam step moves no weight by more than about lr / warmup (PTI's full-rate
    first step moves them by about lr); a bad value is refused."""
    base = dict(tiny_G.named_parameters())

    def largest_move(warmup):
        G_t = tuning.tune_generator(tiny_G, face['target'], face['c'], face['w'], 1, locality_every=0, warmup=warmup)
        return max(float((p - base[n]).abs().max()) for n, p in G_t.named_parameters())
    full, ramped = largest_move(0), largest_move(10)
    assert full > 0.5 * tuning.PTI_LR and ramped < 1.5 * tuning.PTI_LR / 10, (full, ramped)
    with pytest.raises(UserError, match='warmup'):
        tuning.tune_generator(tiny_G, face['target'], face['c'], face['w'], 1, warmup=-1)


@pytest.mark.eg3d
def test_coarse_steps_render_at_half_resolution(tiny_G, face, monkeypatch):
    """coarse: the first share of the steps (the loss, the raw loss and the locality renders) at half
    the neural rendering resolution, then full; the records say which; the last evaluation and the
    returned generator are at the full resolution; the tuning still raises the PSNR."""
    nr = tiny_G.neural_rendering_resolution
    sizes, history = [], []
    real = tuning._render.render

    def spy(G, w, c, *a, **k):
        out = real(G, w, c, *a, **k)
        sizes.append(out['image_raw'].shape[-1])
        assert out['image'].shape[-1] == tiny_G.img_resolution
        return out
    monkeypatch.setattr(tuning._render, 'render', spy)
    G_t = tuning.tune_generator(tiny_G, face['target'], face['c'], face['w'], STEPS, locality_every=1, raw_weight=0.5,
                                coarse=0.5, callback=lambda step, record: history.append(record))
    monkeypatch.setattr(tuning._render, 'render', real)
    assert [r['coarse'] for r in history] == [True, True, False, False, False]
    # Per step: the face, then (every step but the last) the locality codes through G and the tuned copy.
    assert sizes == [nr // 2] * 6 + [nr] * 6 + [nr], sizes
    assert tiny_G.neural_rendering_resolution == nr and G_t.neural_rendering_resolution == nr
    assert history[-1]['psnr'] > history[0]['psnr'] + 3, [r['psnr'] for r in history]
    assert tuning.psnr_of(G_t, face['w'], face['c'], face['target']) == pytest.approx(history[-1]['psnr'], abs=1e-3)
    full = tuning.tune_generator(tiny_G, face['target'], face['c'], face['w'], 2, locality_every=0)
    half = tuning.tune_generator(tiny_G, face['target'], face['c'], face['w'], 2, locality_every=0, coarse=0.5)
    assert not _same_state(half, _state(full))  # its first step was taken on the coarse render
    for bad in (-0.1, 1.0):
        with pytest.raises(UserError, match='coarse'):
            tuning.tune_generator(tiny_G, face['target'], face['c'], face['w'], 1, coarse=bad)


@pytest.mark.eg3d
def test_reconstruct_ramps_up_only_from_a_refined_pivot(tiny_G, tiny_regressor, face, monkeypatch):
    """gen's path (invert.reconstruct): tuning from a refined pivot ramps its rate up, from the bare
    pivot it starts at the full rate; half the steps are coarse unless tune_coarse says otherwise."""
    from eg3d_regressor_plugin import invert
    from eg3d_regressor_plugin.images import to_uint8
    seen = []
    real = tuning.tune_generator
    monkeypatch.setattr(tuning, 'tune_generator', lambda *a, **k: seen.append((k['warmup'], k['coarse'])) or real(*a, **k))
    inverter = invert.Inverter(tiny_G, tiny_regressor, device='cpu', cuda_graph=False)
    img = to_uint8(face['target'])[0]
    for refine in (0, 1):
        invert.reconstruct(tiny_G, inverter, img, refine_steps=refine, tune_steps=1)
    invert.reconstruct(tiny_G, inverter, img, tune_steps=1, tune_coarse=0)
    assert seen == [(0, tuning.COARSE_FRACTION), (tuning.REFINED_PIVOT_WARMUP, tuning.COARSE_FRACTION), (0, 0)]


@pytest.mark.eg3d
def test_bad_pivot_refused(tiny_G, face):
    with pytest.raises(UserError, match='w_pivot'):
        tuning.tune_generator(tiny_G, face['target'], face['c'], face['w'][:, :3], 1)


@pytest.mark.eg3d
def test_edits_after_tuning(tiny_G, face, tuned):
    G_t, w, c = tuned['G'], face['w'], face['c']
    base_psnr = tuning.psnr_of(tiny_G, w, c, face['target'])
    tuned_psnr = tuning.psnr_of(G_t, w, c, face['target'])
    assert tuned_psnr > base_psnr + 3, (base_psnr, tuned_psnr)
    n = torch.randn([1, 1, w.shape[-1]], generator=torch.Generator().manual_seed(7))
    n = (n / n.norm()).repeat(1, w.shape[1], 1)
    w_edit = w + 8.0 * n
    change_base = (render.render(tiny_G, w_edit, c)['image'] - render.render(tiny_G, w, c)['image']).abs().mean()
    change_tuned = (render.render(G_t, w_edit, c)['image'] - render.render(G_t, w, c)['image']).abs().mean()
    assert change_base > 0.01
    assert change_tuned > 0.5 * change_base, (float(change_tuned), float(change_base))


@pytest.mark.eg3d
@pytest.mark.parametrize('kwargs, max_diff', [(dict(delta_format='fp16'), 1e-3),
                                               (dict(delta_format='lowrank', rank=16), 0.05)])
def test_round_trip(tiny_G, face, tuned, tmp_path, kwargs, max_diff):
    path = tmp_path / 'face.pt'
    meta = dict(source='test', steps=STEPS, nested=[1, 2.5, None])
    tuning.save_tuned(path, tiny_G, tuned['G'], face['w'], face['c'], meta, **kwargs)
    data = torch.load(path, weights_only=True)
    assert data['format'] == tuning.FORMAT and data['version'] == tuning.VERSION
    assert all(not n.startswith('backbone.mapping.') for n in data['deltas'])
    G2, w2, c2, meta2 = tuning.load_tuned(path, tiny_G)
    assert torch.equal(w2, face['w']) and torch.equal(c2, face['c']) and meta2 == meta
    exact = render.render(tuned['G'], face['w'], face['c'])['image'].clamp(-1, 1)
    again = render.render(G2, w2, c2)['image'].clamp(-1, 1)
    diff = float((exact - again).abs().max())
    assert diff < max_diff, diff
    loss_db = float(psnr_tensor(exact, face['target']) - psnr_tensor(again, face['target']))
    assert abs(loss_db) < 0.1, loss_db
    assert _same_state(tiny_G, tuned['before'])


@pytest.mark.eg3d
def test_file_is_small(tiny_G, face, tuned, tiny_pkl, tmp_path):
    path = tuning.save_tuned(tmp_path / 'face.pt', tiny_G, tuned['G'], face['w'], face['c'])
    assert os.path.getsize(path) <= os.path.getsize(tiny_pkl) / 10, (os.path.getsize(path), os.path.getsize(tiny_pkl))


@pytest.mark.eg3d
def test_other_generator_refused(tiny_G, face, tuned, tmp_path):
    from eg3d_regressor_plugin import presets
    path = tuning.save_tuned(tmp_path / 'face.pt', tiny_G, tuned['G'], face['w'], face['c'])
    other, _ = presets.build_networks('tiny', seed=1, w_avg_samples=500)
    with pytest.raises(UserError, match='another generator'):
        tuning.load_tuned(path, other)
    # The same w_avg but other weights where the file changes them.
    same_avg = copy.deepcopy(tiny_G)
    with torch.no_grad():
        same_avg.superresolution.block0.conv0.weight.add_(0.01)
    with pytest.raises(UserError, match='weights it changes differ'):
        tuning.load_tuned(path, same_avg)


@pytest.mark.eg3d
def test_bad_files_refused(tiny_G, face, tuned, tiny_pkl, tmp_path):
    good = tuning.save_tuned(tmp_path / 'face.pt', tiny_G, tuned['G'], face['w'], face['c'])
    raw = good.read_bytes()
    truncated = tmp_path / 'truncated.pt'
    truncated.write_bytes(raw[:len(raw) // 2])
    garbage = tmp_path / 'garbage.pt'
    garbage.write_bytes(b'not a torch file at all' * 10)
    other_torch = tmp_path / 'other.pt'
    torch.save(dict(model=torch.zeros(3), format='something-else'), other_torch)
    for path, match in [(truncated, 'not a readable tuned-face file'), (garbage, 'not a readable tuned-face file'),
                        (other_torch, 'not a tuned-face file'), (tiny_pkl, 'tuned-face file'),
                        (tmp_path / 'missing.pt', 'not found')]:
        with pytest.raises(UserError, match=match):
            tuning.load_tuned(path, tiny_G)
    # A well-formed container with a damaged delta.
    data = torch.load(good, weights_only=True)
    name = next(iter(data['deltas']))
    data['deltas'][name] = dict(kind='fp16', delta=torch.zeros(3, dtype=torch.float16))
    damaged = tmp_path / 'damaged.pt'
    torch.save(data, damaged)
    with pytest.raises(UserError, match='corrupt'):
        tuning.load_tuned(damaged, tiny_G)


@pytest.mark.eg3d
def test_interrupted_save_leaves_no_file(tiny_G, face, tuned, tmp_path, monkeypatch):
    path = tmp_path / 'face.pt'

    def half_then_fail(obj, f, *args, **kwargs):
        with open(f, 'wb') as fh:
            fh.write(b'PK\x03\x04 half')
        raise KeyboardInterrupt
    monkeypatch.setattr(tuning.torch, 'save', half_then_fail)
    with pytest.raises(KeyboardInterrupt):
        tuning.save_tuned(path, tiny_G, tuned['G'], face['w'], face['c'])
    assert list(tmp_path.iterdir()) == []
    # An existing file is not replaced by a failed save.
    path.write_bytes(b'old')
    with pytest.raises(KeyboardInterrupt):
        tuning.save_tuned(path, tiny_G, tuned['G'], face['w'], face['c'])
    assert path.read_bytes() == b'old' and list(tmp_path.iterdir()) == [path]


@pytest.mark.eg3d
def test_bad_meta_and_format_refused(tiny_G, face, tuned, tmp_path):
    with pytest.raises(UserError, match='meta'):
        tuning.save_tuned(tmp_path / 'a.pt', tiny_G, tuned['G'], face['w'], face['c'], meta=dict(x=object()))
    with pytest.raises(UserError, match='delta_format'):
        tuning.save_tuned(tmp_path / 'a.pt', tiny_G, tuned['G'], face['w'], face['c'], delta_format='zip')
    assert not (tmp_path / 'a.pt').exists()


@pytest.mark.eg3d
def test_pti_baseline_stages(tiny_G, face):
    records = []
    G_t, w = tuning.pti_baseline(tiny_G, face['target'], face['c'], w_steps=2, tune_steps=1, locality_every=0,
                                 callback=lambda step, record: records.append(record))
    assert [r['stage'] for r in records] == ['w'] * 3 + ['tune'] * 2
    assert [r['step'] for r in records] == list(range(5))
    assert all(b['seconds'] >= a['seconds'] for a, b in zip(records, records[1:]))
    assert w.shape == face['w'].shape
    assert records[-1]['psnr'] > records[2]['psnr']


#----------------------------------------------------------------------------
# The commands: gen --tune-steps writes the per-face file, edit --tuned renders edits with it.

def _cli(command, *args):
    from click.testing import CliRunner
    return CliRunner().invoke(command, [str(a) for a in args] + ['--device', 'cpu'])


@pytest.fixture(scope='module')
def tuned_face(tmp_path_factory, tiny_G, tiny_pkl, tiny_regressor, face):
    from eg3d_regressor_plugin.files import save_image
    from eg3d_regressor_plugin.gen_from_image import gen
    folder = tmp_path_factory.mktemp('tune')
    save_image(folder / 'face.png', face['target'])
    r = _cli(gen, '--network', tiny_pkl, '--regressor', tiny_regressor, '--image', folder / 'face.png', '--no-align',
             '--views', 0, '--tune-steps', 3, '--outdir', folder / 'out')
    assert r.exit_code == 0, r.output + repr(r.exception)
    return folder / 'out' / 'face'


@pytest.mark.eg3d
def test_gen_tunes_and_writes_a_small_face_file(tuned_face, tiny_G, tiny_pkl):
    import json
    import PIL.Image
    steps = json.loads((tuned_face / 'tune.json').read_text())
    assert steps['steps'] == 3 and steps['history'][-1]['psnr'] > steps['history'][0]['psnr']
    assert os.path.getsize(tuned_face / 'tuned.pt') <= os.path.getsize(tiny_pkl) / 10
    with PIL.Image.open(tuned_face / 'comparison.png') as im:
        assert im.size == (3 * tiny_G.img_resolution, tiny_G.img_resolution)  # input | before tuning | tuned
    # The saved face, loaded back onto the base pickle, renders reconstruction.png (to the rounding of its deltas).
    import numpy as np
    G_t, w, c, meta = tuning.load_tuned(tuned_face / 'tuned.pt', tiny_G)
    assert meta['tune_steps'] == 3
    again = render.render_image(G_t, w, c)[0].astype(int)
    with PIL.Image.open(tuned_face / 'reconstruction.png') as im:
        assert np.abs(np.asarray(im).astype(int) - again).mean() < 1.0


@pytest.mark.eg3d
def test_edit_renders_a_tuned_face_and_refuses_another_generator(tuned_face, tiny_pkl, tmp_path):
    import numpy as np
    import PIL.Image
    from conftest import assert_one_line_error, run_cli
    from eg3d_regressor_plugin import presets
    from eg3d_regressor_plugin.edit import edit
    direction = np.random.default_rng(0).standard_normal((1, 512)).astype(np.float32)
    np.save(tmp_path / 'dir.npy', direction / np.linalg.norm(direction))
    r = _cli(edit, '--network', tiny_pkl, '--tuned', tuned_face / 'tuned.pt', '--boundary', tmp_path / 'dir.npy',
             '--alphas', '-3,3', '--outdir', tmp_path / 'e')
    assert r.exit_code == 0, r.output + repr(r.exception)
    with PIL.Image.open(tmp_path / 'e' / 'grid.png') as im:
        grid = np.asarray(im).astype(int)
    half = grid.shape[1] // 2
    assert np.abs(grid[:, :half] - grid[:, half:]).mean() > 1  # the edit still changes the tuned render
    other = tmp_path / 'other.pkl'
    presets.save_network_pkl(other, *presets.build_networks('tiny', seed=1, w_avg_samples=500))
    line = assert_one_line_error(run_cli('edit', '--network', other, '--tuned', tuned_face / 'tuned.pt',
                                         '--boundary', tmp_path / 'dir.npy', '--outdir', tmp_path / 'e2',
                                         '--device', 'cpu'))
    assert 'another generator' in line and not (tmp_path / 'e2').exists()
    line = assert_one_line_error(run_cli('gen', '--network', tiny_pkl, '--regressor', tmp_path / 'x.pt', '--image',
                                         tmp_path / 'dir.npy', '--tune-steps', -1, '--outdir', tmp_path / 'g'))
    assert '--tune-steps' in line
    line = assert_one_line_error(run_cli('gen', '--network', tiny_pkl, '--regressor', tmp_path / 'x.pt', '--image',
                                         tmp_path / 'dir.npy', '--tune-steps', 5, '--tune-coarse', 1,
                                         '--outdir', tmp_path / 'g'))
    assert '--tune-coarse' in line and not (tmp_path / 'g').exists()


@pytest.mark.eg3d
def test_gen_renders_a_tuned_face_again(tuned_face, tiny_pkl, tmp_path):
    import numpy as np
    import PIL.Image
    from conftest import assert_one_line_error, run_cli
    from eg3d_regressor_plugin.gen_from_image import gen
    r = _cli(gen, '--network', tiny_pkl, '--tuned', tuned_face / 'tuned.pt', '--views', 2, '--outdir', tmp_path / 'g')
    assert r.exit_code == 0, r.output + repr(r.exception)
    out = tmp_path / 'g' / 'face'  # named after the folder gen wrote tuned.pt into
    assert {'reconstruction.png', 'views.png', 'depth.npy', 'w.npy', 'c.npy', 'pose.json'} <= {p.name for p in out.iterdir()}
    assert not (out / 'input.png').exists() and not (out / 'tuned.pt').exists()
    with PIL.Image.open(out / 'reconstruction.png') as a, PIL.Image.open(tuned_face / 'reconstruction.png') as b:
        assert np.abs(np.asarray(a).astype(int) - np.asarray(b).astype(int)).mean() < 1.0  # the same tuned face
    np.testing.assert_array_equal(np.load(out / 'c.npy'), np.load(tuned_face / 'c.npy'))
    for args, match in [(['--tuned', tuned_face / 'tuned.pt', '--tune-steps', 2], '--tune-steps applies to --image'),
                        (['--tuned', tuned_face / 'tuned.pt', '--image', tuned_face / 'input.png'], 'give --image'),
                        ([], 'give --image'), (['--image', tuned_face / 'input.png'], '--image needs --regressor'),
                        (['--tuned', tmp_path / 'missing.pt'], 'tuned-face file (--tuned) not found')]:
        line = assert_one_line_error(run_cli('gen', '--network', tiny_pkl, *args, '--outdir', tmp_path / 'bad'))
        assert match in line, (args, line)
    assert not (tmp_path / 'bad').exists()


@pytest.mark.eg3d
def test_interp_from_a_tuned_face(tuned_face, tiny_G, tiny_pkl, tmp_path):
    import numpy as np
    import PIL.Image
    from eg3d_regressor_plugin.gen_interp import interp
    other = np.random.default_rng(1).standard_normal((1, 14, 512)).astype(np.float32) * 0.1
    np.save(tmp_path / 'other.npy', other + np.load(tuned_face / 'w.npy'))
    r = _cli(interp, '--network', tiny_pkl, '--tuned', tuned_face / 'tuned.pt', '--to', tmp_path / 'other.npy',
             '--steps', 3, '--outdir', tmp_path / 'i')
    assert r.exit_code == 0, r.output + repr(r.exception)
    np.testing.assert_array_equal(np.load(tmp_path / 'i' / 'w_000.npy'), np.load(tuned_face / 'w.npy'))
    res = tiny_G.img_resolution
    with PIL.Image.open(tmp_path / 'i' / 'strip.png') as im:
        first = np.asarray(im).astype(int)[:res, :res]
    with PIL.Image.open(tuned_face / 'reconstruction.png') as im:  # the tuned generator renders the path
        assert np.abs(first - np.asarray(im).astype(int)).mean() < 1.0
    untuned = render.render_image(tiny_G, torch.from_numpy(np.load(tuned_face / 'w.npy')),
                                  torch.from_numpy(np.load(tuned_face / 'c.npy')))[0].astype(int)
    assert np.abs(first - untuned).mean() > 1.0
