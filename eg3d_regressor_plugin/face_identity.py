"""Face identity, offline and differentiable: dlib's face-recognition ResNet in PyTorch (weights read
from the `dlib_face_recognition_resnet_model_v1.dat` that `face-recognition-models` ships) and
ArcFace IR-SE50 (the `model_ir_se50.pth` state dict pSp/e4e/GOAE train with), for an identity loss
and an identity metric on any device, with gradients, with nothing downloaded.

dlib's network (`anet_type` of dlib's dnn_face_recognition_ex.cpp) on a 150x150 face chip:
con 32 7x7/2, affine, relu, max_pool 3x3/2, then residual blocks of two 3x3 convs with affine
(batch norm folded into scale + shift) layers: 3 x 32, 4 x 64, 3 x 128, 3 x 256, 1 x 256 channels,
every stage but the first opening with a block that halves the resolution (its shortcut is a 2x2
average pool, zero-padded in channels and space as dlib's add_prev does), global average pool,
fc 128 with no bias; dlib returns that output raw (norm ~1.5), `FaceIdentity.embed` L2-normalises
it. On dlib's own chips the port reproduces dlib's raw descriptors within 4e-7 (tests/test_face_identity.py).

Public API: load_face_identity(spec, device) -> FaceIdentity (embed, embed_chips, crop),
identity_similarity(a, b), identity_loss(x, y, model=None), chip_from_landmarks(img, landmarks68),
read_dlib_resnet(path).

The .dat file is dlib's binary serialization of that network (dlib/serialize.h, dnn/core.h,
dnn/layers.h): integers are a control byte (bit 7: sign, low 4 bits: byte count) followed by
little-endian bytes; floats are two such integers, mantissa then exponent (value = m * 2**e);
strings are a length then bytes; bools are the characters '1' / '0'; tensors are version 2, four
dimensions, then raw little-endian float32. The network is written outermost layer first, each
wrapper's version before its sub-network and each layer's parameters after it, so parsing needs
the architecture, which this module states (`DLIB_OPS`) and checks against every layer's header.
"""

import functools
import math
import os

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .align import model_path, template_positions
from .errors import UserError, require_extra

# ----------------------------------------------------------------------------------------------
# dlib's serialization.


class _DlibReader:
    """Reads dlib's serialized primitives from bytes (see the module docstring)."""

    def __init__(self, data: bytes):
        self.data, self.pos = data, 0

    def _take(self, n):
        if self.pos + n > len(self.data):
            raise ValueError(f'unexpected end of file at byte {self.pos}')
        b = self.data[self.pos:self.pos + n]
        self.pos += n
        return b

    def int(self):
        ctrl = self._take(1)[0]
        size = ctrl & 0x0F
        if size == 0 or size > 8 or ctrl & 0x70:
            raise ValueError(f'bad integer control byte {ctrl:#x} at byte {self.pos - 1}')
        value = int.from_bytes(self._take(size), 'little')
        return -value if ctrl & 0x80 else value

    def float(self):
        if self.data[self.pos] & 0x70:  # dlib's pre-2013 ASCII floats; no model file here uses them
            raise ValueError(f'unsupported (ASCII) float encoding at byte {self.pos}')
        mantissa, exponent = self.int(), self.int()
        special = {32000: math.inf, 32001: -math.inf, 32002: math.nan}
        return special[exponent] if exponent in special else math.ldexp(mantissa, exponent)

    def bool(self):
        ch = self._take(1)
        if ch not in (b'0', b'1'):
            raise ValueError(f'bad bool {ch!r} at byte {self.pos - 1}')
        return ch == b'1'

    def str(self):
        return self._take(self.int()).decode('latin-1')

    def _dims(self, what, expected):
        version = self.int()
        if version != expected:
            raise ValueError(f'{what} version {version} (expected {expected}) at byte {self.pos}')
        return [self.int() for _ in range(4)]

    def tensor(self):
        dims = self._dims('tensor', 2)
        count = int(np.prod(dims))
        return np.frombuffer(self._take(4 * count), dtype='<f4').reshape(dims).astype(np.float32)

    def alias(self):
        """An alias_tensor: only the shape of a view into the layer's `params`."""
        return self._dims('alias tensor', 1)


