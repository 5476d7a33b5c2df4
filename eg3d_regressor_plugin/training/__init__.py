"""Regressor networks, their checkpoints, synthetic training data, loss and training loop.

    networks.py        the regressors (ViT, UNet, pSp-style), resize_input, count_params
    checkpoint.py      checkpoint files, w normalisation, RNG state, Predictor
    data.py            synthetic pairs: PairSampler, w statistics, the dataset zip (PairDataset)
    dataset_writer.py  rendering a dataset zip, resumable (ShardStore, which `label` writes through too)
    real_data.py       real image sets (EG3D zip, label zip, photos aligned in worker processes)
    sources.py         the batch of a training step: rendered with reuse, from a dataset zip, real
                       images, or synthetic and real mixed (`train --real`)
    loss.py            RegressorLoss
    real_loss.py       the loss on real images (image, LPIPS, identity, pseudo-labels, delta
                       regularisation) and of a mixed batch
    real_style.py      synthetic pairs styled like the real images (their backgrounds, crop
                       jitter, blur, noise, JPEG), labels kept
    validation.py      held-out metrics and the validation grid
    distributed.py     DDP helpers: process group, means over ranks, weight digests
    console.py         the stdout Tee into log.txt, format_time
    training_loop.py   the loop
    launch.py          run folders, snapshots and resume; the processes that run the loop

Named like EG3D's own ``training`` package, but always imported as
``eg3d_regressor_plugin.training``, so the two never shadow each other.
"""
