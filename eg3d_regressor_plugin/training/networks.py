"""Image -> (w, pose) regressors: a ViT, a "UNET-modified" encoder (a UNet with a regression head) and a
feature-pyramid W+ encoder in the pSp style.

Pure PyTorch (no EG3D import), so the networks build and test without a checkout. Every network
takes `[N, 3, R, R]` images in [-1, 1] (R = `input_resolution`) and returns

    {'w':    [N, num_ws, w_dim]  the *normalised* offset of W+ from the generator's w_avg
                                 (checkpoint.denormalize_w turns it into real codes),
     'pose': [N, 2]              yaw, pitch in radians (cameras.py's convention)}

Every network first standardises its input per pixel with the mean and standard deviation of
its training images (buffers `input_mean`, `input_std`, set by `set_input_stats` when training
starts, kept in the state dict; identity before). The images of one generator differ from its
mean face by little, and a network sees those differences far better centred and scaled (on the
raw images its first layers would have to learn to cancel the large shared mean first).

The last w layer starts near zero, so an untrained network predicts w_avg: the mean-w baseline.
`build_regressor(**model.config)` rebuilds the same architecture; checkpoints store that config.
"""

import inspect
import numbers

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..catalog import ARCHS
from ..errors import UserError


#----------------------------------------------------------------------------
# Shared pieces.

def resize_input(img: torch.Tensor, resolution: int) -> torch.Tensor:
    """[N, 3, H, W] -> [N, 3, R, R] with antialiased bilinear interpolation; unchanged at size R."""
    if tuple(img.shape[-2:]) == (resolution, resolution):
        return img
    return F.interpolate(img, size=(resolution, resolution), mode='bilinear', align_corners=False, antialias=True)