def _read_details(r: _DlibReader, kind):
    """One layer's parameters; checks that its version string is of the expected kind."""
    version = r.str()
    if not version.startswith(kind):
        raise ValueError(f'expected a {kind} layer, found {version!r} at byte {r.pos}')
    d = {'version': version}
    if kind == 'con_':
        if version not in ('con_4', 'con_5', 'con_6'):
            raise ValueError(f'unsupported layer version {version!r}')
        params = r.tensor().ravel()
        d['num_filters'], d['nr'], d['nc'] = r.int(), r.int(), r.int()
        d['stride'], d['padding'] = (r.int(), r.int()), (r.int(), r.int())
        fshape, bshape = r.alias(), r.alias()
        [r.float() for _ in range(4)]  # learning-rate and weight-decay multipliers
        d['use_bias'] = r.bool() if version in ('con_5', 'con_6') else True
        if version == 'con_6':
            r.bool()  # use_relu: a fused relu, only set by dlib's own layer fusion
        n = int(np.prod(fshape))
        d['weight'] = params[:n].reshape(fshape)  # [out, in, kh, kw], cross-correlation as torch
        d['bias'] = params[n:n + int(np.prod(bshape))] if d['use_bias'] else None
    elif kind == 'affine_':
        params = r.tensor().ravel()
        g, b = r.alias(), r.alias()
        d['mode'] = r.int()
        if version == 'affine_2':
            d['disabled'] = r.bool()
        n = int(np.prod(g))
        d['gamma'], d['beta'] = params[:n], params[n:n + int(np.prod(b))]
    elif kind == 'relu_':
        if version == 'relu_2':
            d['disabled'] = r.bool()
    elif kind in ('max_pool_', 'avg_pool_'):
        d['nr'], d['nc'] = r.int(), r.int()
        d['stride'], d['padding'] = (r.int(), r.int()), (r.int(), r.int())
    elif kind == 'add_prev_':
        pass
    elif kind == 'fc_':
        num_outputs, num_inputs = r.int(), r.int()
        params = r.tensor().ravel()
        r.alias(), r.alias()  # the weight and bias aliases: read past them
        d['bias_mode'] = r.int()
        [r.float() for _ in range(4)]
        if version == 'fc_3':
            r.bool()  # use_bias (fc_no_bias has no bias whatever it says)
        d['weight'] = params[:num_inputs * num_outputs].reshape(num_inputs, num_outputs)  # x @ W
    elif kind == 'input_rgb_image_sized':
        d['mean_rgb'] = [r.float() for _ in range(3)]
        d['size'] = (r.int(), r.int())
    elif kind == 'loss_metric_':
        if version == 'loss_metric_2':
            d['margin'], d['dist_thresh'] = r.float(), r.float()
    else:
        raise KeyError(kind)
    return d


def _dlib_ops():
    """dlib's anet_type from input to output: (kind, argument) per layer; 'tag'/'skip' are dlib's
    tag and skip wrappers, 'add_prev' adds the output of the nearest tag below with that id."""
    ops = [('con_', (32, 7, 2)), ('affine_', None), ('relu_', None), ('max_pool_', (3, 2))]

    def block(n, down):
        s = 2 if down else 1
        ops.extend([('tag', 1), ('con_', (n, 3, s)), ('affine_', None), ('relu_', None),
                    ('con_', (n, 3, 1)), ('affine_', None)])
        if down:
            ops.extend([('tag', 2), ('skip', 1), ('avg_pool_', (2, 2)), ('add_prev_', 2)])
        else:
            ops.append(('add_prev_', 1))
        ops.append(('relu_', None))

    for n, count, down in DLIB_STAGES:
        for i in range(count):
            block(n, down and i == 0)
    ops.extend([('avg_pool_', (0, 1)), ('fc_', 128)])
    return ops


# (channels, blocks, first block downsamples) from input to output: dlib's alevel4 ... alevel0
DLIB_STAGES = [(32, 3, False), (64, 4, True), (128, 3, True), (256, 3, True), (256, 1, True)]
DLIB_OPS = _dlib_ops()


