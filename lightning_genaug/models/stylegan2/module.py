"""``StyleGAN2ADA``: StyleGAN2 trained with adaptive discriminator augmentation, as a LightningModule.

One training batch runs the reference's four phases, ``Gmain``, ``Greg`` (path length), ``Dmain`` and
``Dreg`` (D's regulariser), each with its own optimiser step. The module keeps construction, the
optimisers, the phase loop and sampling; its neighbours each hold one job: :mod:`.loss` every phase's
loss with its gain (:class:`~.loss.StyleGAN2Loss`), :mod:`.losses` the formulas, :mod:`.phases` which
phases a batch runs and the NaN guard of each step, :mod:`.ema` the EMA generator, :mod:`.precision`
where bf16 autocast applies, :mod:`.transfer` weights from a ``.ckpt`` or an official ``.pkl`` (and
Freeze-D), :mod:`.generation` sampling, :mod:`lightning_genaug.models.agreement` the data checks.

The module is composed from objects, each given in YAML as ``class_path``/``init_args``: ``A`` is
``augment`` (stored as :attr:`StyleGAN2ADA.augment_pipe`: an ``AugmentPipe``, ``DiffAugment``,
``DataScaling``, a ``Chain`` of them, or ``None``), D's regulariser is ``regularizer``
(:mod:`lightning_genaug.regularizers`) and ``consistency`` an optional term such as bCR. Network and
training fields come from one place: the preset ``config`` plus ``config_overrides``. Regularisation
losses are multiplied by their interval (lazy regularisation) and Adam's lr/betas are corrected for the
extra steps. After the phases the EMA generator ``G_ema`` moves towards ``G``.
"""

from __future__ import annotations

import copy
import inspect
import os
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from torch import nn

from lightning_genaug._lazy_defaults import lazy_default
from lightning_genaug.augment.ada_pipe import AugmentPipe
from lightning_genaug.data.batch import split_batch
from lightning_genaug.distributed import seed_per_rank
from lightning_genaug.models.agreement import check_datamodule_agrees, check_real_images
from lightning_genaug.models.hyperparameters import save_hyperparameters
from lightning_genaug.models.predict import GeneratorPredictMixin, PredictOptions
from lightning_genaug.models.stylegan2 import losses
from lightning_genaug.models.stylegan2.configs import (
    StyleGAN2Config,
    StyleGAN2Overrides,
    build_networks,
    check_module_arguments,
    preset_batch_warning,
    stylegan2_config,
)
from lightning_genaug.models.stylegan2.ema import ema_beta, update_ema
from lightning_genaug.models.stylegan2.generation import StyleGAN2Sampling, class_condition
from lightning_genaug.models.stylegan2.loss import DiscriminatorReadings, StyleGAN2Loss
from lightning_genaug.models.stylegan2.official import (
    OfficialNetworks,
    is_network_pickle,
    read_network_pickle,
)
from lightning_genaug.models.stylegan2.phases import check_finite_state, guarded_step
from lightning_genaug.models.stylegan2.transfer import (
    copy_checkpoint_weights,
    copy_pickle_weights,
    freeze_discriminator_blocks,
    load_for_use,
    shapes_from_pickle,
)
from lightning_genaug.regularizers import R1, BalancedConsistency, DiscriminatorRegularizer

DEFAULT_AUGMENT: nn.Module = lazy_default(AugmentPipe, preset="bgc")
"""The default ``augment``: ADA's ``bgc`` pipe at ``p = 0`` (a fresh one per module)."""

DEFAULT_REGULARIZER: DiscriminatorRegularizer = lazy_default(R1)
"""The default ``regularizer``: R1 with the preset's ``gamma`` and ``r1_interval``."""

PROGRESS_BAR_LOSSES = ("loss/G", "loss/D")
"""The phase losses shown in the progress bar (every logged value is in the loggers)."""