def _norm(channels):
    # GroupNorm, not BatchNorm: independent of the batch size, the same in train and eval mode and
    # under DDP (no running statistics to synchronise).
    return nn.GroupNorm(max(1, min(32, channels // 8)), channels)


def _near_zero(layer, gain=1e-2):
    # Small rather than exactly zero: a zero last layer would block the gradient of every layer before it.
    with torch.no_grad():
        layer.weight.mul_(gain)
        layer.bias.zero_()
    return layer


def _pose_head(channels, hidden=128):
    """Small MLP on pooled features -> (yaw, pitch); starts near the frontal pose (0, 0)."""
    return nn.Sequential(nn.Linear(channels, hidden), nn.LeakyReLU(0.2), _near_zero(nn.Linear(hidden, 2)))


def _to_vector(cin, cout, size, full_at=0):
    """Stride-2 3x3 convs with LeakyReLU from a size x size map down to 1 x 1, flattened to
    [N, cout] (pSp's map-to-style block). With full_at=K, once the map is at most K x K one
    convolution with a kernel as large as the map ends it instead: a dense, linear readout that
    sees where each feature lies."""
    layers = []
    while True:
        if size <= full_at:
            return nn.Sequential(*layers, nn.Conv2d(cin, cout, size), nn.Flatten())
        layers += [nn.Conv2d(cin, cout, 3, stride=2, padding=1), nn.LeakyReLU(0.2)]
        cin, size = cout, (size + 1) // 2
        if size == 1:
            return nn.Sequential(*layers, nn.Flatten())


def _as_int(arch, name, value, minimum=1):
    # Accepts ints (numpy's too) and integer strings, e.g. from a command line's key=value options.
    ok = isinstance(value, numbers.Integral) or (isinstance(value, str) and value.strip().lstrip('-').isdigit())
    if isinstance(value, bool) or not ok:
        raise UserError(f'{arch}: {name} must be an integer, got {value!r}')
    value = int(value)
    if value < minimum:
        raise UserError(f'{arch}: {name} must be at least {minimum}, got {value}')
    return value


def _as_bool(arch, name, value):
    if isinstance(value, str) and value.strip().lower() in ('true', 'false', '1', '0', 'yes', 'no'):
        return value.strip().lower() in ('true', '1', 'yes')
    if isinstance(value, (bool, numbers.Integral)) and value in (0, 1):
        return bool(value)
    raise UserError(f'{arch}: {name} must be true or false, got {value!r}')


def _resolve_size(arch, sizes, size, **overrides):
    """A size preset's options with the explicitly given ones (not None) on top."""
    if size not in sizes:
        raise UserError(f'{arch}: unknown size {size!r}; choose from {", ".join(sizes)}')
    return {k: sizes[size][k] if v is None else v for k, v in overrides.items()}


def _require_multiple(arch, resolution, factor, why):
    if resolution % factor or resolution < 2 * factor:
        raise UserError(f'{arch}: input_resolution must be a multiple of {factor} and at least {2 * factor} '
                        f'({why}), got {resolution}')


class Regressor(nn.Module):
    """Base class: common attributes, the input check and the single-w broadcast. Subclasses
    implement `_predict(img) -> (w [N, num_levels, w_dim], pose [N, 2])`."""

    arch = None

    def __init__(self, num_ws=14, w_dim=512, input_resolution=256, single_w=False):
        super().__init__()
        self.num_ws = _as_int(self.arch, 'num_ws', num_ws)
        self.w_dim = _as_int(self.arch, 'w_dim', w_dim)
        self.input_resolution = _as_int(self.arch, 'input_resolution', input_resolution, minimum=8)
        self.single_w = _as_bool(self.arch, 'single_w', single_w)
        self.num_levels = 1 if self.single_w else self.num_ws  # how many distinct w the net predicts
        # Everything build_regressor needs to rebuild this network; subclasses add their options.
        self.config = dict(arch=self.arch, num_ws=self.num_ws, w_dim=self.w_dim,
                           input_resolution=self.input_resolution, single_w=self.single_w)
        R = self.input_resolution
        self.register_buffer('input_mean', torch.zeros(1, 3, R, R))
        self.register_buffer('input_std', torch.ones(1, 3, R, R))

    @torch.no_grad()
    def set_input_stats(self, images):
        """Standardise inputs with the per-pixel mean and std of `images` [N, 3, R, R] in [-1, 1].
        The std is kept above a tenth of its mean, so that pixels that hardly vary in training
        (and may in a photo) are not blown up."""
        images = images.detach().to(self.input_mean)
        if images.ndim != 4 or tuple(images.shape[1:]) != tuple(self.input_mean.shape[1:]) or len(images) < 2:
            raise ValueError(f'set_input_stats takes [N >= 2, 3, R, R] images at the input resolution, '
                             f'got {list(images.shape)}')
        std = images.std(dim=0, keepdim=True)
        self.input_mean.copy_(images.mean(dim=0, keepdim=True))
        self.input_std.copy_(std.clamp_min(0.1 * float(std.mean())).clamp_min(1e-6))

    def forward(self, img):
        R = self.input_resolution
        if img.ndim != 4 or img.shape[1] != 3 or tuple(img.shape[-2:]) != (R, R):
            raise ValueError(f'the {self.arch} regressor takes [N, 3, {R}, {R}] images, got {list(img.shape)} '
                             f'(resize with networks.resize_input)')
        w, pose = self._predict((img - self.input_mean) / self.input_std)
        if self.single_w:
            w = w.repeat(1, self.num_ws, 1)  # W space: one w for every level
        return {'w': w, 'pose': pose}

    def extra_repr(self):
        return ', '.join(f'{k}={v}' for k, v in self.config.items() if k != 'arch')

#----------------------------------------------------------------------------
# ViT: patch embedding + class token + learned positions, a pre-norm TransformerEncoder, and
# linear heads on the class token. (Tried, and each learned w slower: one extra token per w level
# with a shared head, heads on the mean of the tokens, and a convolutional stem in place of the
# patch embedding.)

VIT_SIZES = {
    # tiny: sized for a CPU: in a fixed time on the tiny preset, a wider or deeper ViT takes fewer
    # steps and learned w no better, a narrower or shallower one had too little capacity.
    'tiny': dict(dim=128, depth=4, heads=4),     # ~1.8 M parameters (at 14 x 512): CPU
    'small': dict(dim=384, depth=8, heads=6),    # ~17 M
    'base': dict(dim=768, depth=12, heads=12),   # ~91 M (ViT-B widths)
}


class ViTRegressor(Regressor):
    arch = 'vit'

    def __init__(self, num_ws=14, w_dim=512, input_resolution=256, single_w=False,
                 size='tiny', patch_size=None, dim=None, depth=None, heads=None, mlp_ratio=4):
        super().__init__(num_ws, w_dim, input_resolution, single_w)
        opts = _resolve_size('vit', VIT_SIZES, size, dim=dim, depth=depth, heads=heads)
        dim, depth, heads = (_as_int('vit', k, v) for k, v in opts.items())
        # 16 px patches, 8 px below 64 px input (16 tokens at 32 px rather than 4).
        patch_size = _as_int('vit', 'patch_size', (16 if self.input_resolution >= 64 else 8) if patch_size is None
                             else patch_size)
        mlp_ratio = _as_int('vit', 'mlp_ratio', mlp_ratio)
        R = self.input_resolution
        if R % patch_size or R < 2 * patch_size:
            raise UserError(f'vit: input_resolution {R} must be a multiple of patch_size {patch_size} '
                            f'(and at least two patches)')
        if dim % heads:
            raise UserError(f'vit: dim {dim} must be divisible by heads {heads}')
        self.config.update(size=size, patch_size=patch_size, dim=dim, depth=depth, heads=heads, mlp_ratio=mlp_ratio)

        num_patches = (R // patch_size) ** 2
        self.patch_embed = nn.Conv2d(3, dim, patch_size, stride=patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + num_patches, dim))
        for p in (self.cls_token, self.pos_embed):
            nn.init.trunc_normal_(p, std=0.02)
        layer = nn.TransformerEncoderLayer(dim, heads, dim_feedforward=dim * mlp_ratio, dropout=0.0,
                                           activation='gelu', batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, depth, norm=nn.LayerNorm(dim), enable_nested_tensor=False)
        self.w_head = _near_zero(nn.Linear(dim, self.num_levels * self.w_dim))
        self.pose_head = _pose_head(dim)

    def _predict(self, img):
        x = self.patch_embed(img).flatten(2).transpose(1, 2)  # [N, patches, dim]
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
        cls = self.encoder(x + self.pos_embed)[:, 0]
        return self.w_head(cls).view(-1, self.num_levels, self.w_dim), self.pose_head(cls)

#----------------------------------------------------------------------------
# UNet ("UNET-modified"): the UNet contracting path, a short expanding path with skip
# connections, then a convolutional head down to one vector that a linear layer maps to
# num_ws x w_dim. The contracting path's double convs are residual by default (as in Zhang et
# al. 2018's residual UNet): a block can pass its input on unchanged, so the deep path starts
# near the identity and trains faster. block='plain' is the classic UNet. The head is 'full' by
# default: strided convs down to 8 x 8 at most, then one convolution over the whole map, so that
# w reads where features lie, not only what they are (a linear map of the pixels predicts this
# w well; head='strided', pSp's pooling head, loses the where).

class DoubleConv(nn.Sequential):
    """UNet's (3x3 conv, norm, ReLU) x 2."""

    def __init__(self, cin, cout):
        super().__init__(nn.Conv2d(cin, cout, 3, padding=1, bias=False), _norm(cout), nn.ReLU(inplace=True),
                         nn.Conv2d(cout, cout, 3, padding=1, bias=False), _norm(cout), nn.ReLU(inplace=True))


class ResidualDoubleConv(nn.Module):
    """DoubleConv plus its input (through a 1x1 conv where the channels change)."""

    def __init__(self, cin, cout):
        super().__init__()
        self.conv = DoubleConv(cin, cout)
        self.skip = nn.Identity() if cin == cout else nn.Conv2d(cin, cout, 1, bias=False)

    def forward(self, x):
        return self.conv(x) + self.skip(x)


UNET_BLOCKS = {'residual': ResidualDoubleConv, 'plain': DoubleConv}
UNET_HEADS = {'full': 8, 'strided': 0}  # the map size at which one convolution reads the whole map


class UpBlock(nn.Module):
    """Upsample x2, project, concatenate the skip connection, DoubleConv."""

    def __init__(self, cin, cskip, cout):
        super().__init__()
        self.proj = nn.Conv2d(cin, cout, 1)
        self.conv = DoubleConv(cout + cskip, cout)

    def forward(self, x, skip):
        x = self.proj(F.interpolate(x, size=skip.shape[-2:], mode='bilinear', align_corners=False))
        return self.conv(torch.cat([x, skip], dim=1))


UNET_SIZES = {
    'tiny': dict(base_channels=16, max_channels=128, head_channels=128),    # ~3.3 M parameters (at 14 x 512): CPU
    'small': dict(base_channels=32, max_channels=256, head_channels=256),   # ~11 M
    'base': dict(base_channels=64, max_channels=512, head_channels=512),    # ~42 M
}


class UNetRegressor(Regressor):
    arch = 'unet'

    def __init__(self, num_ws=14, w_dim=512, input_resolution=256, single_w=False, size='tiny',
                 base_channels=None, max_channels=None, head_channels=None, depth=None, up_steps=1,
                 block='residual', head='full'):
        super().__init__(num_ws, w_dim, input_resolution, single_w)
        opts = _resolve_size('unet', UNET_SIZES, size, base_channels=base_channels, max_channels=max_channels,
                             head_channels=head_channels)
        base_channels, max_channels, head_channels = (_as_int('unet', k, v) for k, v in opts.items())
        # Four downsamplings, fewer below 64 px: the bottleneck stays at least 4 x 4 (at 32 px, 3
        # learned w far better than 4).
        depth = _as_int('unet', 'depth', min(4, self.input_resolution.bit_length() - 3) if depth is None else depth)
        up_steps = _as_int('unet', 'up_steps', up_steps, minimum=0)
        if up_steps > depth:
            raise UserError(f'unet: up_steps {up_steps} cannot exceed depth {depth}')
        if block not in UNET_BLOCKS:
            raise UserError(f'unet: unknown block {block!r}; choose from {", ".join(UNET_BLOCKS)}')
        if head not in UNET_HEADS:
            raise UserError(f'unet: unknown head {head!r}; choose from {", ".join(UNET_HEADS)}')
        R = self.input_resolution
        _require_multiple('unet', R, 2 ** depth, f'{depth} downsamplings')
        self.config.update(size=size, base_channels=base_channels, max_channels=max_channels,
                           head_channels=head_channels, depth=depth, up_steps=up_steps, block=block, head=head)

        ch = [min(base_channels * 2 ** i, max_channels) for i in range(depth + 1)]  # level i is at R / 2**i
        Block = UNET_BLOCKS[block]
        self.down = nn.ModuleList([Block(3, ch[0])] + [Block(ch[i - 1], ch[i]) for i in range(1, depth + 1)])
        self.up = nn.ModuleList([UpBlock(ch[depth - j], ch[depth - j - 1], ch[depth - j - 1]) for j in range(up_steps)])
        self.head = _to_vector(ch[depth - up_steps], head_channels, R // 2 ** (depth - up_steps), UNET_HEADS[head])
        self.w_head = _near_zero(nn.Linear(head_channels, self.num_levels * self.w_dim))
        self.pose_head = _pose_head(ch[depth])

    def _predict(self, img):
        skips, x = [], img
        for i, block in enumerate(self.down):
            x = block(F.max_pool2d(x, 2) if i else x)
            skips.append(x)
        bottleneck = x
        for j, block in enumerate(self.up):
            x = block(x, skips[-2 - j])
        w = self.w_head(self.head(x)).view(-1, self.num_levels, self.w_dim)
        return w, self.pose_head(bottleneck.mean(dim=(2, 3)))

#----------------------------------------------------------------------------
# pSp-style feature pyramid (after pSp's GradualStyleEncoder): a residual backbone gives
# fine (R/4), medium (R/8) and coarse (R/16) maps, fused top-down (FPN); one small
# map-to-style head per w level reads the coarse, medium or fine map.

class IRBlock(nn.Module):
    """Pre-norm residual block (norm, 3x3 conv with the stride, PReLU, 3x3 conv, norm) with a
    projected shortcut when the shape changes. The stride sits on the first conv, which costs a
    quarter of putting it on the second."""

    def __init__(self, cin, cout, stride=1):
        super().__init__()
        self.res = nn.Sequential(_norm(cin), nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.PReLU(cout),
                                 nn.Conv2d(cout, cout, 3, 1, 1, bias=False), _norm(cout))
        if cin == cout and stride == 1:
            self.shortcut = nn.Identity()
        else:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), _norm(cout))

    def forward(self, x):
        return self.res(x) + self.shortcut(x)


def psp_level_groups(num_levels):
    """(coarse, medium, fine) level counts: pSp's 3 / 4 / 7 for 14 levels, scaled for others."""
    coarse = max(1, round(num_levels * 3 / 14))
    medium = max(0, min(num_levels - coarse, round(num_levels * 7 / 14) - coarse))
    return coarse, medium, num_levels - coarse - medium


PSP_SIZES = {
    'tiny': dict(base_channels=16, blocks=(1, 2, 2, 1), style_channels=64),     # ~3 M parameters (at 14 x 512): CPU
    'small': dict(base_channels=32, blocks=(2, 3, 4, 2), style_channels=128),   # ~15 M
    'base': dict(base_channels=64, blocks=(3, 4, 14, 3), style_channels=512),   # ~210 M: pSp's IR-50 widths and depths
}


class PSPRegressor(Regressor):
    arch = 'psp'

    def __init__(self, num_ws=14, w_dim=512, input_resolution=256, single_w=False, size='tiny',
                 base_channels=None, blocks=None, style_channels=None):
        super().__init__(num_ws, w_dim, input_resolution, single_w)
        opts = _resolve_size('psp', PSP_SIZES, size, base_channels=base_channels, blocks=blocks,
                             style_channels=style_channels)
        base_channels = _as_int('psp', 'base_channels', opts['base_channels'])
        style_channels = _as_int('psp', 'style_channels', opts['style_channels'])
        blocks = opts['blocks']
        if isinstance(blocks, str):
            blocks = blocks.split(',')
        if not isinstance(blocks, (list, tuple)) or len(blocks) != 4:
            raise UserError(f'psp: blocks must be four block counts, one per stage (e.g. 1,2,2,1), got {blocks!r}')
        blocks = [_as_int('psp', 'blocks', b) for b in blocks]
        R = self.input_resolution
        _require_multiple('psp', R, 16, 'four stride-2 stages')
        self.config.update(size=size, base_channels=base_channels, blocks=blocks, style_channels=style_channels)

        self.stem = nn.Sequential(nn.Conv2d(3, base_channels, 3, 1, 1, bias=False), _norm(base_channels),
                                  nn.PReLU(base_channels))
        stages, cin = [], base_channels
        for i, n in enumerate(blocks):  # stage i ends at R / 2**(i+1)
            cout = base_channels * 2 ** i
            stages.append(nn.Sequential(*[IRBlock(cin if k == 0 else cout, cout, stride=2 if k == 0 else 1)
                                          for k in range(n)]))
            cin = cout
        self.stages = nn.ModuleList(stages)
        c_fine, c_medium, c_coarse = (base_channels * 2 ** i for i in (1, 2, 3))

        self.groups = psp_level_groups(self.num_levels)
        n_coarse, n_medium, n_fine = self.groups
        S = style_channels
        # Lateral 1x1 convs into the pyramid; only the levels that some head reads are built.
        self.lat_coarse = nn.Conv2d(c_coarse, S, 1)
        self.lat_medium = nn.Conv2d(c_medium, S, 1) if n_medium or n_fine else None
        self.lat_fine = nn.Conv2d(c_fine, S, 1) if n_fine else None
        sizes = [R // 16] * n_coarse + [R // 8] * n_medium + [R // 4] * n_fine
        self.styles = nn.ModuleList([_to_vector(S, S, size) for size in sizes])
        self.w_heads = nn.ModuleList([_near_zero(nn.Linear(S, self.w_dim)) for _ in sizes])
        self.pose_head = _pose_head(c_coarse)

    def _predict(self, img):
        x = self.stem(img)
        feats = []
        for stage in self.stages:
            x = stage(x)
            feats.append(x)
        c_fine, c_medium, c_coarse = feats[1], feats[2], feats[3]
        n_coarse, n_medium, n_fine = self.groups

        def up_add(top, lateral):
            return F.interpolate(top, size=lateral.shape[-2:], mode='bilinear', align_corners=False) + lateral

        p_coarse = self.lat_coarse(c_coarse)
        maps = [p_coarse] * n_coarse
        if self.lat_medium is not None:
            p_medium = up_add(p_coarse, self.lat_medium(c_medium))
            maps += [p_medium] * n_medium
            if self.lat_fine is not None:
                maps += [up_add(p_medium, self.lat_fine(c_fine))] * n_fine
        w = torch.stack([head(style(m)) for style, head, m in zip(self.styles, self.w_heads, maps)], dim=1)
        return w, self.pose_head(c_coarse.mean(dim=(2, 3)))

#----------------------------------------------------------------------------

_CLASSES = {'vit': ViTRegressor, 'unet': UNetRegressor, 'psp': PSPRegressor}
_COMMON = ('num_ws', 'w_dim', 'input_resolution', 'single_w')

# Options added with a new default after checkpoints were written without them: the value those
# checkpoints were built with (checkpoint.build_from_checkpoint fills it in).
FORMER_DEFAULTS = {'unet': dict(block='plain', head='strided')}


def arch_options(arch) -> dict:
    """The architecture-specific options of `arch` and their defaults (for help texts and checks)."""
    if arch not in _CLASSES:
        raise UserError(f'unknown regressor architecture {arch!r}; choose from {", ".join(ARCHS)}')
    params = inspect.signature(_CLASSES[arch].__init__).parameters
    return {k: p.default for k, p in params.items() if k != 'self' and k not in _COMMON}


def build_regressor(arch, num_ws=14, w_dim=512, input_resolution=256, single_w=False, **arch_kwargs) -> Regressor:
    """A regressor by name; `build_regressor(**model.config)` rebuilds `model`'s architecture."""
    allowed = arch_options(arch)
    unknown = sorted(set(arch_kwargs) - set(allowed))
    if unknown:
        raise UserError(f'{arch}: unknown option{"s" if len(unknown) > 1 else ""} {", ".join(unknown)}; '
                        f'it takes {", ".join(allowed)}')
    return _CLASSES[arch](num_ws=num_ws, w_dim=w_dim, input_resolution=input_resolution, single_w=single_w,
                          **arch_kwargs)


def count_params(module) -> int:
    return sum(p.numel() for p in module.parameters())