def read_dlib_resnet(path):
    """Parse dlib_face_recognition_resnet_model_v1.dat into numpy arrays.

    Returns a dict: 'mean_rgb' (the input layer's per-channel mean, 0-255), 'size' (150, 150),
    'convs' (list of dicts with 'weight' [out, in, k, k], 'bias', 'stride', 'padding'),
    'affines' (list of dicts with 'gamma', 'beta'), 'pools' (the pooling layers' parameters),
    'fc' ([256, 128], applied as x @ fc), in input-to-output order, and 'loss' (the metric loss's
    settings). Raises ValueError when the file is not this network.
    """
    with open(path, 'rb') as f:
        r = _DlibReader(f.read())
    if r.int() != 1:
        raise ValueError('not a dlib loss-layer network')
    loss = _read_details(r, 'loss_metric_')
    # wrappers' versions, outermost first, down to the innermost add_layer<con, input>
    versions = [r.int() for _ in DLIB_OPS[1:]][::-1]
    inner_version = r.int()
    if inner_version not in (2, 3):
        raise ValueError(f'unexpected input add_layer version {inner_version}')
    inp = _read_details(r, 'input_rgb_image_sized')
    layers = []

    def layer_state(version, is_input):
        r.bool(), r.bool(), r.bool()  # setup called, gradient stale, output disabled
        r.tensor(), r.tensor()  # x_grad, cached_output (empty in saved models)
        if version == 2 or is_input:
            r.tensor()  # params_grad / grad_final
        if is_input and version == 3:
            r.int()  # sample expansion factor

    layers.append(_read_details(r, 'con_'))
    layer_state(inner_version, True)
    for (kind, _), version in zip(DLIB_OPS[1:], versions):
        if kind in ('tag', 'skip'):
            if version != 1:
                raise ValueError(f'unexpected {kind} layer version {version}')
            continue
        if version not in (1, 2):
            raise ValueError(f'unexpected add_layer version {version}')
        layers.append(_read_details(r, kind))
        layer_state(version, False)
    if r.pos != len(r.data):
        raise ValueError(f'{len(r.data) - r.pos} bytes left over after the network')
    # check hyper-parameters against the architecture this module builds
    ops = [op for op in DLIB_OPS if op[0] not in ('tag', 'skip')]
    for (kind, arg), d in zip(ops, layers):
        if kind == 'con_' and (d['num_filters'], d['nr'], d['stride'][0]) != arg:
            raise ValueError(f'conv {d["num_filters"]}x{d["nr"]}/{d["stride"][0]} where {arg} was expected')
    out = dict(mean_rgb=inp['mean_rgb'], size=inp['size'], loss=loss,
               convs=[d for d in layers if d['version'].startswith('con_')],
               affines=[d for d in layers if d['version'].startswith('affine_')],
               pools=[d for d in layers if 'pool' in d['version']],
               fc=next(d['weight'] for d in layers if d['version'].startswith('fc_')))
    return out


# ----------------------------------------------------------------------------------------------
# dlib's ResNet in PyTorch.


class _Affine(nn.Module):
    """dlib's affine layer: a per-channel scale and shift (batch norm with its statistics folded in)."""

    def __init__(self, channels):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x):
        return x * self.weight[:, None, None] + self.bias[:, None, None]


def _add_padded(a, b):
    """dlib's add_prev: the sum over the larger of both shapes, each input zero-padded at the end
    of the channels, rows and columns (the 64 -> 128 shortcuts, and 8x8 maps pooled to 4x4 while
    the strided conv gives 3x3)."""
    shape = [max(s, t) for s, t in zip(a.shape, b.shape)]

    def pad(t):
        p = [0, shape[3] - t.shape[3], 0, shape[2] - t.shape[2], 0, shape[1] - t.shape[1]]
        return F.pad(t, p) if any(p) else t
    return pad(a) + pad(b)


class _DlibBlock(nn.Module):
    """relu(affine(conv3x3(relu(affine(conv3x3/s(x))))) + shortcut(x)); shortcut: 2x2 average
    pool when the block downsamples (stride 2, no padding, as dlib's con<N,3,3,2,2>), else x."""

    def __init__(self, cin, cout, down):
        super().__init__()
        self.down = down
        self.conv1 = nn.Conv2d(cin, cout, 3, 2 if down else 1, 0 if down else 1)
        self.aff1 = _Affine(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1)
        self.aff2 = _Affine(cout)

    def forward(self, x):
        y = self.aff2(self.conv2(F.relu(self.aff1(self.conv1(x)))))
        return F.relu(_add_padded(y, F.avg_pool2d(x, 2) if self.down else x))


