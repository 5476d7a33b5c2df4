"""Synthetic training pairs (image, w, pose) rendered by EG3D: on the fly, or read back from a
dataset zip written by `eg3d-regress dataset`.

One sample is defined by one integer seed, as in EG3D's gen_samples.py:

- z = np.random.RandomState(seed).randn(1, z_dim)  (so sample seed s shows the face gen_samples.py
  shows for --seeds s at --trunc 1),
- from torch.Generator().manual_seed(seed): the truncation psi (uniform in `trunc_range`), the
  rendering pose (yaw, pitch) from the FFHQ-like distribution of `cameras.sample_poses`, and the
  pose the mapping network is conditioned on (`cond_pose`):
    'random'  a second, independent FFHQ-like pose (the default; EG3D's training conditions on
              the rendering pose or, with generator pose conditioning regularisation, on
              another dataset pose, so both kinds of w occur),
    'same'    the rendering pose,
    'frontal' the frontal pose (what EG3D's gen_samples.py / gen_videos.py condition on),
- w = w_avg + psi * (G.mapping(z, c_cond) - w_avg)  (EG3D's truncation, per sample),
- image = G.synthesis(w, c)['image'], rendered without gradients with the torch RNG seeded
  (EG3D's rendering draws random numbers), clamped to [-1, 1] like an image read from disk and
  resized (antialiased) to the regressor's input resolution, all on G's device.

Training batches use sample seeds derived from (run seed, rank, step, index), so every rank
renders different data and a batch is reproduced from its step.

The dataset zip uses EG3D's dataset_tool layout, so EG3D's own ImageFolderDataset reads its
images and labels:

    00000/img00000000.png ...         images, uint8 RGB
    dataset.json                      {"labels": [["00000/img00000000.png", [25 floats]], ...]}
    ws/00000/img00000000.npy ...      the w of each image, float32 (1, num_ws, w_dim)
    masks/00000/img00000000.png ...   where each image shows background (render.background_mask),
                                      uint8 grey, 255 = background (older datasets have
                                      none; they train as before, without real-style pairs'
                                      backgrounds)
    regressor_dataset.json            format, count, resolution, the generator's identity and
                                      the sampling settings
"""

import functools
import io
import json
import zipfile

import numpy as np
import PIL.Image
import torch

from .. import cameras, fingerprint, render
from ..catalog import COND_POSES
from ..errors import UserError, check_file
from .networks import resize_input

DEFAULT_TRUNC = (0.5, 1.0)
DATASET_FORMAT = 'eg3d-regressor-dataset'
DATASET_META = 'regressor_dataset.json'

#----------------------------------------------------------------------------
# Seeds.

def derive_seed(*keys) -> int:
    """A 32-bit sample seed from a tuple of non-negative integers (run seed, rank, step, ...)."""
    return int(np.random.SeedSequence([int(k) for k in keys]).generate_state(1)[0])


def check_trunc_range(trunc_range):
    """(lo, hi) with 0 <= lo <= hi, as floats (the command parses the text of --trunc-range)."""
    try:
        if isinstance(trunc_range, str):
            raise TypeError
        lo, hi = (float(v) for v in trunc_range)
    except (TypeError, ValueError):
        raise UserError(f'trunc_range {trunc_range!r}: expected (lo, hi)') from None
    if not 0 <= lo <= hi:
        raise UserError(f'trunc_range {trunc_range!r}: expected 0 <= lo <= hi')
    return lo, hi


#----------------------------------------------------------------------------
# On-the-fly pairs.

