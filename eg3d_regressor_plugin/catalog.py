"""What the commands offer by name: generator presets, regressor architectures, optimisers,
conditioning poses, shape formats. Plain data, free of torch, so that `--help` and option
parsing stay fast; the library modules that implement each import its names from here."""

# Name -> configuration. `calibrated` presets get calibrate_init() (tuned on `tiny`, with its small z).
PRESETS = {
    'ffhq512': dict(res=512, sr='SuperresolutionHybrid8XDC', cbase=32768, cmax=512, nr_res=128, depth=(48, 48),
                    sr_fp16=4, z_dim=512, calibrated=False,
                    about='the released FFHQ-512 configuration (ffhq512-128.pkl): 512 px, neural rendering 128'),
    'ffhq256': dict(res=256, sr='SuperresolutionHybrid4X', cbase=32768, cmax=512, nr_res=64, depth=(48, 48),
                    sr_fp16=4, z_dim=512, calibrated=False,
                    about='the FFHQ configuration at 256 px, neural rendering 64'),
    'small': dict(res=256, sr='SuperresolutionHybrid4X', cbase=4096, cmax=128, nr_res=64, depth=(24, 24),
                  sr_fp16=0, z_dim=512, calibrated=False,
                  about='a laptop-sized 256 px generator, neural rendering 64'),
    'tiny': dict(res=128, sr='SuperresolutionHybrid2X', cbase=1024, cmax=64, nr_res=64, depth=(12, 12),
                 sr_fp16=0, z_dim=32, calibrated=True,
                 about='for tests and demos: 128 px, about 1.8 M parameters, z_dim 32, calibrated initialisation'),
}

# train-heads' defaults (heads_training.py): heads per step, Adam's rate, loss weights, snapshot interval,
# the rate's ramp-up (steps) when a run starts from a trained generator (--init).
HEADS_TRAINING = dict(batch=4, lr=3e-3, depth_weight=10.0, raw_weight=1.0, surface_weight=0.25, snapshot_every=50,
                      warmup=100)

ARCHS = ('vit', 'unet', 'psp')                  # training/networks.py
COND_POSES = ('random', 'same', 'frontal')      # training/data.py
OPTIMIZERS = ('adam', 'lbfgs')                  # optimize.py
SHAPE_FORMATS = ('.mrc', '.ply', '.obj', '.glb')  # meshes.py: a density volume, or a mesh
TUNE_COARSE = 0.5  # tuning.py: share of the tuning steps at half the neural rendering resolution (gen --tune-coarse)
