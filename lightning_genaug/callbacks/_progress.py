"""Training progress as the callbacks report it: one image counter for every logged ``kimg``."""

from __future__ import annotations

import lightning.pytorch as pl


def images_shown(pl_module: pl.LightningModule, own_count: int) -> int:
    """Real images shown so far, all ranks together.

    The module's ``cur_nimg`` buffer when it has one (``StyleGAN2ADA`` and ``ScaleGAN`` count every
    image they train on, checkpointed with the weights), else the calling callback's own count (a
    module without that counter, e.g. a foreign Lightning GAN).

    >>> images_shown(pl.LightningModule(), own_count=320)
    320
    """
    counter = getattr(pl_module, "cur_nimg", None)
    return own_count if counter is None else int(counter)
