"""Procedural 3D heads with known truth, rendered the way EG3D renders.

A head is a signed distance function (SDF) in EG3D's world coordinates, built from a few
primitives: a skull ellipsoid, a jaw, a neck, a nose, two eyes (with iris and pupil), lips on a
curved mouth line (the smile), two ears, eyebrows and a hair cap. Its shape and colours are set by
the named parameters of PARAM_NAMES; `params_from_z` maps an EG3D latent z to them by a fixed rule
(see there), so every z has a known head, and `head_params` gives the truth of a z.

Placement follows EG3D's FFHQ set-up: world y is up, the frontal camera sits at radius 2.7 on +z
looking at the pivot (0, 0, 0.2); the head is centred near the origin inside the tri-plane box
[-0.5, 0.5]^3 with the tip of the nose near z = 0.35, so that at FFHQ's focal length the face
fills the frame like an FFHQ crop (chin to hairline, some hair, neck and background around).

`render_heads(params, c)` volume-renders heads for EG3D camera labels c [N, 25]: rays come from
EG3D's own RaySampler, samples lie between ray_start 2.25 and ray_end 3.3 like EG3D's, density is
a sharp sigmoid of the SDF, and colour and *expected ray distance* (EG3D's depth: the composite of
sample depths normalised by the accumulated weight) are composited. Colour is shaded once per
ray at the composited surface point (Lambert from a fixed world light). `surface_depth` sphere-
traces the SDF for the analytic hit distance, against which the volume depth is tested.
"""

import math

import numpy as np
import torch

from . import bridge
from .errors import UserError

RAY_START, RAY_END = 2.25, 3.3  # EG3D's FFHQ ray range (rendering_kwargs ray_start/ray_end)

# name -> (low, high): the range params_from_z maps each z component into. World units for sizes.
PARAM_RANGES = {
    # shape
    'head_width': (0.165, 0.205),     # skull half-width (x)
    'head_height': (0.23, 0.27),      # skull half-height (y)
    'head_depth': (0.21, 0.245),      # skull half-depth (z)
    'jaw_width': (0.115, 0.16),       # half-width of the jaw/cheeks
    'chin_length': (0.11, 0.16),      # half-height of the jaw (how far down the chin reaches)
    'nose_length': (0.04, 0.09),      # how far the nose sticks out of the face
    'nose_width': (0.022, 0.04),      # half-width of the nose
    'eye_spacing': (0.13, 0.18),      # distance between the eye centres
    'eye_size': (0.021, 0.03),        # eyeball radius
    'eye_height': (0.02, 0.06),       # y of the eye centres
    'mouth_width': (0.07, 0.13),      # mouth corner to corner
    'mouth_height': (-0.135, -0.105), # y of the mouth centre
    'smile': (-3.0, 6.0),             # mouth-line curvature: y offset = smile * x^2 (>0: corners up)
    'lip_thickness': (0.008, 0.018),  # half-height of each lip
    'ear_size': (0.045, 0.07),        # ear half-height
    'hair_volume': (0.012, 0.05),    # hair cap thickness over the skull
    'hairline': (0.11, 0.19),         # y of the hairline at the forehead
    'brow_height': (0.035, 0.06),     # eyebrows above the eye centres
    # colour (0..1 blends between palettes, see _colours)
    'skin_tone': (0.0, 1.0),          # light .. dark skin
    'skin_redness': (0.0, 1.0),
    'hair_lightness': (0.0, 1.0),     # black .. blond
    'hair_redness': (0.0, 1.0),       # neutral .. red/auburn
    'eye_colour': (0.0, 1.0),         # brown .. blue iris
    'lip_redness': (0.0, 1.0),
    'bg_lightness': (0.0, 1.0),       # background grey level
    'bg_hue': (0.0, 1.0),             # background hue (tint strength fixed)
}
PARAM_NAMES = list(PARAM_RANGES)
NUM_PARAMS = len(PARAM_NAMES)