class PairSampler:
    """Renders (image, w, pose, c) pairs from EG3D generator G on G's device."""

    def __init__(self, G, resolution=None, trunc_range=DEFAULT_TRUNC, cond_pose='random', chunk=None):
        if cond_pose not in COND_POSES:
            raise UserError(f'cond_pose {cond_pose!r}: choose from {", ".join(COND_POSES)}')
        self.G = G
        self.resolution = int(resolution or G.img_resolution)
        self.trunc_range = check_trunc_range(trunc_range)
        self.cond_pose = cond_pose
        # Images rendered per G.synthesis call. On a CPU one at a time is faster than many (the
        # ray-marching tensors of a batch thrash the memory allocator and caches).
        self.chunk = chunk or (16 if self.device.type == 'cuda' else 1)

    @property
    def device(self):
        return self.G.backbone.mapping.w_avg.device

    def draw(self, seeds):
        """The random choices of each sample (CPU tensors): z [N,z_dim], psi [N], pose [N,2],
        cond_pose [N,2]."""
        z, psi, pose, cond = [], [], [], []
        lo, hi = self.trunc_range
        for seed in seeds:
            z.append(torch.from_numpy(np.random.RandomState(int(seed)).randn(1, self.G.z_dim)).float())
            gen = torch.Generator().manual_seed(int(seed))
            psi.append(lo + (hi - lo) * torch.rand(1, generator=gen))
            yaw, pitch = cameras.sample_poses(1, generator=gen)
            pose.append(torch.stack([yaw, pitch], dim=1))
            cyaw, cpitch = cameras.sample_poses(1, generator=gen)  # drawn always: same stream for every option
            cond.append({'random': torch.stack([cyaw, cpitch], dim=1), 'same': pose[-1],
                         'frontal': torch.zeros(1, 2)}[self.cond_pose])
        return dict(z=torch.cat(z), psi=torch.cat(psi), pose=torch.cat(pose), cond_pose=torch.cat(cond))

    @torch.no_grad()
    def codes(self, z, psi, c_cond):
        """W+ codes with per-sample truncation (EG3D's lerp towards w_avg)."""
        w = self.G.mapping(z, c_cond, truncation_psi=1)
        w_avg = self.G.backbone.mapping.w_avg
        return w_avg + psi.reshape(-1, 1, 1).to(w) * (w - w_avg)

    @torch.no_grad()
    def render(self, w, c, render_seed, resolution=None, masks=False):
        """Images [N,3,R,R] in [-1,1] of codes w at cameras c, with the torch RNG seeded (restored
        after); with masks, (images, background masks [N,1,R,R] in [0,1]: render.background_mask)."""
        resolution = resolution or self.resolution
        # One seeded random stream through all the chunks (seed=None in render.render): seeding each
        # chunk afresh would change every image after the first (EG3D's ray sampling draws from the
        # stream), and with them the training data and the datasets already written.
        with render.seeded(render_seed, self.device):
            imgs, bgs = [], []
            for i in range(0, len(w), self.chunk):
                out = render.render(self.G, w[i:i + self.chunk], c[i:i + self.chunk], seed=None)
                imgs.append(resize_input(out['image'].clamp(-1, 1), resolution).clamp(-1, 1))
                if masks:
                    bgs.append(render.background_mask(out['image_depth'], resolution))
        return (torch.cat(imgs), torch.cat(bgs)) if masks else torch.cat(imgs)

    def sample_seeds(self, seeds, resolution=None, render_seed=None, masks=False):
        """dict(img [N,3,R,R], w [N,num_ws,w_dim], pose [N,2] (yaw, pitch), c [N,25]; with masks
        also mask [N,1,R,R], the background mask), on G's device. render_seed: the seed of EG3D's
        random ray sampling (default: the first sample seed)."""
        seeds = [int(s) for s in seeds]
        d = self.draw(seeds)
        dev = self.device
        with render.seeded(seeds[0], dev):  # EG3D's LookAtPoseSampler draws (zero-std) noise too
            c = cameras.pose_to_label(d['pose'][:, 0], d['pose'][:, 1], device=dev)
            c_cond = cameras.pose_to_label(d['cond_pose'][:, 0], d['cond_pose'][:, 1], device=dev)
        w = self.codes(d['z'].to(dev), d['psi'].to(dev), c_cond)
        out = self.render(w, c, render_seed=seeds[0] if render_seed is None else render_seed, resolution=resolution,
                          masks=masks)
        img, mask = out if masks else (out, None)
        return dict(img=img, w=w, pose=d['pose'].to(dev), c=c, **({'mask': mask} if masks else {}))

    def sample(self, n, *keys, masks=False):
        """A batch of n pairs whose sample seeds derive from keys (e.g. run seed, rank, step)."""
        return self.sample_seeds([derive_seed(*keys, j) for j in range(n)], masks=masks)