class DlibFaceResNet(nn.Module):
    """dlib's face-recognition ResNet. forward: RGB face chips [N,3,150,150] with values 0-255
    (dlib's get_face_chip, size 150, padding 0.25) -> raw 128-d descriptors (dlib's output)."""

    input_size = 150

    def __init__(self):
        super().__init__()
        self.register_buffer('mean_rgb', torch.tensor([122.782, 117.001, 104.298]))
        self.conv1 = nn.Conv2d(3, 32, 7, 2, 0)
        self.aff1 = _Affine(32)
        blocks, cin = [], 32
        for n, count, down in DLIB_STAGES:
            for i in range(count):
                blocks.append(_DlibBlock(cin, n, down and i == 0))
                cin = n
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(256, 128, bias=False)

    def forward(self, x):
        x = (x - self.mean_rgb[:, None, None]) / 256  # dlib's input_rgb_image_sized
        x = F.max_pool2d(F.relu(self.aff1(self.conv1(x))), 3, 2)
        x = self.blocks(x).mean(dim=(2, 3))
        return self.fc(x)

    @classmethod
    def from_dat(cls, path):
        """Build the network with the weights of a dlib .dat file (see read_dlib_resnet)."""
        m = read_dlib_resnet(path)
        net = cls()
        convs = [net.conv1] + [c for b in net.blocks for c in (b.conv1, b.conv2)]
        affs = [net.aff1] + [a for b in net.blocks for a in (b.aff1, b.aff2)]
        for conv, d in zip(convs, m['convs']):
            if tuple(d['weight'].shape) != tuple(conv.weight.shape) or d['padding'][0] != conv.padding[0]:
                raise ValueError(f'conv {list(d["weight"].shape)} pad {d["padding"]} does not fit {conv}')
            conv.weight.data.copy_(torch.from_numpy(d['weight']))
            conv.bias.data.copy_(torch.from_numpy(d['bias']))
        for aff, d in zip(affs, m['affines']):
            aff.weight.data.copy_(torch.from_numpy(d['gamma']))
            aff.bias.data.copy_(torch.from_numpy(d['beta']))
        net.fc.weight.data.copy_(torch.from_numpy(m['fc'].T))  # dlib: x @ W, torch: x @ W.T
        net.mean_rgb.copy_(torch.tensor(m['mean_rgb']))
        return net


# ----------------------------------------------------------------------------------------------
# ArcFace IR-SE50, with the parameter names of the InsightFace PyTorch port that pSp, e4e and GOAE
# load `model_ir_se50.pth` into (input_layer.*, body.N.*, output_layer.*).


