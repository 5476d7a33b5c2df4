"""Regressor networks, their checkpoints, synthetic training data, loss and training loop.

    networks.py        the regressors (ViT, UNet, pSp-style), resize_input, count_params
    checkpoint.py      checkpoint files, w normalisation, RNG state, Predictor
    data.py            synthetic pairs: PairSampler, w statistics, the dataset zip (PairDataset)
    dataset_writer.py  rendering a dataset zip, resumable, in worker processes
    sources.py         the batch of a training step: rendered with reuse, or from a dataset zip
    loss.py            RegressorLoss
    validation.py      held-out metrics and the validation grid
    distributed.py     DDP helpers: process group, means over ranks, weight digests
    console.py         the stdout Tee into log.txt, format_time
    training_loop.py   the loop
    launch.py          run folders, snapshots and resume; the processes that run the loop

Named like EG3D's own ``training`` package, but always imported as
``eg3d_regressor_plugin.training``, so the two never shadow each other.
"""