@torch.no_grad()
def estimate_w_stats(G, num=10000, trunc_range=DEFAULT_TRUNC, cond_pose='random', seed=0x5eed, batch=1000):
    """Per-dimension statistics of w under the training distribution: center = w_avg [num_ws,w_dim],
    scale = std of (w - w_avg), clamped away from 0. Needs the mapping network only (no render)."""
    sampler = PairSampler(G, trunc_range=trunc_range, cond_pose=cond_pose)
    dev = sampler.device
    w_avg = G.backbone.mapping.w_avg.float()
    total = torch.zeros(G.backbone.num_ws, G.w_dim, dtype=torch.float64, device=dev)
    for i in range(0, num, batch):
        d = sampler.draw([derive_seed(seed, j) for j in range(i, min(i + batch, num))])
        with render.seeded(seed, dev):
            c_cond = cameras.pose_to_label(d['cond_pose'][:, 0], d['cond_pose'][:, 1], device=dev)
        w = sampler.codes(d['z'].to(dev), d['psi'].to(dev), c_cond)
        total += ((w - w_avg) ** 2).double().sum(0)
    scale = (total / num).sqrt().float()
    scale = scale.clamp_min(max(1e-8, 1e-2 * float(scale.mean())))
    center = w_avg.reshape(1, -1).repeat(G.backbone.num_ws, 1)
    return {'center': center.cpu().contiguous(), 'scale': scale.cpu().contiguous()}

#----------------------------------------------------------------------------
# Dataset zip.

def image_name(idx):
    s = f'{idx:08d}'
    return f'{s[:5]}/img{s}.png'


def w_name(fname):
    return f'ws/{fname[:-4]}.npy'


def mask_name(fname):
    return f'masks/{fname}'


