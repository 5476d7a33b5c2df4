"""Where a training step's batch comes from: pairs rendered on the fly (reused from a pool), or a
dataset zip. Each source gives the batch of a step from the step alone (what is random derives
from (seed, rank, step)), so a resumed run sees the batches the uninterrupted run would have.

Apart from data.py, which holds the pairs themselves (how one is drawn and rendered, the zip
format): these are the training loop's feeding policy, on top of the network's input size."""

import math

import torch

from .. import cameras
from . import data, networks

INPUT_STATS_KEY = 0x57a7  # sample-seed key of the rendered input-statistics images (training's keys differ)


class RenderSource:
    """On-the-fly pairs with reuse. Rendering costs far more than a training step, so each
    rendered pair can be used `reuse` times: every step renders batch/reuse fresh pairs into a pool
    of about 2 x batch recent pairs and trains on a random batch of the pool. Stateless in the
    step: a resumed run rebuilds the pool by rendering its pairs again."""

    def __init__(self, sampler, batch_gpu, reuse, seed, rank, masks=False):
        self.sampler, self.batch_gpu, self.seed, self.rank = sampler, batch_gpu, seed, rank
        self.masks = masks  # render the background masks too (for real-style pairs)
        self.fresh = max(1, math.ceil(batch_gpu / max(1, int(reuse))))  # pairs rendered per step
        self.reuse = batch_gpu / self.fresh  # how often a pair is used, on average
        self.groups = 1 if self.fresh >= batch_gpu else 2 * math.ceil(self.reuse)  # pool size in steps
        self.pool = {}  # group index (the step that rendered it) -> batch dict
        self.rendered = 0

    STAT_IMAGES = 64  # rendered once at the start for the input statistics

    def stat_images(self):
        """Images for the network's input statistics: the same on every rank."""
        return self.sampler.sample(self.STAT_IMAGES, self.seed, INPUT_STATS_KEY)['img']

    def _group(self, g):
        # Groups before step 0 fill the initial pool; the flag keeps their seeds apart.
        return self.sampler.sample(self.fresh, self.seed, self.rank, int(g < 0), abs(g), masks=self.masks)

    def batch(self, step):
        wanted = range(step - self.groups + 1, step + 1)
        for g in list(self.pool):
            if g not in wanted:
                del self.pool[g]
        for g in wanted:
            if g not in self.pool:
                self.pool[g] = self._group(g)
                self.rendered += self.fresh
        pool = {k: torch.cat([self.pool[g][k] for g in wanted]) for k in self.pool[step]}
        n = len(pool['w'])
        if n == self.batch_gpu:
            return pool
        gen = torch.Generator().manual_seed(data.derive_seed(self.seed, self.rank, step, 2))
        idx = torch.randperm(n, generator=gen)[:self.batch_gpu].to(pool['w'].device)
        return {k: v[idx] for k, v in pool.items()}


class DatasetSource:
    """Batches from a dataset zip, in a seeded order per epoch, split between the ranks. A dataset
    that fits in PRELOAD_BYTES is decoded once and kept on the device (decoding a batch of PNGs
    can cost as much as a training step of a small regressor on a CPU); a larger one streams
    through DataLoader workers. Both give the same batches. With masks, batches carry the pairs'
    background masks (when the zip has them)."""

    PRELOAD_BYTES = 1 << 30
    STAT_IMAGES = 1024  # the first ones of the dataset, for the input statistics

    def __init__(self, dataset, batch_gpu, seed, rank, world, device, resolution, start_step, workers=2, masks=False):
        self.dataset, self.device, self.resolution = dataset, device, resolution
        dataset.with_masks = masks and dataset.has_masks  # the background masks, for real-style pairs only
        self.args = (batch_gpu, rank, world, len(dataset), seed)
        self.items = self.loader = None
        if dataset.nbytes() <= self.PRELOAD_BYTES:
            self.items = dataset.load_all(device)
        else:
            steps = _Steps(self.args, start_step)
            self.loader = iter(torch.utils.data.DataLoader(dataset, batch_sampler=steps, num_workers=workers,
                                                           pin_memory=device.type == 'cuda',
                                                           persistent_workers=workers > 0))
        self.rendered = 0

    def batch(self, step):
        if self.items is not None:
            idx = torch.tensor(data.epoch_batch(step, *self.args), device=self.device)
            b = {k: v[idx] for k, v in self.items.items()}
            b['img'] = data.uint8_to_float(b['img'])
            if 'mask' in b:
                b['mask'] = b['mask'].float() / 255
        else:
            b = {k: v.to(self.device, non_blocking=True) for k, v in next(self.loader).items()}
        b['img'] = networks.resize_input(b['img'], self.resolution)
        return b

    def stat_images(self):
        """Images for the network's input statistics: the same on every rank."""
        n = min(len(self.dataset), self.STAT_IMAGES)
        if self.items is not None:
            img = data.uint8_to_float(self.items['img'][:n])
        else:
            img = torch.stack([self.dataset[i]['img'] for i in range(n)]).to(self.device)
        return networks.resize_input(img, self.resolution)