def params_from_z(z):
    """The fixed mapping z [N, z_dim] -> head parameters: {name: tensor [N]}.

    Parameter i (in PARAM_NAMES order) is low + Phi(z[:, i]) * (high - low), with Phi the standard
    normal CDF: for z ~ N(0, I) each parameter is uniform on its PARAM_RANGES interval and the
    parameters are independent. Components of z past NUM_PARAMS are unused. Deterministic; needs
    z_dim >= NUM_PARAMS."""
    z = torch.as_tensor(z, dtype=torch.float32)
    if z.ndim != 2 or z.shape[1] < NUM_PARAMS:
        raise UserError(f'z: expected shape [N, z_dim] with z_dim >= {NUM_PARAMS} (one component per head '
                        f'parameter), got {list(z.shape)}')
    u = 0.5 * (1 + torch.erf(z[:, :NUM_PARAMS] / math.sqrt(2)))
    return {name: (lo + u[:, i] * (hi - lo)).clamp(lo, hi) for i, (name, (lo, hi)) in enumerate(PARAM_RANGES.items())}


def head_params(z):
    """The true head parameters of latent codes z [N, z_dim]: {name: tensor [N]} (params_from_z)."""
    return params_from_z(z)


def seed_scores(seeds, z_dim, name):
    """The true value of head parameter `name` for the codes of `seeds` as sample-codes draws
    them (codes.seed_z): float [len(seeds)], in PARAM_RANGES[name] units."""
    from .codes import seed_z
    if name not in PARAM_RANGES:
        raise UserError(f'unknown head parameter {name!r}; choose from {", ".join(PARAM_NAMES)}')
    z = torch.from_numpy(np.concatenate([seed_z(s, z_dim) for s in seeds]))
    return params_from_z(z)[name].numpy().astype(np.float64)


def params_to_tensor(params):
    """{name: [N]} -> [N, NUM_PARAMS] in PARAM_NAMES order."""
    return torch.stack([torch.as_tensor(params[n], dtype=torch.float32) for n in PARAM_NAMES], dim=1)


def normalized_params(params):
    """Parameters scaled to [0, 1] by their ranges ([N, NUM_PARAMS]): attribute scores."""
    t = params_to_tensor(params)
    lo = torch.tensor([PARAM_RANGES[n][0] for n in PARAM_NAMES])
    hi = torch.tensor([PARAM_RANGES[n][1] for n in PARAM_NAMES])
    return (t - lo) / (hi - lo)


def default_params(n=1):
    """Every parameter at the middle of its range."""
    return {name: torch.full((n,), (lo + hi) / 2) for name, (lo, hi) in PARAM_RANGES.items()}

#----------------------------------------------------------------------------
# Signed distances. Points p [N, M, 3]; per-head parameters [N] broadcast as [N, 1].

def _ellipsoid(p, center, radii):
    """Approximate SDF of an axis-aligned ellipsoid (exact on the surface; a good bound nearby)."""
    q = (p - center) / radii
    k0 = q.norm(dim=-1)
    k1 = (q / radii).norm(dim=-1).clamp_min(1e-8)
    return k0 * (k0 - 1) / k1


def _smin(a, b, k):
    h = (k - (a - b).abs()).clamp_min(0)
    return torch.minimum(a, b) - h * h / (4 * k)


def _vec(*xs):
    """[N, 1, 3] from per-head [N] tensors or floats."""
    n = max(x.shape[0] for x in xs if torch.is_tensor(x))
    cols = [x if torch.is_tensor(x) else torch.full((n,), float(x)) for x in xs]
    dev = next(x.device for x in xs if torch.is_tensor(x))
    return torch.stack([c.to(dev) for c in cols], -1)[:, None, :]