class _SE(nn.Module):
    """Squeeze-and-excitation: channel gates from the globally pooled map."""

    def __init__(self, channels, reduction=16):
        super().__init__()
        self.fc1 = nn.Conv2d(channels, channels // reduction, 1, bias=False)
        self.fc2 = nn.Conv2d(channels // reduction, channels, 1, bias=False)

    def forward(self, x):
        return x * torch.sigmoid(self.fc2(F.relu(self.fc1(x.mean(dim=(2, 3), keepdim=True)))))


class _IRSEUnit(nn.Module):
    """Improved-residual unit: BN, conv3x3, PReLU, conv3x3/stride, BN, SE, plus a shortcut
    (subsampling, or a strided 1x1 conv + BN when the width changes)."""

    def __init__(self, cin, cout, stride):
        super().__init__()
        if cin == cout:
            self.shortcut_layer = nn.MaxPool2d(1, stride)  # keeps every stride-th pixel
        else:
            self.shortcut_layer = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
        self.res_layer = nn.Sequential(
            nn.BatchNorm2d(cin), nn.Conv2d(cin, cout, 3, 1, 1, bias=False), nn.PReLU(cout),
            nn.Conv2d(cout, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), _SE(cout))

    def forward(self, x):
        return self.res_layer(x) + self.shortcut_layer(x)


class ArcFaceIRSE50(nn.Module):
    """ArcFace IR-SE50 for 112x112 inputs in [-1, 1] -> 512-d embeddings (not normalised here)."""

    input_size = 112
    STAGES = [(64, 3), (128, 4), (256, 14), (512, 3)]  # (width, units); each stage starts with stride 2

    def __init__(self):
        super().__init__()
        self.input_layer = nn.Sequential(nn.Conv2d(3, 64, 3, 1, 1, bias=False), nn.BatchNorm2d(64), nn.PReLU(64))
        units, cin = [], 64
        for width, count in self.STAGES:
            for i in range(count):
                units.append(_IRSEUnit(cin, width, 2 if i == 0 else 1))
                cin = width
        self.body = nn.Sequential(*units)
        self.output_layer = nn.Sequential(nn.BatchNorm2d(512), nn.Dropout(0.6), nn.Flatten(),
                                          nn.Linear(512 * 7 * 7, 512), nn.BatchNorm1d(512))

    def forward(self, x):
        return self.output_layer(self.body(self.input_layer(x)))


# ----------------------------------------------------------------------------------------------
# Where each network's input sits in an EG3D crop, as (left, top, side), fractions of the crop
# (continuous coordinates: 0 and 1 are the crop's outer edges).


def _dlib_region():
    """dlib's chip (get_face_chip, size 150, padding 0.25) of a face in EG3D's crop. Measured with
    dlib's get_face_chip_details on the landmarks of the astronaut's EG3D crop (plain, mirrored,
    rotated +-5 degrees before aligning: centre y 0.534-0.541, side 0.737-0.742 of the crop, chip
    roll under 8 degrees); centred in x, as EG3D's template is symmetric."""
    cy, side = 0.5374, 0.7449
    return 0.5 - side / 2, cy - side / 2, side


def _arcface_region():
    """pSp's ArcFace input: the 256-px FFHQ crop's [35:223, 32:220], mapped into EG3D's crop. The
    FFHQ square follows from EG3D's template points by FFHQ's alignment rule (centre: eye midpoint
    + 0.1 x eye-to-mouth; side: max(4 x eye distance, 3.6 x eye-to-mouth distance))."""
    t = template_positions(1.0)
    eyes, mouth = (t[0] + t[1]) / 2, (t[3] + t[4]) / 2
    eye_to_eye, eye_to_mouth = t[1] - t[0], mouth - eyes
    side = max(4 * np.hypot(*eye_to_eye), 3.6 * np.hypot(*eye_to_mouth))
    c = eyes + 0.1 * eye_to_mouth
    left, top = c[0] - side / 2 + side * 32 / 256, c[1] - side / 2 + side * 35 / 256
    return float(left), float(top), float(side * 188 / 256)


class FaceIdentity(nn.Module):
    """An identity network with its input crop: `embed` maps EG3D-style aligned face crops
    [N,3,H,W] in [-1, 1] to unit embeddings [N,D] (D = 128 for dlib, 512 for ArcFace),
    differentiably (an antialiased resize, then bilinear resampling of the fixed face region).

    The region does not follow the face's roll, which EG3D's crop keeps: against dlib's descriptor
    of the same crop (chipped from its landmarks, roll removed) the cosine is ~0.997 for an upright
    face, ~0.98 at 8 degrees of roll, ~0.94-0.98 for a three-quarter view."""

    def __init__(self, net, kind, region=None):
        super().__init__()
        self.net, self.kind = net, kind
        self.region = region or (_dlib_region() if kind == 'dlib' else _arcface_region())
        self.dim = 128 if kind == 'dlib' else 512

    def _to_net_input(self, x):
        """[-1, 1] images -> the network's value range (dlib: 0-255 RGB; ArcFace: [-1, 1])."""
        return (x + 1) * 127.5 if self.kind == 'dlib' else x

    def crop(self, x):
        """The network's input region of EG3D-style crops, resampled to its input size."""
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f'expected images [N,3,H,W], got {list(x.shape)}')
        left, top, side = self.region
        size = self.net.input_size
        # antialias first so that the region is ~size px: bilinear sampling alone would alias
        h, w = x.shape[2:]
        scale = size / (side * max(h, w))
        if scale < 1:
            x = F.interpolate(x, size=(max(1, round(h * scale)), max(1, round(w * scale))),
                              mode='bilinear', align_corners=False, antialias=True)
        theta = x.new_tensor([[side, 0, 2 * left + side - 1], [0, side, 2 * top + side - 1]])
        grid = F.affine_grid(theta.expand(x.shape[0], 2, 3), [x.shape[0], 3, size, size], align_corners=False)
        return F.grid_sample(x, grid, mode='bilinear', padding_mode='zeros', align_corners=False)

    def embed(self, x):
        """EG3D-style crops [N,3,H,W] in [-1, 1] -> unit embeddings [N,D]."""
        return F.normalize(self.net(self._to_net_input(self.crop(x))), dim=1)

    forward = embed

    def embed_chips(self, chips):
        """dlib only: uint8 face chips [N,150,150,3] (or one [150,150,3]) from get_face_chip ->
        unit embeddings [N,128] (dlib's compute_face_descriptor, normalised)."""
        if self.kind != 'dlib':
            raise ValueError('embed_chips needs the dlib network')
        c = torch.from_numpy(np.array(chips, dtype=np.uint8))  # a copy: dlib returns read-only arrays
        c = c[None] if c.ndim == 3 else c
        if c.shape[1:] != (150, 150, 3):
            raise ValueError(f'expected chips [N,150,150,3], got {list(c.shape)}')
        dev = self.net.mean_rgb.device
        return F.normalize(self.net(c.permute(0, 3, 1, 2).float().to(dev)), dim=1)


def identity_similarity(a, b):
    """Cosine similarity per sample of embeddings [N,D] x [N,D] -> [N]."""
    return F.cosine_similarity(a, b, dim=1)


def identity_loss(x, y, model=None):
    """Mean over the batch of 1 - cosine between the identities of images x and y ([N,3,H,W],
    [-1, 1], EG3D-style crops) under `model` (a FaceIdentity; by default dlib's network, loaded
    once per device); y is the target (no gradient)."""
    if model is None:
        model = _default_model(str(x.device))
    with torch.no_grad():
        ey = model.embed(y)
    return (1 - identity_similarity(model.embed(x), ey)).mean()


@functools.lru_cache(maxsize=None)
def _default_model(device):
    return load_face_identity('dlib', device)


def chip_from_landmarks(img_uint8, landmarks68, size=150, padding=0.25):
    """dlib's face chip (get_face_chip: similarity-aligned to dlib's mean face) of a uint8 RGB
    image [H,W,3] from 68 (or 5) landmarks [K,2] (x, y in pixels) -> uint8 [size,size,3]."""
    dlib = require_extra('align', 'dlib')
    pts = np.asarray(landmarks68, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != 2 or len(pts) not in (5, 68):
        raise UserError(f'landmarks68 must be [68, 2] or [5, 2] points, got {list(pts.shape)}')
    x0, y0 = pts.min(0)
    x1, y1 = pts.max(0)
    shape = dlib.full_object_detection(dlib.rectangle(int(x0), int(y0), int(x1), int(y1)),
                                       [dlib.point(int(round(x)), int(round(y))) for x, y in pts])
    img = np.ascontiguousarray(np.asarray(img_uint8, dtype=np.uint8))
    return np.asarray(dlib.get_face_chip(img, shape, size=size, padding=padding))


def load_face_identity(spec='dlib', device='cpu'):
    """An identity network in eval mode, its parameters frozen (gradients flow to the input only).

    spec: 'dlib' for dlib's face-recognition ResNet from the `face-recognition-models` package, or
    the path of an ArcFace IR-SE50 state dict (`model_ir_se50.pth`, as pSp/e4e/GOAE use).
    """
    if spec == 'dlib':
        path = model_path('recognition')  # UserError with the pip line when the extra is missing
        try:
            net = DlibFaceResNet.from_dat(path)
        except (ValueError, OSError) as e:
            raise UserError(f'cannot read dlib\'s face-recognition model {path}: {e}') from None
        kind = 'dlib'
    else:
        net, kind = _load_arcface(os.fspath(spec)), 'arcface'
    model = FaceIdentity(net, kind).to(device).eval()
    model.requires_grad_(False)
    return model


def _load_arcface(path):
    if not os.path.isfile(path):
        raise UserError(f"spec: no file {path} (use 'dlib' or the path of an ArcFace IR-SE50 state dict)")
    try:
        sd = torch.load(path, map_location='cpu', weights_only=True)
    except Exception as e:  # a corrupt file or a pickle of anything else
        first = (str(e).strip().splitlines() or [''])[0][:160]  # torch's messages run over many lines
        raise UserError(f'spec: {path} is not a readable PyTorch state dict ({type(e).__name__}: {first})') from None
    if isinstance(sd, dict) and isinstance(sd.get('state_dict'), dict):
        sd = sd['state_dict']  # training checkpoints wrap it
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise UserError(f'spec: {path} is not a state dict of tensors (expected ArcFace IR-SE50, model_ir_se50.pth)')
    net = ArcFaceIRSE50()
    want = net.state_dict()
    missing = [k for k in want if k not in sd]
    unexpected = [k for k in sd if k not in want]
    wrong = [f'{k} {list(sd[k].shape)} (expected {list(want[k].shape)})'
             for k in want if k in sd and sd[k].shape != want[k].shape]
    if missing or unexpected or wrong:
        parts = [f'{len(missing)} missing (e.g. {missing[0]})' if missing else '',
                 f'{len(unexpected)} unexpected (e.g. {unexpected[0]})' if unexpected else '',
                 f'{len(wrong)} of the wrong shape (e.g. {wrong[0]})' if wrong else '']
        raise UserError(f'spec: {path} is not an ArcFace IR-SE50 state dict: keys '
                        + ', '.join(p for p in parts if p))
    net.load_state_dict(sd)
    return net