class PairDataset(torch.utils.data.Dataset):
    """Reads a dataset zip: item -> dict(img [3,R,R] float in [-1,1], w [num_ws,w_dim], pose [2], c [25],
    and mask [1,R,R] in [0,1] (1: background) when the zip has masks (has_masks) and with_masks is
    set (by default; a reader that does not need them clears it, and they are not read).
    Refused with a UserError when the file is no such dataset, or was made for another generator."""

    def __init__(self, path, G=None):
        self.path = str(path)
        self._zip = None
        check_file(path, 'dataset')
        if not zipfile.is_zipfile(self.path):
            raise UserError(f'dataset {path} is not a zip archive (make one with: eg3d-regress dataset)')
        try:
            with zipfile.ZipFile(self.path) as z:
                names = set(z.namelist())
                if DATASET_META not in names or 'dataset.json' not in names:
                    raise UserError(f'dataset {path} is not a regressor dataset (no {DATASET_META} or dataset.json; '
                                    'make one with: eg3d-regress dataset)')
                self.meta = json.loads(z.read(DATASET_META))
                labels = json.loads(z.read('dataset.json'))['labels']
        except (zipfile.BadZipFile, OSError, ValueError, KeyError, TypeError) as e:
            raise UserError(f'dataset {path} cannot be read ({type(e).__name__}: {e})') from None
        if self.meta.get('format') != DATASET_FORMAT:
            raise UserError(f'dataset {path}: unknown format {self.meta.get("format")!r}')
        try:
            self.fnames = [fname for fname, _ in labels]
            self.labels = np.asarray([label for _, label in labels], dtype=np.float32).reshape(len(labels), 25)
        except (ValueError, TypeError):
            raise UserError(f'dataset {path}: dataset.json does not hold [name, 25 floats] labels') from None
        missing = [n for f in self.fnames for n in (f, w_name(f)) if n not in names]
        if missing or len(self.fnames) != self.meta.get('count') or not self.fnames:
            raise UserError(f'dataset {path} is incomplete ({len(self.fnames)} labels, '
                            f'{self.meta.get("count")} expected, missing e.g. {missing[:1]})')
        self.has_masks = all(mask_name(f) in names for f in self.fnames)
        self.with_masks = self.has_masks
        yaw, pitch, _ = cameras.label_to_pose(torch.from_numpy(self.labels))
        self.poses = torch.stack([yaw, pitch], dim=1)
        if G is not None:
            fingerprint.check_fingerprint(self.meta.get('generator', {}), G, what=f'dataset {path}')

    @property
    def resolution(self):
        return int(self.meta['resolution'])

    def __len__(self):
        return len(self.fnames)

    def _open(self):
        if self._zip is None:
            self._zip = zipfile.ZipFile(self.path)
        return self._zip

    def __getstate__(self):  # each DataLoader worker opens its own handle
        return dict(self.__dict__, _zip=None)

    def _read(self, idx):
        """(uint8 image [R,R,3], w [num_ws,w_dim] float32, uint8 mask [R,R] or None) of item idx."""
        z = self._open()
        fname = self.fnames[idx]
        try:
            with z.open(fname) as f:
                img = np.array(PIL.Image.open(f).convert('RGB'))
            with z.open(w_name(fname)) as f:
                w = np.load(io.BytesIO(f.read()))
            mask = None
            if self.with_masks:
                with z.open(mask_name(fname)) as f:
                    mask = np.array(PIL.Image.open(f).convert('L'))
        except Exception as e:  # a damaged member: name the file and the item
            raise UserError(f'dataset {self.path}: cannot read item {fname} ({type(e).__name__}: {e})') from None
        return img, w.reshape(w.shape[-2:]).astype(np.float32), mask

    def __getitem__(self, idx):
        img, w, mask = self._read(idx)
        item = dict(img=uint8_to_float(torch.from_numpy(img).permute(2, 0, 1)), w=torch.from_numpy(w),
                    pose=self.poses[idx], c=torch.from_numpy(self.labels[idx]))
        if mask is not None:
            item['mask'] = torch.from_numpy(mask)[None].float() / 255
        return item

    def nbytes(self):
        """Memory that load_all needs (images and masks as uint8)."""
        _, w, _ = self._read(0)
        return len(self) * ((3 + self.with_masks) * self.resolution ** 2 + w.nbytes + 27 * 4)

    def load_all(self, device='cpu'):
        """Every item at once: dict(img uint8 [N,3,R,R], w [N,num_ws,w_dim], pose [N,2], c [N,25],
        and mask uint8 [N,1,R,R] with the masks) on device."""
        imgs, ws, masks = zip(*(self._read(i) for i in range(len(self))))
        out = dict(img=torch.from_numpy(np.stack(imgs)).permute(0, 3, 1, 2).contiguous(),
                   w=torch.from_numpy(np.stack(ws)), pose=self.poses.clone(), c=torch.from_numpy(self.labels.copy()))
        if self.with_masks:
            out['mask'] = torch.from_numpy(np.stack(masks))[:, None].contiguous()
        return {k: v.to(device) for k, v in out.items()}


def uint8_to_float(img):
    """uint8 images -> float in [-1, 1], as read from a file."""
    return img.float() / 127.5 - 1


@functools.lru_cache(maxsize=4)
def _epoch_perm(size, seed, epoch):
    return torch.randperm(size, generator=torch.Generator().manual_seed(derive_seed(seed, epoch))).tolist()


def epoch_batch(step, n, rank, world, size, seed):
    """Dataset indices of rank's batch at `step` (n per rank): a seeded permutation per epoch,
    the global batch split between ranks. Stateless, so resuming at a step continues exactly."""
    out = []
    for j in range(n):
        epoch, k = divmod((step * world + rank) * n + j, size)
        out.append(_epoch_perm(size, seed, epoch)[k])
    return out