def _layout(P):
    """Derived positions ([N] tensors) shared by the SDF and the colours."""
    L = {}
    L['skull_c'] = _vec(P['head_width'] * 0, P['head_width'] * 0 + 0.04, P['head_width'] * 0 - 0.01)
    L['skull_r'] = _vec(P['head_width'], P['head_height'], P['head_depth'])
    L['jaw_c'] = _vec(P['jaw_width'] * 0, -0.07 - 0.5 * (P['chin_length'] - 0.11), P['jaw_width'] * 0 + 0.035)
    L['jaw_r'] = _vec(P['jaw_width'], P['chin_length'], P['head_depth'] * 0.82)
    # The face front at (x, y): the nearer of the skull and jaw ellipsoids' fronts.
    def front_z(x, y):
        def on(cx, cy, cz, rx, ry, rz):
            s = (1 - ((x - cx) / rx) ** 2 - ((y - cy) / ry) ** 2).clamp_min(0.0)
            return torch.where(s > 0, cz + rz * s.sqrt(), torch.full_like(s, -1.0))
        skull = on(0, 0.04, -0.01, P['head_width'], P['head_height'], P['head_depth'])
        jaw = on(0, L['jaw_c'][:, 0, 1], L['jaw_c'][:, 0, 2], P['jaw_width'], P['chin_length'], P['head_depth'] * 0.82)
        return torch.maximum(skull, jaw)
    L['front_z'] = front_z
    ex, ey = P['eye_spacing'] / 2, P['eye_height']
    ez = front_z(ex, ey) - 0.55 * P['eye_size']
    L['eye_l'] = _vec(-ex, ey, ez)
    L['eye_r'] = _vec(ex, ey, ez)
    nose_base_z = front_z(P['nose_width'] * 0, P['nose_width'] * 0 - 0.03)
    L['nose_c'] = _vec(P['nose_width'] * 0, P['nose_width'] * 0 - 0.025, nose_base_z - 0.02)
    L['nose_r'] = _vec(P['nose_width'], P['nose_width'] * 0 + 0.065, P['nose_length'] + 0.02)
    my = P['mouth_height']
    L['mouth_y'] = my
    L['mouth_z'] = front_z(P['mouth_width'] * 0, my) + 0.004
    L['ear_l'] = _vec(-P['head_width'] + 0.005, P['head_width'] * 0 + 0.01, P['head_width'] * 0 - 0.02)
    L['ear_r'] = _vec(P['head_width'] - 0.005, P['head_width'] * 0 + 0.01, P['head_width'] * 0 - 0.02)
    L['ear_rad'] = _vec(P['ear_size'] * 0 + 0.022, P['ear_size'], P['ear_size'] * 0.6)
    hv = P['hair_volume']
    L['hair_c'] = _vec(hv * 0, 0.04 + 0.4 * hv, hv * 0 - 0.02)
    L['hair_r'] = _vec(P['head_width'] + hv, P['head_height'] + hv, P['head_depth'] + hv)
    return L


def _col(x):
    return x[:, None]


def _parts(p, P, L):
    """Signed distances [N, M] of the parts: skin, eyes, lips, hair."""
    skull = _ellipsoid(p, L['skull_c'], L['skull_r'])
    jaw = _ellipsoid(p, L['jaw_c'], L['jaw_r'])
    skin = _smin(skull, jaw, 0.05)
    # Neck: a vertical cylinder below the head, cut at y = -0.45.
    q = p - torch.tensor([0.0, 0.0, -0.03], device=p.device)
    neck = torch.maximum(q[..., [0, 2]].norm(dim=-1) - 0.095, (q[..., 1] + 0.2).abs() - 0.25)
    skin = _smin(skin, neck, 0.04)
    skin = _smin(skin, _ellipsoid(p, L['nose_c'], L['nose_r']), 0.025)
    ears = torch.minimum(_ellipsoid(p, L['ear_l'], L['ear_rad']), _ellipsoid(p, L['ear_r'], L['ear_rad']))
    skin = _smin(skin, ears, 0.015)
    eyes = torch.minimum((p - L['eye_l']).norm(dim=-1), (p - L['eye_r']).norm(dim=-1)) - _col(P['eye_size'])
    # Lips: a flat ellipsoid on the mouth line y = mouth_y + smile * x^2 (domain-warped).
    pw = p.clone()
    pw[..., 1] = p[..., 1] - _col(P['smile']) * p[..., 0] ** 2
    lip_c = _vec(P['mouth_width'] * 0, L['mouth_y'], L['mouth_z'] - 0.022)
    lip_r = _vec(P['mouth_width'] / 2, P['lip_thickness'] * 2, P['mouth_width'] * 0 + 0.03)
    lips = _ellipsoid(pw, lip_c, lip_r)
    # Hair: a shell over the skull above a hairline plane that slopes down towards the back.
    cap = _ellipsoid(p, L['hair_c'], L['hair_r'])
    plane = (_col(P['hairline']) + 0.9 * (p[..., 2] - 0.15) - p[..., 1]) / math.sqrt(1 + 0.81)
    hair = torch.maximum(cap, plane)
    return skin, eyes, lips, hair


