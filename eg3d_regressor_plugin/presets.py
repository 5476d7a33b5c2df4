"""Randomly initialised EG3D generators in EG3D's own snapshot format: the presets of
`init-network` (no pretrained weights can be downloaded where this project is built)."""

import copy
import pickle

import torch

from . import bridge, cameras
from .catalog import PRESETS
from .errors import UserError
from .files import atomic_path


def _rendering_kwargs(image_resolution, sr_module, depth, depth_importance):
    # Keys and values as EG3D's train.py builds them for --cfg=ffhq --gen_pose_cond=True.
    return dict(image_resolution=image_resolution, disparity_space_sampling=False, clamp_mode='softplus',
                superresolution_module=f'training.superresolution.{sr_module}', c_gen_conditioning_zero=False,
                gpc_reg_prob=0.5, c_scale=1.0, superresolution_noise_mode='none', density_reg=0.25,
                density_reg_p_dist=0.004, reg_type='l1', decoder_lr_mul=1.0, sr_antialias=True,
                depth_resolution=depth, depth_resolution_importance=depth_importance, ray_start=2.25,
                ray_end=3.3, box_warp=1, avg_camera_radius=2.7, avg_camera_pivot=[0, 0, 0.2])


# EG3D's own initialisation renders largely clamped (black or white) frames that respond to w
# chaotically: a regressor learns next to nothing from them. A trained generator renders opaque
# surfaces and, thanks to path-length regularisation, responds smoothly to w; the calibrated
# preset imitates both:
STYLE_GAIN = 0.2    # every modulation's affine (backbone and super-resolution) scaled by this
DENSITY_BIAS = 4.0  # added to the decoder's raw density: surfaces become opaque


def calibrate_init(G, style_gain=STYLE_GAIN, density_bias=DENSITY_BIAS):
    """Rescale a freshly initialised EG3D generator in place (see STYLE_GAIN, DENSITY_BIAS); its
    parameter shapes and classes are unchanged, so EG3D loads and trains it as any other."""
    with torch.no_grad():
        for name, module in G.named_modules():
            if name.rsplit('.', 1)[-1] == 'affine':
                module.weight.mul_(style_gain)
        last = G.decoder.net[-1]  # FullyConnectedLayer; output 0 is the density
        last.bias[0] += density_bias / last.bias_gain
    return G


def build_networks(preset='tiny', seed=0, w_avg_samples=10000):
    """(G, D) built from EG3D's own classes with the preset's configuration. w_avg, which EG3D
    tracks during training, is set to the mean of mapped z so that truncation works."""
    bridge.import_eg3d()
    import dnnlib
    if preset not in PRESETS:
        raise UserError(f'unknown preset {preset!r}; choose from {", ".join(PRESETS)}')
    p = dnnlib.EasyDict(PRESETS[preset])
    torch.manual_seed(seed)
    common = dict(c_dim=25, img_resolution=p.res, img_channels=3)
    G_kwargs = dnnlib.EasyDict(
        class_name='training.triplane.TriPlaneGenerator', z_dim=p.z_dim, w_dim=512,
        mapping_kwargs=dnnlib.EasyDict(num_layers=2), channel_base=p.cbase, channel_max=p.cmax,
        fused_modconv_default='inference_only', rendering_kwargs=_rendering_kwargs(p.res, p.sr, *p.depth),
        num_fp16_res=0, conv_clamp=None, sr_num_fp16_res=p.sr_fp16,
        sr_kwargs=dnnlib.EasyDict(channel_base=p.cbase, channel_max=p.cmax, fused_modconv_default='inference_only'))
    D_kwargs = dnnlib.EasyDict(
        class_name='training.dual_discriminator.DualDiscriminator', block_kwargs=dnnlib.EasyDict(freeze_layers=0),
        mapping_kwargs=dnnlib.EasyDict(), epilogue_kwargs=dnnlib.EasyDict(mbstd_group_size=4),
        channel_base=p.cbase, channel_max=p.cmax, num_fp16_res=4, conv_clamp=256, disc_c_noise=0)
    G = dnnlib.util.construct_class_by_name(**G_kwargs, **common).eval().requires_grad_(False)
    D = dnnlib.util.construct_class_by_name(**D_kwargs, **common).eval().requires_grad_(False)
    G.neural_rendering_resolution = p.nr_res
    if p.calibrated:
        calibrate_init(G)
    if w_avg_samples:
        gen = torch.Generator().manual_seed(seed)
        z = torch.randn([w_avg_samples, G.z_dim], generator=gen)
        c = cameras.frontal_label(len(z))
        with torch.no_grad():
            w = torch.cat([G.backbone.mapping.forward(z[i:i + 1000], c[i:i + 1000] * G.rendering_kwargs['c_scale'],
                                                      truncation_psi=1) for i in range(0, len(z), 1000)])
        G.backbone.mapping.w_avg.copy_(w[:, 0].mean(0))
    return G, D


def preset_of(G):
    """The name of the preset whose configuration built generator G (matched on EG3D's init_kwargs:
    image resolution, channel base and max, z_dim and super-resolution module), or None."""
    kw = getattr(G, 'init_kwargs', None) or {}
    sr = (getattr(G, 'rendering_kwargs', None) or kw.get('rendering_kwargs') or {}).get('superresolution_module')
    for name, p in PRESETS.items():
        if (kw.get('img_resolution'), kw.get('channel_base'), kw.get('channel_max'), kw.get('z_dim'), sr) == \
                (p['res'], p['cbase'], p['cmax'], p['z_dim'], f'training.superresolution.{p["sr"]}'):
            return name
    return None


def save_network_pkl(path, G, D, training_set_kwargs=None):
    """Write an EG3D snapshot (G, D, G_ema, augment_pipe, training_set_kwargs) atomically; EG3D's
    legacy.load_network_pkl requires all of G, D and G_ema."""
    snapshot = dict(training_set_kwargs=training_set_kwargs, augment_pipe=None)
    for name, module in [('G', G), ('D', D), ('G_ema', G)]:
        snapshot[name] = copy.deepcopy(module).eval().requires_grad_(False).cpu()
    with atomic_path(path) as tmp:
        with open(tmp, 'wb') as f:
            pickle.dump(snapshot, f)