class _Steps:
    """The DataLoader's batch sampler: rank's indices of each step from start_step on."""

    def __init__(self, args, start_step):
        self.args = args  # data.epoch_batch's arguments after the step
        self.start_step = start_step

    def __iter__(self):
        step = self.start_step
        while True:
            yield data.epoch_batch(step, *self.args)
            step += 1


REAL_KEY = 0x4ea1  # seed key of the real images' epoch order (apart from a dataset zip's)


class RealSource:
    """Real images (real_data.load_real: in memory as uint8, or a streamed zip) in a seeded order
    per epoch, split between the ranks like DatasetSource: batch(step) -> dict(img at the network's
    input resolution, target (the image at its stored resolution, for the losses through the
    generator), w, has_w, c, has_c, pose). A streamed set is read by DataLoader workers in the
    same order, so it gives the same batches; like DatasetSource's stream, it must be asked for
    consecutive steps from start_step."""

    def __init__(self, real, n, seed, rank, world, device, resolution, start_step=0, workers=0):
        self.n, self.device, self.resolution = n, device, resolution
        self.args = (n, rank, world, len(real['names']), data.derive_seed(seed, REAL_KEY))
        self.stream = real.get('stream')
        if self.stream is not None:
            self.loader = iter(torch.utils.data.DataLoader(self.stream, batch_sampler=_Steps(self.args, start_step),
                                                           num_workers=workers, pin_memory=device.type == 'cuda',
                                                           persistent_workers=workers > 0))
            return
        self.real = {k: (v.to(device) if torch.is_tensor(v) else v) for k, v in real.items()}
        self.real['pose'] = self._pose(self.real['c'])

    def _pose(self, c):
        yaw, pitch, _ = cameras.label_to_pose(c.cpu())
        return torch.stack([yaw, pitch], dim=1).to(self.device)

    def batch(self, step):
        if self.stream is not None:
            b = {k: v.to(self.device, non_blocking=True) for k, v in next(self.loader).items()}
            b['pose'] = self._pose(b['c'])
            img = b.pop('img')
        else:
            idx = torch.tensor(data.epoch_batch(step, *self.args), device=self.device)
            b = {k: self.real[k][idx] for k in ('w', 'has_w', 'c', 'has_c', 'pose')}
            img = self.real['img'][idx]
        b['target'] = data.uint8_to_float(img)
        b['img'] = networks.resize_input(b['target'], self.resolution)
        return b

    def stat_images(self, n=64):
        if self.stream is not None:
            img = torch.stack([self.stream[i]['img'] for i in range(min(n, len(self.stream)))]).to(self.device)
        else:
            img = self.real['img'][:n]
        return networks.resize_input(data.uint8_to_float(img), self.resolution)


class MixedSource:
    """A synthetic source's pairs and a RealSource's images in one batch: dict(img (synthetic
    first, then real: one forward pass, as DDP wants), n_syn, syn (the synthetic batch, or None),
    real). The share of real images is fixed per batch. With a style, a share of the synthetic
    pairs is styled like the step's real images (real_style.RealStyle)."""

    def __init__(self, synthetic, real, style=None):
        self.synthetic, self.real, self.style = synthetic, real, style  # style: a real_style.RealStyle or None

    @property
    def rendered(self):
        return self.synthetic.rendered if self.synthetic is not None else 0

    @property
    def reuse(self):
        return getattr(self.synthetic, 'reuse', 1)

    def batch(self, step):
        real = self.real.batch(step)
        if self.synthetic is None:
            return dict(img=real['img'], n_syn=0, syn=None, real=real)
        syn = self.synthetic.batch(step)
        if self.style is not None:
            syn = self.style(syn, real['target'], step)
        return dict(img=torch.cat([syn['img'], real['img']]), n_syn=len(syn['img']), syn=syn, real=real)

    def stat_images(self):
        real = self.real.stat_images()
        if self.synthetic is None:
            return real
        return torch.cat([self.synthetic.stat_images(), real.to(self.real.device)])