def sdf(p, params):
    """Signed distance [N, M] of points p [N, M, 3] (world units) to heads with `params` ({name: [N]})."""
    L = _layout(params)
    skin, eyes, lips, hair = _parts(p, params, L)
    return torch.minimum(torch.minimum(skin, lips), torch.minimum(eyes, hair))

def surface_error(vertices, params):
    """Mean |signed distance| (world units) of mesh vertices [V,3] (EG3D's world frame, as
    meshes.mesh_from_density gives them) to the true surface of one head (`params`: {name: [1]})."""
    v = torch.as_tensor(np.asarray(vertices, dtype=np.float32))[None]
    return float(sdf(v, params)[0].abs().mean())

#----------------------------------------------------------------------------
# Colours.

def _lerp(a, b, t):
    a = torch.as_tensor(a, dtype=torch.float32, device=t.device)
    b = torch.as_tensor(b, dtype=torch.float32, device=t.device)
    return a + (b - a) * t[..., None]


def _colours(P):
    """Per-head albedos [N, 3] in [0, 1]."""
    c = {}
    skin = _lerp([0.96, 0.80, 0.69], [0.42, 0.27, 0.18], P['skin_tone'])
    c['skin'] = (skin + _lerp([0.0, 0.0, 0.0], [0.06, -0.04, -0.04], P['skin_redness'])).clamp(0, 1)
    hair = _lerp([0.08, 0.06, 0.05], [0.85, 0.72, 0.45], P['hair_lightness'])
    c['hair'] = (hair + _lerp([0.0, 0.0, 0.0], [0.25, -0.05, -0.1], P['hair_redness'])).clamp(0, 1)
    c['iris'] = _lerp([0.35, 0.2, 0.1], [0.25, 0.5, 0.8], P['eye_colour'])
    c['lips'] = _lerp([0.72, 0.48, 0.45], [0.8, 0.15, 0.2], P['lip_redness'])
    grey = _lerp([0.15, 0.15, 0.15], [0.9, 0.9, 0.9], P['bg_lightness'])
    h = P['bg_hue'][:, None] * 2 * math.pi + torch.tensor([0.0, 2.094, 4.189], device=grey.device)
    c['bg'] = (grey + 0.12 * torch.cos(h)).clamp(0, 1)
    return c


def _albedo(p, P, L, C, features=True):
    """Albedo [N, M, 3] at (surface) points p [N, M, 3]; features=False paints the eyes, lips,
    eyebrows and mouth line in the skin colour (the shape is unchanged)."""
    skin, eyes, lips, hair = _parts(p, P, L)
    d = torch.stack([skin, eyes, lips, hair], -1)
    wts = torch.softmax(-d / 0.003, dim=-1)  # [N, M, 4]
    if not features:
        s = C['skin'][:, None].expand(p.shape[:-1] + (3,))
        return wts[..., :3].sum(-1, keepdim=True) * s + wts[..., 3:4] * C['hair'][:, None]
    # Eyes: white sclera, iris and pupil around the gaze direction +z.
    v_l, v_r = p - L['eye_l'], p - L['eye_r']
    v = torch.where((v_l.norm(dim=-1) < v_r.norm(dim=-1))[..., None], v_l, v_r)
    cosg = v[..., 2] / v.norm(dim=-1).clamp_min(1e-6)
    white = torch.tensor([0.93, 0.93, 0.9], device=p.device)
    iris_t = torch.sigmoid((cosg - 0.85) / 0.01)[..., None]
    pupil_t = torch.sigmoid((cosg - 0.955) / 0.006)[..., None]
    eye = white + (C['iris'][:, None] - white) * iris_t
    eye = eye * (1 - pupil_t) + 0.03 * pupil_t
    # Skin with eyebrows (hair colour) and the dark mouth line drawn on it.
    s = C['skin'][:, None].expand(p.shape[:-1] + (3,))
    by = L['eye_l'][..., 1] + _col(P['brow_height'])
    bx = p[..., 0].abs() - _col(P['eye_spacing']) / 2
    brow = torch.sigmoid((1 - ((bx / 0.04) ** 2 + ((p[..., 1] - by) / 0.011) ** 2)) / 0.15)
    brow = brow * (p[..., 2] > 0.05).float()
    s = s + (C['hair'][:, None] * 0.7 - s) * brow[..., None]
    lip = C['lips'][:, None].expand_as(s)
    yline = p[..., 1] - _col(P['smile']) * p[..., 0] ** 2 - _col(L['mouth_y'])
    line = torch.sigmoid((0.0035 - yline.abs()) / 0.001) * (p[..., 0].abs() < _col(P['mouth_width']) * 0.47).float()
    lip = lip * (1 - 0.8 * line[..., None])
    hair_c = C['hair'][:, None].expand_as(s)
    return wts[..., 0:1] * s + wts[..., 1:2] * eye + wts[..., 2:3] * lip + wts[..., 3:4] * hair_c


