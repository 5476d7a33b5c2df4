"""Benchmark: the synthetic-to-real gap, and what `label` + `train --real` close of it.

"Real-like" images are renders of seeds no training saw (tiny preset), passed through a fixed
domain shift: background replaced by a natural-image texture (scikit-image's bundled photos)
where the render's depth says there is background (render.background_mask), a small crop shift
and scale change, blur, sensor noise and JPEG compression. Side by side, on the same held-out
shifted images:

    synthetic           the regressor trained on synthetic pairs only (common.trained_regressor)
    synthetic, longer   the same, trained on for the fine-tuning's extra steps on synthetic pairs
                        only (so the fine-tuning's gain is not just more steps)
    fine-tuned          the same, trained on for those steps with `train --real` (training_loop,
                        the code of `train`) on a disjoint set of shifted images, given as images
                        only and labelled by `label` (labelling.py) with the synthetic regressor:
                        2 real images in each batch of 16 (pixel, identity and delta-regulariser
                        losses through the generator, the pose loss on label's cameras; the
                        pseudo-label w at --real-w-loss, 0 by default), and half of the synthetic
                        pairs styled like them (--real-style: composited onto the step's real
                        images where the render shows background, then crop jitter, blur, noise
                        and JPEG of random strengths; real_style.py)

each measured by its latent L1 to the true w, the reconstruction (the predicted w at the
predicted pose, against the shifted input as one would measure a photo) PSNR / SSIM, identity
similarity (dlib's network, face_identity's port), and all again after 20 refinement steps
(invert.reconstruct, gen's L-BFGS; the images in --jobs processes; not for the "longer" control,
whose question is the regressor's own prediction); plus the synthetic validation
error (latent L1 on clean held-out renders), which fine-tuning must not worsen by more than 10 %.

Targets: fine-tuned latent L1 <= 0.8x and PSNR >= +1 dB vs synthetic-only; synthetic latent
L1 <= 1.1x.

    python benchmarks/real_gap.py            # ~7 minutes on 2 CPU cores, 11-12 from a fresh clone
    python benchmarks/real_gap.py --style 0  # the fine-tuning without real-style pairs
    python benchmarks/real_gap.py --quick    # ~3 minutes: a smoke run, the figures mean little
"""

import shutil
import time

import click
import numpy as np
import PIL.Image
import torch

import common
from eg3d_regressor_plugin import render as rendering
from eg3d_regressor_plugin.training.real_style import photo_defects

TEXTURES = ('grass', 'gravel', 'brick', 'rocket', 'coffee', 'chelsea')


def _texture(k, size):
    import skimage.data
    img = getattr(skimage.data, TEXTURES[k % len(TEXTURES)])()
    img = np.stack([img] * 3, -1) if img.ndim == 2 else img[..., :3]
    return np.asarray(PIL.Image.fromarray(img).resize((size, size), PIL.Image.BILINEAR))


def domain_shift(img, depth, k):
    """The fixed shift of sample k: uint8 [R,R,3] render and its depth [h,w] -> uint8 [R,R,3]. The
    background is where render.background_mask says (the rule the dataset zips' masks follow)."""
    rng = np.random.default_rng(1000 + k)
    r = img.shape[0]
    mask = rendering.background_mask(torch.as_tensor(depth, dtype=torch.float32)[None, None], r)[0, 0].numpy()
    out = img * (1 - mask[..., None]) + _texture(k, r) * mask[..., None]
    # a small crop shift and scale change, blur, sensor noise, JPEG: fixed strengths
    s = 1 + rng.uniform(0.05, 0.1)
    shift = rng.integers(-3, 4, size=2)
    return photo_defects(np.clip(out, 0, 255).astype(np.uint8), s, shift, 0.8, 4.0, 45, rng)


def shifted_set(G, seeds):
    """[(dict(seed, img (shifted), clean, w, c))] for held-out sample seeds."""
    out = []
    for k, s in enumerate(common.held_out(G, seeds)):
        depth = rendering.render(G, s['w'], s['c'])['image_depth'][0, 0].cpu().numpy()
        out.append(dict(s, clean=s['img'], img=domain_shift(s['img'], depth, s['seed'])))
    return out


_IDENTITY = {}