class StyleGAN2ADA(StyleGAN2Sampling, DiscriminatorReadings, GeneratorPredictMixin, pl.LightningModule):
    """StyleGAN2 with ADA (Karras et al., NeurIPS 2020) under manual optimisation.

    Hyperparameters come from a named preset (``configs.py``: ``auto``, ``stylegan2``, ``paper256``,
    ``paper512``, ``paper1024``, ``cifar``, ``tiny``) with ``config_overrides`` replacing fields, so a
    LightningCLI config is data (``config: cifar``, ``config_overrides: {lr: 0.002}``). The batch size
    is the datamodule's.

    Args:
        config: name of the preset.
        config_overrides: :class:`~lightning_genaug.models.stylegan2.configs.StyleGAN2Config` fields to
            replace (``lr``, ``betas``, ``ema_kimg``, ``ema_rampup``, ``style_mixing_prob``,
            ``pl_weight``, ``pl_interval``, ``pl_batch_shrink``, ``pl_decay``, ``channel_base``,
            ``channel_max``, ``mbstd_group``, ...); ``gamma`` and ``r1_interval`` belong to the
            ``regularizer``.
        resolution: image side in pixels (a power of 2). ``None``: read from the datamodule's
            ``image_shape`` in :meth:`setup`.
        channels: image channels. ``None``: from the datamodule.
        num_classes: classes for conditional training (``0`` = unconditional). ``None``: the
            datamodule's ``num_classes`` (unconditional if it has none).
        augment: what D sees of every image, real and fake, in the D and G steps: an ``nn.Module``
            (``AugmentPipe``, ``DiffAugment``, ``DataScaling``, ``Chain``) or ``None`` for none. Default:
            ``AugmentPipe(preset="bgc", p=0)``, whose ``p`` the ``AdaptiveAugmentation`` callback adapts.
            Stored as :attr:`augment_pipe`.
        regularizer: D's regulariser (phase ``Dreg``): ``R1`` (default), ``VarianceRegularizer``, or
            ``None`` for none. It holds the weight and the interval; the module asks it for the loss.
            Its fields left at ``None`` take the preset's ``gamma`` and ``r1_interval`` when the
            networks are built (the preset's values are only these defaults).
        consistency: a term added to D's main loss, e.g. ``BalancedConsistency`` (bCR), or ``None``.
        freeze_d: number of D's first blocks (in input order) that receive no updates (Freeze-D).
        init_from: path of a ``StyleGAN2ADA`` ``.ckpt`` or of a stylegan2-ada-pytorch network pickle
            (``.pkl``, e.g. the official FFHQ networks) whose G, D and G_ema weights initialise
            training (transfer learning) or ``predict``; ignored when resuming with ``ckpt_path``.
            A pickle also sets resolution, channels and classes left at ``None``, the network shapes
            (under the ``config_overrides`` you give), and the ``p`` of :attr:`augment_pipe` from its
            ``augment_pipe``.
        max_kimg: stop training after this many thousand real images (the reference's ``--kimg``).
        autocast_bf16: run the main phases' forward passes under bf16 autocast on the module's
            device (the regularisation phases stay float32). ``None`` (default): on CUDA only;
            ``True``: on any device, CPU included (CPU bf16 is slow without bf16 units; the tests
            use it to run the CUDA code path); ``False``: never. Keep the trainer's ``precision``
            at 32 when using it.
        compile: ``torch.compile`` G's synthesis network and D for the main phases.
        predict: what ``predict`` writes (:class:`~lightning_genaug.models.predict.PredictOptions`:
            ``num_images``, ``seed``, ``batch_size``, ``output_dir``, ``sample_kwargs`` such as
            ``truncation_psi``); not a hyperparameter, so it is never read back from a checkpoint.

    Example:
        >>> model = StyleGAN2ADA("tiny", resolution=8, channels=1, num_classes=0)
        >>> type(model.augment_pipe).__name__, type(model.regularizer).__name__
        ('AugmentPipe', 'R1')
        >>> model.sample(2).shape
        torch.Size([2, 1, 8, 8])
    """

    run_arguments: tuple[str, ...] = ("max_kimg", "autocast_bf16", "compile")
    """How long and how the run goes, not what the model is: ``fit --ckpt_path`` takes these from the
    command line and config (``--model.max_kimg 200`` extends a finished run); every other argument
    comes from the checkpoint, and a different value given is refused
    (:func:`~lightning_genaug.fit_cli.resume_arguments`)."""

    def __init__(
        self,
        config: str = "auto",
        config_overrides: StyleGAN2Overrides | None = None,
        resolution: int | None = None,
        channels: int | None = None,
        num_classes: int | None = None,
        augment: nn.Module | None = DEFAULT_AUGMENT,
        regularizer: DiscriminatorRegularizer | None = DEFAULT_REGULARIZER,
        consistency: BalancedConsistency | None = None,
        freeze_d: int = 0,
        init_from: str | None = None,
        max_kimg: float | None = None,
        autocast_bf16: bool | None = None,
        compile: bool = False,
        predict: PredictOptions | None = None,
    ) -> None:
        super().__init__()
        self._save_hyperparameters()
        self.predict_options = predict if predict is not None else PredictOptions()
        self.automatic_optimization = False
        check_module_arguments(self.hparams)
        if augment is DEFAULT_AUGMENT:
            augment = AugmentPipe(preset="bgc")
        if regularizer is DEFAULT_REGULARIZER:
            regularizer = R1()
        for name, value in (("augment", augment), ("regularizer", regularizer), ("consistency", consistency)):
            if value is not None and not isinstance(value, nn.Module):
                raise TypeError(f"`{name}` must be an nn.Module or None, got {type(value).__name__}.")
        self.augment_pipe = augment
        self.regularizer = regularizer
        self.consistency = consistency
        self.register_buffer("cur_nimg", torch.zeros((), dtype=torch.int64))
        self.register_buffer("num_batches", torch.zeros((), dtype=torch.int64))
        self.register_buffer("pl_mean", torch.zeros((), dtype=torch.float32))
        self.G: nn.Module | None = None
        self.D: nn.Module | None = None
        self.G_ema: nn.Module | None = None
        self._compiled: dict[str, Any] = {}
        self.train_config: StyleGAN2Config | None = None
        self._initialized = False  # init_from loaded into this instance
        self._fit_started = False  # the first batch of a fit has been seen
        if resolution is not None and channels is not None and num_classes is not None:
            self.build(resolution, channels, num_classes)

    # ------------------------------------------------------------------ construction
    def _save_hyperparameters(self) -> None:
        """Save the arguments except ``predict``, composed objects the one way of every family.

        See :func:`lightning_genaug.models.hyperparameters.save_hyperparameters`: from the CLI,
        ``augment``/``regularizer``/``consistency`` are saved as their ``class_path`` configs; objects
        passed in Python are recorded by their ``as_config()`` when they have one, else left to the
        state dict, which holds their tensors anyway.
        """
        save_hyperparameters(
            self, composed=("augment", "regularizer", "consistency"), frame=inspect.currentframe().f_back
        )

    def build(self, resolution: int, channels: int, num_classes: int) -> None:
        """Build G, D and G_ema for images ``(channels, resolution, resolution)``.

        Called from ``__init__`` when the three are given, else from :meth:`setup` with the
        datamodule's values. Records them in ``hparams`` so checkpoints rebuild the same networks.
        """
        self.hparams.update(resolution=resolution, channels=channels, num_classes=num_classes)
        check_module_arguments(self.hparams)
        hp = self.hparams
        config = stylegan2_config(hp.config, resolution, **(hp.config_overrides or {}))
        self.train_config = config
        if self.regularizer is not None:
            self.regularizer.fill_defaults(config.gamma, config.r1_interval)
        self.G, self.D = build_networks(self.train_config, resolution, channels, num_classes)
        self.G_ema = _frozen_copy(self.G)
        freeze_discriminator_blocks(self.D, hp.freeze_d)
        if hp.compile:
            self._compiled = {"synthesis": torch.compile(self.G.synthesis), "D": torch.compile(self.D)}

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        """At the first batch of a fit: one random stream per DDP rank, and the preset's batch check.

        Warns if the preset's batch-sized values meet another batch. The re-seeding waits for the
        first batch because a resumed loader puts back the checkpoint's (rank 0's) random state when
        it yields that batch.
        """
        if self._fit_started:
            return
        self._fit_started = True
        seed_per_rank(self.global_rank, self.trainer.world_size)
        global_batch = len(split_batch(batch)[0]) * self.trainer.world_size
        preset_fields = () if self.regularizer is None else self.regularizer.preset_fields
        message = preset_batch_warning(
            self.train_config, self.hparams.config_overrides, preset_fields, global_batch
        )
        if message is not None:
            rank_zero_warn(f"StyleGAN2ADA: {message}")

    def setup(self, stage: str) -> None:
        """Build the networks from the datamodule's shapes; load ``init_from``; provide predict data."""
        # init_from is loaded once per module, never over trained weights (fit, then predict; a module
        # loaded from a checkpoint, see on_load_checkpoint).
        initialize = bool(self.hparams.init_from) and self.trainer.ckpt_path is None and not self._initialized
        official = None
        if initialize and is_network_pickle(self.hparams.init_from):
            official = read_network_pickle(self.hparams.init_from)
            self.hparams.update(shapes_from_pickle(self.hparams, official))
        if self.G is None:
            self.build(*self._shapes_from_datamodule())
        if stage != "predict":  # predict draws from G alone; the datamodule's images are not used
            check_datamodule_agrees(self.hparams, self.trainer.datamodule)
        if initialize and stage in ("fit", "predict"):
            self.load_weights_from(self.hparams.init_from, official)
        self.lend_predict_dataloader(stage)

    def _shapes_from_datamodule(self) -> tuple[int, int, int]:
        hp = self.hparams
        datamodule = self.trainer.datamodule
        image_shape = getattr(datamodule, "image_shape", None)
        if (hp.resolution is None or hp.channels is None) and image_shape is None:
            raise ValueError(
                "StyleGAN2ADA needs `resolution` and `channels`: pass them to the model, or use a "
                "datamodule with an `image_shape` attribute (C, H, W)."
            )
        channels = hp.channels if hp.channels is not None else int(image_shape[0])
        resolution = hp.resolution if hp.resolution is not None else int(image_shape[-1])
        if hp.num_classes is not None:
            num_classes = hp.num_classes
        else:
            num_classes = int(getattr(datamodule, "num_classes", 0) or 0)
        return resolution, channels, num_classes

    @classmethod
    def load(cls, path: str | os.PathLike, map_location: str | torch.device | None = None) -> StyleGAN2ADA:
        """A ready module from a ``.ckpt`` or a stylegan2-ada-pytorch ``.pkl``, without a ``Trainer``.

        :func:`~lightning_genaug.models.stylegan2.transfer.load_for_use`: a checkpoint is read as data, a
        network pickle without running its code. Returns the module in eval mode, gradients off.

        Example:
            >>> model = StyleGAN2ADA.load("network-snapshot.pkl")  # doctest: +SKIP
            >>> images = model.sample(16, truncation_psi=0.7)  # doctest: +SKIP
        """
        return load_for_use(cls, path, map_location)

    def load_weights_from(self, path: str | os.PathLike, official: OfficialNetworks | None = None) -> None:
        """Copy G, D and G_ema weights from a ``StyleGAN2ADA`` checkpoint or an official ``.pkl``.

        A ``.ckpt``: tensors are matched by name; parameters absent from the checkpoint (e.g. a class
        embedding when the source was unconditional) keep their initialisation and are logged.
        A stylegan2-ada-pytorch network pickle (``.pkl``, read without running its code): every
        tensor must match, and ``p`` of the pickle's ``augment_pipe`` is written to this module's
        :attr:`augment_pipe` (its ``p`` buffer, which ``AdaptiveAugmentation`` adapts from there).
        :mod:`~lightning_genaug.models.stylegan2.transfer` does the copying.

        Raises:
            FileNotFoundError: the file does not exist.
            ValueError: the file holds no StyleGAN2ADA weights, or tensors differ (named).
        """
        self._initialized = True
        networks = {"G": self.G, "D": self.D, "G_ema": self.G_ema}
        if is_network_pickle(path):
            official = official or read_network_pickle(path)
            copy_pickle_weights(networks, self.augment_pipe, official, str(path))
        else:
            copy_checkpoint_weights(networks, path, self.hparams)

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        """Adam for G and D with lr and betas corrected for lazy regularisation."""
        if self.G is None:
            raise RuntimeError(
                "configure_optimizers() was called before the networks were built (see setup)."
            )
        cfg = self.train_config
        intervals = self.loss.intervals()
        optimizers = []
        for net, interval in ((self.G, intervals["G"]), (self.D, intervals["D"])):
            # As the reference: corrected even when the regulariser's weight is 0 (``cifar``'s G).
            lr, betas = losses.lazy_regularization_adam(cfg.lr, tuple(cfg.betas), interval)
            params = [p for p in net.parameters() if p.requires_grad]
            optimizers.append(torch.optim.Adam(params, lr=lr, betas=betas, eps=1e-8))
        return optimizers

    # ------------------------------------------------------------------ networks
    loss_type: type[StyleGAN2Loss] = StyleGAN2Loss
    """The class of :attr:`loss`: a subclass changes a phase's loss without copying the loop."""

    @property
    def loss(self) -> StyleGAN2Loss:
        """Every phase's loss over the module's current networks and parts (:class:`.StyleGAN2Loss`)."""
        return self.loss_type(
            G=self.G,
            D=self.D,
            config=self.train_config,
            augment=self.augment_pipe,
            regularizer=self.regularizer,
            consistency=self.consistency,
            pl_mean=self.pl_mean,
            num_classes=self.hparams.num_classes,
            autocast_bf16=self.hparams.autocast_bf16,
            compiled=self._compiled,
        )

    def class_condition(self, labels: torch.Tensor | None, batch_size: int) -> torch.Tensor:
        """One-hot labels ``(B, num_classes)``, ``(B, 0)`` when unconditional: :func:`.class_condition`."""
        return class_condition(labels, self.hparams.num_classes, batch_size, self.device)

    # ------------------------------------------------------------------ the training loop
    def training_step(self, batch: Any, batch_idx: int) -> None:
        """Run the batch's phases (Gmain, Greg, Dmain, Dreg as :meth:`phases` says) with G's and D's
        optimisers, then the EMA; :attr:`loss` computes each phase's loss."""
        real, labels = split_batch(batch)
        check_real_images(real, self.hparams)
        real_c = self.class_condition(labels, real.shape[0])
        optimizers = dict(zip(("G", "D"), self.optimizers(), strict=True))
        networks = {"G": self.G, "D": self.D}
        loss = self.loss
        for phase in loss.phases(int(self.num_batches)):
            network = phase[0]
            with self.toggled_optimizer(optimizers[network]):
                value = loss.phase_loss(phase, real, real_c, labels)
                for name, logged in loss.logged.items():
                    self.log(name, logged, prog_bar=name in PROGRESS_BAR_LOSSES)
                self._optimize(optimizers[network], value, phase, networks[network])

        global_batch = real.shape[0] * self.trainer.world_size
        self.update_ema(global_batch)
        self.num_batches += 1
        self.cur_nimg += global_batch
        self.log("kimg", self.cur_nimg.item() / 1000, prog_bar=True)
        max_kimg = self.hparams.max_kimg
        if max_kimg is not None and self.cur_nimg.item() >= max_kimg * 1000 and not self.trainer.should_stop:
            self.trainer.should_stop = True
            kimg = self.cur_nimg.item() / 1000
            rank_zero_info(f"Stopping: {kimg:g} kimg reached `max_kimg` ({max_kimg:g}).")

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        """Log D's response to held-out reals: ``val/scores_real`` and ``val/sign_real``.

        ``val/sign_real`` is E[sign(D(x))] on un-augmented validation images, the validation-set
        counterpart of the r_t heuristic (the paper's r_v uses it to show D overfitting). Image
        quality (FID, KID, ...) comes from the ``GenerativeMetrics`` callback in the same loop.
        """
        self._log_real_scores(batch, "val")

    def test_step(self, batch: Any, batch_idx: int) -> None:
        """As :meth:`validation_step`, logged as ``test/scores_real`` and ``test/sign_real``."""
        self._log_real_scores(batch, "test")

    def _log_real_scores(self, batch: Any, stage: str) -> None:
        real, labels = split_batch(batch)
        check_real_images(real, self.hparams)
        # Minibatch-std needs a multiple of its group size: evaluation loaders keep a partial last batch.
        usable = len(real) - len(real) % min(self.train_config.mbstd_group, len(real))
        real, labels = real[:usable], None if labels is None else labels[:usable]
        logits = self.D(real, self.class_condition(labels, usable))
        self.log(f"{stage}/scores_real", logits.mean(), batch_size=usable)
        self.log(f"{stage}/sign_real", logits.sign().mean(), batch_size=usable)

    def phases(self, batch_index: int) -> list[str]:
        """The phases run for the ``batch_index``-th batch of the run (counting from 0, across epochs).

        >>> model = StyleGAN2ADA("tiny", resolution=8, channels=1, num_classes=0)
        >>> model.phases(0), model.phases(4)
        (['Gmain', 'Greg', 'Dmain', 'Dreg'], ['Gmain', 'Greg', 'Dmain'])
        """
        return self.loss.phases(batch_index)

    def _optimize(self, optimizer: Any, loss: torch.Tensor, phase: str, network: nn.Module) -> None:
        """:func:`~.phases.guarded_step`: backward and step, refusing a non-finite loss or gradient."""
        guarded_step(self, optimizer, loss, phase, network)

    def update_ema(self, batch_size: int) -> None:
        """Move ``G_ema`` towards ``G`` (:func:`~.ema.update_ema`) for a batch of ``batch_size`` images.

        The decay is :func:`~.ema.ema_beta` for the images seen before this batch.
        """
        cfg = self.train_config
        update_ema(self.G_ema, self.G, ema_beta(batch_size, int(self.cur_nimg), cfg.ema_kimg, cfg.ema_rampup))

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Weights from a checkpoint are never replaced by ``init_from`` (which the checkpoint records)."""
        self._initialized = True

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Refuse to write a checkpoint from a non-finite state (last line of the NaN guard)."""
        check_finite_state({"G": self.G, "D": self.D, "G_ema": self.G_ema})


def _frozen_copy(module: nn.Module) -> nn.Module:
    return copy.deepcopy(module).requires_grad_(False)


__all__ = ["StyleGAN2ADA"]