LIGHT = (0.35, 0.55, 1.0)  # world direction towards the light (front, above, a little to +x)


def _normals(p, P, eps=1e-3):
    """Unit SDF gradients at p [N, M, 3] (tetrahedral finite differences)."""
    k = torch.tensor([[1, -1, -1], [-1, -1, 1], [-1, 1, -1], [1, 1, 1]], dtype=p.dtype, device=p.device)
    n = sum(k[i] * sdf(p + eps * k[i], P)[..., None] for i in range(4))
    return torch.nn.functional.normalize(n, dim=-1)


def _shade(p, P, L, C, features=True):
    albedo = _albedo(p, P, L, C, features)
    n = _normals(p, P)
    light = torch.nn.functional.normalize(torch.tensor(LIGHT, device=p.device), dim=0)
    lam = (n * light).sum(-1, keepdim=True).clamp_min(0)
    return (albedo * (0.38 + 0.72 * lam)).clamp(0, 1)


PARTS = ('skin', 'eyes', 'lips', 'hair')  # the order of point_truth's `part`
FEATURES = ('eyes', 'lips')  # the small parts a generator learns last


def is_feature(part):
    """Bool tensor: which of point_truth's `part` indices are FEATURES."""
    return torch.stack([part == PARTS.index(n) for n in FEATURES]).any(0)


@torch.no_grad()
def point_truth(p, params):
    """The truth at 3D points p [N, M, 3] of heads `params` ({name: [N]}): dict(sdf [N, M],
    part [N, M] (the index in PARTS of the nearest part), surface [N, M, 3] (p moved onto the
    surface along the SDF gradient) and colour [N, M, 3] in [0, 1] (the shaded colour there: the
    colour render_heads gives a ray that hits that point; it does not depend on the view))."""
    P = _as_params(params, p.shape[0], p.device)
    L, C = _layout(P), _colours(P)
    d = sdf(p, P)
    surf = p - d[..., None] * _normals(p, P)
    part = torch.stack(_parts(surf, P, L), -1).argmin(-1)
    return dict(sdf=d, part=part, surface=surf, colour=_shade(surf, P, L, C))

#----------------------------------------------------------------------------
# Rays and rendering.

def rays(c, resolution):
    """Ray origins and unit directions [N, resolution^2, 3] of EG3D camera labels c [N, 25], from
    EG3D's own RaySampler (row-major pixels, as G.synthesis reshapes them)."""
    bridge.import_eg3d()
    from training.volumetric_rendering.ray_sampler import RaySampler
    c = torch.as_tensor(c, dtype=torch.float32).reshape(-1, 25)
    return RaySampler()(c[:, :16].view(-1, 4, 4), c[:, 16:25].view(-1, 3, 3), resolution)


def _to_image(x, res):
    """[N, res^2, C] -> [N, C, res, res] (as EG3D's G.synthesis does)."""
    return x.permute(0, 2, 1).reshape(x.shape[0], x.shape[2], res, res)