def measure_one(G, inverter, s, device, refine_steps):
    """The figures of one regressor (the inverter's) on one shifted sample, before and after refinement."""
    from eg3d_regressor_plugin import metrics as M
    from eg3d_regressor_plugin.evaluate import identity_scorer
    from eg3d_regressor_plugin.invert import reconstruct
    from eg3d_regressor_plugin.render import render_image
    if 'dlib' not in _IDENTITY:  # once per process
        _IDENTITY['dlib'] = identity_scorer('dlib', device)
    identity = _IDENTITY['dlib']
    rec = reconstruct(G, inverter, s['img'], refine_steps=refine_steps)
    row = {}
    for tag, w in (('', rec['w_regressor']), ('_refined', rec['w']))[:2 if refine_steps else 1]:
        im = render_image(G, w, rec['c_pred'])[0]
        row['w_l1' + tag] = float((w - s['w']).abs().mean())
        row['psnr' + tag] = M.psnr(s['img'], im)
        row['ssim' + tag] = M.ssim(s['img'], im)
        row['id_sim' + tag] = identity(s['img'], [im])[0]
    return row


def measure(G, pkl, regressor, samples, clean, refine_steps, jobs, device, eg3d):
    """Mean figures of one regressor on the shifted samples (in `jobs` processes), and its latent
    L1 on clean ones."""
    from eg3d_regressor_plugin.invert import Inverter
    rows = common.measure_all(measure_one, G, samples, jobs, pkl, regressor, device, eg3d, refine_steps=refine_steps)
    out = {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}
    inv = Inverter(G, regressor, device=device, cuda_graph=False)
    with torch.no_grad():
        out['synthetic_w_l1'] = float(np.mean([float((inv(c['img'])['w'] - c['w']).abs().mean()) for c in clean]))
    return out


def fine_tune(G, pkl, snap, run_dir, kimg, real, data_zip, device, eg3d, lr, style, real_w_loss, real_ratio):
    """Continue the synthetic run's snapshot for `kimg` more, with --real (or without: real=None)."""
    from eg3d_regressor_plugin.training.training_loop import training_loop
    ckpt = torch.load(snap, weights_only=True)
    start = ckpt['state']['cur_nimg'] / 1000
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    training_loop(run_dir, str(pkl), kimg=start + kimg, tick_kimg=max(kimg / 2, 0.004), snap=1000, batch=16,
                  lr=lr, lr_rampdown=0.0, val_seeds=tuple(range(4)), grid=2, w_stats_samples=2000,
                  data_zip=data_zip, workers=0, resume=str(snap), real=real, real_ratio=real_ratio, real_style=style,
                  real_w_loss=real_w_loss, real_holdout=2, device=device, eg3d=eg3d)
    return sorted(run_dir.glob('regressor-snapshot-*.pt'))[-1]


@click.command()
@click.option('--preset', default='tiny', show_default=True)
@click.option('--test', 'n_test', type=int, default=None, help='Held-out shifted images  [default: 12; quick: 3]')
@click.option('--real', 'n_real', type=int, default=None, help='Shifted images to fine-tune on  [default: 48; quick: 6]')
@click.option('--ft-kimg', type=float, default=None, help='Fine-tuning length  [default: 1.6; quick: 0.032]')
@click.option('--label-steps', type=int, default=None, help='label --refine-steps (its w go unused at the default --real-w-loss 0)  [default: 0]')
@click.option('--refine-steps', type=int, default=20, show_default=True, help='Refinement steps of the "refined" figures')
@click.option('--ft-lr', type=float, default=5e-4, show_default=True, help='Learning rate of the fine-tuning (and of the longer synthetic run)')
@click.option('--style', type=float, default=0.5, show_default=True, help='train --real-style of the fine-tuning (0: none)')
@click.option('--real-ratio', type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.125, show_default=True,
              help='train --real-ratio of the fine-tuning (real images per batch: their losses render through the generator)')
@click.option('--real-w-loss', type=float, default=0.0, show_default=True,
              help='train --real-w-loss of the fine-tuning (the weight of the pseudo-label w)')
@click.option('--jobs', type=click.IntRange(min=1), default=None,
              help='Images measured in parallel processes  [default: on a CPU one per core; on a GPU 1]')