def _as_params(params, n, device):
    out = {}
    for name in PARAM_NAMES:
        if name not in params:
            raise UserError(f'head parameters: missing {name!r}')
        v = torch.as_tensor(params[name], dtype=torch.float32, device=device).reshape(-1)
        out[name] = v.expand(n) if len(v) == 1 else v
        if len(out[name]) != n:
            raise UserError(f'head parameters: {name!r} has {len(v)} values for {n} cameras')
    return out


def _sample_depths(o, d, P, n_samples, hierarchical):
    """Sample distances [N, m, S] along rays o, d [N, m, 3], and their spacing [N, m, 1].

    Uniform: n_samples midpoints evenly over [RAY_START, RAY_END]. Hierarchical: n_samples // 2
    coarse midpoints locate the first coarse sample inside the head (else the one nearest to it),
    and the other half lie evenly in a window from just before the coarse interval that holds
    the surface to just after it; the empty space in front of the window carries no density."""
    n, m = o.shape[:2]
    full = torch.arange(n_samples, device=o.device, dtype=torch.float32)
    if not hierarchical:
        step = (RAY_END - RAY_START) / n_samples
        t = (RAY_START + (full + 0.5) * step).expand(n, m, n_samples)
        return t, torch.full((n, m, 1), step, device=o.device)
    n_coarse = max(n_samples // 2, 2)
    n_fine = max(n_samples - n_coarse, 2)
    step = (RAY_END - RAY_START) / n_coarse
    tc = RAY_START + (full[:n_coarse] + 0.5) * step
    dist = sdf((o[:, :, None] + d[:, :, None] * tc[:, None]).reshape(n, -1, 3), P).reshape(n, m, n_coarse)
    inside = dist < 0
    first = torch.where(inside.any(-1), inside.float().argmax(-1), dist.argmin(-1))  # [N, m]
    lo = (tc[first] - step - 0.02).clamp_min(RAY_START)
    hi = (tc[first] + 0.005).clamp_max(RAY_END)
    fine_step = (hi - lo) / n_fine
    t = lo[..., None] + (full[:n_fine] + 0.5) * fine_step[..., None]
    return t, fine_step[..., None]


def render_heads(params, c, resolution=128, n_samples=96, hierarchical=False, sharpness=0.004, sigma_max=400.0,
                 chunk=4096, features=True):
    """Volume-render heads ({name: [N]}, or [1] broadcast) from EG3D camera labels c [N, 25].

    Samples: n_samples midpoints evenly between RAY_START and RAY_END (or, hierarchical, half
    of them coarse and half in a window around the surface: about twice as fast for the same
    accuracy; see _sample_depths); density sigma_max * sigmoid(-sdf / sharpness); EG3D's
    compositing (alpha = 1 - exp(-sigma delta)). features=False paints the eyes, lips and eyebrows
    in the skin colour (the baseline of feature_mask's pixels). Returns dict(image [N,3,R,R] in [-1,1] over the
    background colour, depth [N,1,R,R] (EG3D's depth: the weight-normalised expected ray distance,
    RAY_END where nothing is hit), alpha [N,1,R,R] (accumulated opacity)). Rays are processed
    `chunk` at a time, without gradients."""
    c = torch.as_tensor(c, dtype=torch.float32).reshape(-1, 25)
    n, device = len(c), c.device
    P = _as_params(params, n, device)
    L, C = _layout(P), _colours(P)
    origins, dirs = rays(c, resolution)
    rgb, depth, alpha = [], [], []
    with torch.no_grad():
        for s in range(0, origins.shape[1], chunk):
            o, d = origins[:, s:s + chunk], dirs[:, s:s + chunk]
            t, delta = _sample_depths(o, d, P, n_samples, hierarchical)
            pts = o[:, :, None] + d[:, :, None] * t[..., None]  # [N, m, S, 3]
            dist = sdf(pts.reshape(n, -1, 3), P).reshape(t.shape)
            sigma = sigma_max * torch.sigmoid(-dist / sharpness)
            a = 1 - torch.exp(-sigma * delta)
            trans = torch.cumprod(torch.cat([torch.ones_like(a[..., :1]), 1 - a + 1e-10], -1), -1)[..., :-1]
            w = a * trans
            acc = w.sum(-1)
            dep = (w * t).sum(-1) / acc.clamp_min(1e-8)
            dep = torch.where(acc > 1e-4, dep, torch.full_like(dep, RAY_END)).clamp(RAY_START, RAY_END)
            surf = o + d * dep[..., None]
            col = _shade(surf, P, L, C, features)
            rgb.append(col * acc[..., None] + C['bg'][:, None] * (1 - acc[..., None]))
            depth.append(dep[..., None])
            alpha.append(acc[..., None])
    img = _to_image(torch.cat(rgb, 1), resolution) * 2 - 1
    return dict(image=img, depth=_to_image(torch.cat(depth, 1), resolution),
                alpha=_to_image(torch.cat(alpha, 1), resolution))


def feature_mask(params, c, render):
    """Bool [N,1,R,R]: the pixels of `render` (render_heads' output for heads `params` at cameras
    c) that the eyes or lips cover entirely."""
    n, _, res, _ = render['depth'].shape
    o, d = rays(c, res)
    part = point_truth(o + d * render['depth'].reshape(n, -1, 1), params)['part']
    return is_feature(part).reshape(n, 1, res, res) & (render['alpha'] > 0.98)


def surface_depth(params, c, resolution=64, steps=96, step_scale=0.7, eps=1e-4):
    """Analytic surface-hit distance [N,1,R,R] by sphere tracing the SDF from RAY_START (RAY_END
    where the ray misses), for checking the volume-rendered depth."""
    c = torch.as_tensor(c, dtype=torch.float32).reshape(-1, 25)
    n = len(c)
    P = _as_params(params, n, c.device)
    origins, dirs = rays(c, resolution)
    t = torch.full(origins.shape[:2], RAY_START, device=c.device)
    hit = torch.zeros_like(t, dtype=torch.bool)
    with torch.no_grad():
        for _ in range(steps):
            d = sdf(origins + dirs * t[..., None], P)
            hit |= d < eps
            t = torch.where(hit, t, t + step_scale * d.clamp_min(eps))
        t = torch.where(hit & (t < RAY_END), t, torch.full_like(t, RAY_END))
    return _to_image(t[..., None], resolution)


def fit_param(image, params, name, c, grid=9, resolution=None, **render_kwargs):
    """Read head parameter `name` off an image: the value, over `grid` values spanning its
    PARAM_RANGES interval (refined by a parabola through the best three), whose render of the head
    `params` ({name: [1]} or [1]-broadcastable; `name`'s own value is ignored) at camera c [1,25]
    is nearest to `image` (uint8 [R,R,3] or [1,3,R,R] in [-1,1]) in mean squared error. A
    measurement for renders of a generator that learnt these heads: how far an edit moved the
    attribute, with every other parameter held at the head's truth. Returns a float."""
    if name not in PARAM_RANGES:
        raise UserError(f'unknown head parameter {name!r}; choose from {", ".join(PARAM_NAMES)}')
    x = torch.as_tensor(image)
    if x.ndim == 3:  # uint8 HWC
        x = x.permute(2, 0, 1)[None].float() / 127.5 - 1
    res = resolution or x.shape[-1]
    lo, hi = PARAM_RANGES[name]
    values = torch.linspace(lo, hi, grid)
    base = {k: torch.as_tensor(v, dtype=torch.float32).reshape(-1)[:1] for k, v in params.items()}
    errs = []
    for v in values:
        p = dict(base, **{name: v.reshape(1)})
        img = render_heads(p, c, resolution=res, **render_kwargs)['image']
        errs.append(float((img - x).square().mean()))
    i = int(np.argmin(errs))
    if 0 < i < grid - 1:  # the vertex of the parabola through the best three
        e0, e1, e2 = errs[i - 1], errs[i], errs[i + 1]
        den = e0 - 2 * e1 + e2
        shift = 0.5 * (e0 - e2) / den if den > 0 else 0.0
        return float(values[i] + shift * (values[1] - values[0]))
    return float(values[i])