@click.option('--device', default='auto', show_default=True)
@click.option('--quick', is_flag=True, help='A smoke run (~3 minutes)')
@click.option('--eg3d', default=None)
def main(preset, n_test, n_real, ft_kimg, label_steps, refine_steps, ft_lr, style, real_ratio, real_w_loss, jobs, device, quick, eg3d):
    from eg3d_regressor_plugin import devices
    import os
    from eg3d_regressor_plugin.labelling import label_photos
    t_start = time.time()
    n_test, n_real = n_test or (3 if quick else 12), n_real or (6 if quick else 48)
    ft_kimg = ft_kimg or (0.032 if quick else 1.6)
    label_steps = label_steps if label_steps is not None else 0
    device = devices.get_device(device)
    if jobs is None:
        jobs = (os.cpu_count() or 1) if torch.device(device).type == 'cpu' else 1
    G, pkl = common.generator(None, preset, device=device, eg3d=eg3d)
    pairs = 0 if quick else common.CPU_PAIRS // 2
    kimg = 0.032 if quick else 60
    synth = common.trained_regressor(G, pkl, None, kimg=kimg, pairs=pairs, device=device, eg3d=eg3d)
    data_zip = common.training_set(G, pairs)[0] if pairs else None
    print(f'Synthetic regressor: {synth} ({time.time() - t_start:.0f} s)', flush=True)

    work = common.CACHE / f'real_gap{"-quick" if quick else ""}'
    shutil.rmtree(work, ignore_errors=True)
    (work / 'photos').mkdir(parents=True)
    test = shifted_set(G, range(5000, 5000 + n_test))
    clean = common.held_out(G, range(6000, 6000 + n_test))
    for s in shifted_set(G, range(7000, 7000 + n_real)):  # images only: the w are not kept
        PIL.Image.fromarray(s['img']).save(work / 'photos' / f'shifted-{s["seed"]}.png')
    PIL.Image.fromarray(np.concatenate([np.concatenate([s['clean'], s['img']], 0) for s in test[:6]], 1)).save(
        work / 'examples.png')
    t0 = time.time()
    labelled = label_photos(G, synth, work / 'photos', work / 'labelled.zip', align=False, refine_steps=label_steps,
                            batch=8, workers=1, device=device, progress=False)
    print(f'label: {labelled["labelled"]} images, mean PSNR {labelled["psnr_mean"]:.2f} dB ({time.time() - t0:.0f} s)', flush=True)
    t0 = time.time()
    ft = dict(data_zip=data_zip, device=device, eg3d=eg3d, lr=ft_lr, style=style, real_w_loss=real_w_loss,
              real_ratio=real_ratio)
    longer = fine_tune(G, pkl, synth, work / 'synthetic-longer', ft_kimg, None, **ft)
    tuned = fine_tune(G, pkl, synth, work / 'fine-tuned', ft_kimg, str(work / 'labelled.zip'), **ft)
    print(f'Fine-tuning: {time.time() - t0:.0f} s', flush=True)

    t0 = time.time()
    rows = []
    # The control row is there for the regressor's own prediction, so it skips the refinement (a third of the time).
    for name, reg, steps in (('synthetic', synth, refine_steps), ('synthetic, longer', longer, 0),
                             ('fine-tuned (--real)', tuned, refine_steps)):
        rows.append(dict(model=name, **measure(G, pkl, reg, test, clean, steps, jobs, device, eg3d)))
    print(f'Measuring: {time.time() - t0:.0f} s ({jobs} processes)', flush=True)
    base, ft = rows[0], rows[-1]
    verdict = dict(w_l1_ratio=ft['w_l1'] / base['w_l1'], psnr_gain_db=ft['psnr'] - base['psnr'],
                   synthetic_w_l1_ratio=ft['synthetic_w_l1'] / base['synthetic_w_l1'])
    verdict['meets_target'] = bool(verdict['w_l1_ratio'] <= 0.8 and verdict['psnr_gain_db'] >= 1.0
                                   and verdict['synthetic_w_l1_ratio'] <= 1.1)
    cols = [('model', 'model'), ('w_l1', 'latent L1'), ('psnr', 'PSNR'), ('ssim', 'SSIM'), ('id_sim', 'id sim'),
            ('w_l1_refined', f'L1 +{refine_steps}'), ('psnr_refined', f'PSNR +{refine_steps}'),
            ('ssim_refined', f'SSIM +{refine_steps}'), ('id_sim_refined', f'id +{refine_steps}'),
            ('synthetic_w_l1', 'synthetic L1')]
    print()
    print(common.table(rows, cols))
    print(f'\nTarget: fine-tuned vs synthetic: latent L1 x{verdict["w_l1_ratio"]:.3f} (target <= 0.8), PSNR '
          f'{verdict["psnr_gain_db"]:+.2f} dB (target >= +1), synthetic L1 x{verdict["synthetic_w_l1_ratio"]:.3f} '
          f'(target <= 1.1): {"met" if verdict["meets_target"] else "NOT met"}')
    print(f'LPIPS: not measured (no local LPIPS weights); total {time.time() - t_start:.0f} s')
    result = dict(machine=common.machine(device), settings=dict(preset=preset, test=n_test, real=n_real, ft_kimg=ft_kimg, ft_lr=ft_lr,
                  style=style, real_w_loss=real_w_loss, real_ratio=real_ratio, jobs=jobs,
                  label_steps=label_steps, refine_steps=refine_steps, synthetic_kimg=kimg, synthetic_pairs=pairs),
                  rows=rows, verdict=verdict, label_psnr=labelled['psnr_mean'], seconds=time.time() - t_start)
    print(f'Wrote {common.save("real_gap", result, quick)}')


if __name__ == '__main__':
    main()  # pylint: disable=no-value-for-parameter
