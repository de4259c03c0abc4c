"""``StyleGAN2Loss``: every phase of a StyleGAN2-ADA batch, with its loss and its gain, in one place.

After NVlabs' ``training/loss.py`` (``StyleGAN2Loss.accumulate_gradients``): this object runs G (style
mixing, the compiled synthesis network where one exists) and D (through the augmentation, compiled where
one exists), under bf16 autocast in the main phases only, and returns each phase's loss ready for
``backward``, the lazy-regularisation gain included. ``StyleGAN2ADA`` keeps construction, the
optimisers, the phase loop (toggle, backward, the NaN guard, step) and sampling. The formulas are the
pure functions of :mod:`~lightning_genaug.models.stylegan2.losses` and :mod:`lightning_genaug.regularizers`.

=========  ===========================================  ===============================  ======
phase      loss                                         when                             gain
=========  ===========================================  ===============================  ======
``Gmain``  ``softplus(-D(A(G(z))))``                    every batch                      1
``Greg``   path length ``pl_weight * (l - a)^2``        every ``pl_interval``            its interval
``Dmain``  ``softplus(D(A(G(z)))) + softplus(-D(A(x)))``  every batch                    1
           (+ ``consistency``, e.g. bCR)
``Dreg``   ``regularizer`` (R1: ``gamma / 2 *``         every ``every_n_batches``        its interval
           ``||grad_x D(A(x))||^2``)
=========  ===========================================  ===============================  ======
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from lightning_genaug.models.stylegan2 import losses
from lightning_genaug.models.stylegan2.configs import StyleGAN2Config
from lightning_genaug.models.stylegan2.generation import class_condition
from lightning_genaug.models.stylegan2.phases import phase_schedule
from lightning_genaug.models.stylegan2.precision import autocast_off, main_phase_autocast
from lightning_genaug.regularizers import BalancedConsistency, DiscriminatorRegularizer


@dataclass
class StyleGAN2Loss:
    """The losses of the four phases over one module's networks and parts (cheap to build per batch).

    Attributes:
        G: the generator (``mapping``, ``synthesis``, ``z_dim``).
        D: the discriminator, ``D(images (B, C, H, W), c (B, c_dim)) -> (B, 1)``.
        config: the run's :class:`~lightning_genaug.models.stylegan2.configs.StyleGAN2Config`.
        augment: what D sees of every image (``None``: the images as they are); its ``observe`` receives
            D's logits for the augmented reals of ``Dmain`` (the ADA protocol).
        regularizer: D's regulariser (phase ``Dreg``), or ``None``.
        consistency: a term added to D's main loss (bCR), or ``None``.
        pl_mean: the path-length EMA buffer (0-d), updated in place in ``Greg``.
        num_classes: classes of a conditional model (0: unconditional).
        autocast_bf16: the module's ``autocast_bf16`` (:func:`.main_phase_autocast`).
        compiled: ``torch.compile`` d ``"synthesis"`` and ``"D"`` for the main phases, when compiled.
        logged: the values of the last phase to log, by name (detached scalars).
    """

    G: nn.Module
    D: nn.Module
    config: StyleGAN2Config
    augment: nn.Module | None
    regularizer: DiscriminatorRegularizer | None
    consistency: BalancedConsistency | None
    pl_mean: torch.Tensor
    num_classes: int
    autocast_bf16: bool | None = None
    compiled: dict[str, Any] = field(default_factory=dict)
    logged: dict[str, torch.Tensor] = field(default_factory=dict)

    # ------------------------------------------------------------------ schedule and gains
    def intervals(self) -> dict[str, int]:
        """The lazy-regularisation interval of each network: ``{"G": pl_interval, "D": ...}``.

        D's is the regulariser's ``every_n_batches``; without a regulariser, the preset's ``r1_interval``
        (as the reference, which corrects D's Adam for it whatever the weight). The one place it is read:
        the phases' gains and :func:`~.losses.lazy_regularization_adam` both use it.
        """
        d_interval = self.config.r1_interval if self.regularizer is None else self.regularizer.every_n_batches
        return {"G": self.config.pl_interval, "D": d_interval}

    def phases(self, batch_index: int) -> list[str]:
        """The phases of the ``batch_index``-th batch of the run (:func:`.phase_schedule`)."""
        return phase_schedule(batch_index, self.config, self.regularizer)

    # ------------------------------------------------------------------ running G and D
    def augment_images(self, images: torch.Tensor) -> torch.Tensor:
        """What D sees: ``images`` through ``augment`` (identity without one)."""
        return images if self.augment is None else self.augment(images)

    def run_G(
        self, z: torch.Tensor, c: torch.Tensor, *, regularizing: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(images (B, C, H, W), ws (B, num_ws, w_dim))`` of latents ``z`` ``(B, z_dim)``, style-mixed.

        ``regularizing``: the regularisation phases never use the compiled network.
        """
        ws = self.G.mapping(z, c, update_emas=True)
        prob = self.config.style_mixing_prob
        if prob > 0 and torch.rand(()) < prob:
            cutoff = int(torch.randint(1, ws.shape[1], ()))
            mixed = self.G.mapping(torch.randn_like(z), c, update_emas=False)
            ws = torch.cat([ws[:, :cutoff], mixed[:, cutoff:]], dim=1)
        synthesis = self.G.synthesis if regularizing else self.compiled.get("synthesis", self.G.synthesis)
        return synthesis(ws), ws

    def run_D(self, images: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """D's logits ``(B, 1)`` for ``images`` after :meth:`augment_images` (main phases: compiled D)."""
        return self.compiled.get("D", self.D)(self.augment_images(images), c)

    def generated_condition(self, real_labels: torch.Tensor | None, batch_size: int) -> torch.Tensor:
        """Conditioning ``(B, num_classes)`` for generated images: labels resampled from the real batch's."""
        device = self.pl_mean.device
        if self.num_classes == 0 or real_labels is None:
            return class_condition(real_labels, self.num_classes, batch_size, device)
        picks = torch.randint(len(real_labels), (batch_size,), device=real_labels.device)
        return class_condition(real_labels[picks], self.num_classes, batch_size, device)

    def _latents(self, batch_size: int) -> torch.Tensor:
        return torch.randn(batch_size, self.G.z_dim, device=self.pl_mean.device)

    def main_autocast(self) -> AbstractContextManager:
        """bf16 autocast for the main phases, as ``autocast_bf16`` says (:func:`.main_phase_autocast`)."""
        return main_phase_autocast(self.pl_mean.device.type, self.autocast_bf16)

    # ------------------------------------------------------------------ the phases
    def phase_loss(
        self, phase: str, real: torch.Tensor, real_c: torch.Tensor, real_labels: torch.Tensor | None
    ) -> torch.Tensor:
        """The loss of ``phase`` for the batch of reals ``(B, C, H, W)``, its gain included.

        Args:
            phase: ``"Gmain"``, ``"Greg"``, ``"Dmain"`` or ``"Dreg"``.
            real: the batch's real images in [-1, 1].
            real_c: their conditioning ``(B, num_classes)``.
            real_labels: their labels ``(B,)`` (generated images draw theirs from them), or ``None``.

        Returns:
            A scalar to ``backward``; :attr:`logged` then holds the phase's values to log.
        """
        self.logged = {}
        batch_size = real.shape[0]
        if phase == "Gmain":
            return self.generator_main_loss(batch_size, self.generated_condition(real_labels, batch_size))
        if phase == "Greg":
            gen_c = self.generated_condition(real_labels, batch_size)
            with autocast_off(real.device.type):
                return self.generator_regularization_loss(batch_size, gen_c) * self.intervals()["G"]
        if phase == "Dmain":
            gen_c = self.generated_condition(real_labels, batch_size)
            return self.discriminator_main_loss(real, real_c, gen_c)
        if phase == "Dreg":
            with autocast_off(real.device.type):
                return self.discriminator_regularization_loss(real, real_c) * self.intervals()["D"]
        raise ValueError(f"Unknown phase {phase!r}; the phases are Gmain, Greg, Dmain and Dreg.")

    def generator_main_loss(self, batch_size: int, gen_c: torch.Tensor) -> torch.Tensor:
        """``Gmain``: non-saturating loss on a fresh batch of generated images."""
        with self.main_autocast():
            fake, _ = self.run_G(self._latents(batch_size), gen_c)
            fake_logits = self.run_D(fake, gen_c).float()
        loss = losses.generator_loss(fake_logits)
        self.logged = {"scores/fake": fake_logits.mean().detach(), "loss/G": loss.detach()}
        return loss

    def generator_regularization_loss(self, batch_size: int, gen_c: torch.Tensor) -> torch.Tensor:
        """``Greg``: path-length penalty times ``pl_weight`` (before the interval gain)."""
        shrunk = max(1, batch_size // self.config.pl_batch_shrink)
        fake, ws = self.run_G(self._latents(shrunk), gen_c[:shrunk], regularizing=True)
        lengths = losses.path_lengths(fake, ws)
        penalty, new_mean = losses.path_length_penalty(lengths, self.pl_mean, self.config.pl_decay)
        self.pl_mean.copy_(new_mean)
        self.logged = {"loss/pl": penalty.mean().detach()}
        return penalty.mean() * self.config.pl_weight

    def discriminator_main_loss(
        self, real: torch.Tensor, real_c: torch.Tensor, gen_c: torch.Tensor
    ) -> torch.Tensor:
        """``Dmain``: logistic loss on augmented reals and fakes, plus ``consistency`` when given.

        Feeds the augmentation's r_t accumulator with D's logits for the augmented reals.
        """
        with self.main_autocast():
            with torch.no_grad():
                fake, _ = self.run_G(self._latents(real.shape[0]), gen_c)
            fake_logits = self.run_D(fake, gen_c).float()
            real_logits = self.run_D(real, real_c).float()
        if self.augment is not None and hasattr(self.augment, "observe"):
            self.augment.observe(real_logits)
        loss = losses.discriminator_loss(real_logits, fake_logits)
        self.logged = {"scores/real": real_logits.mean().detach(), "loss/D": loss.detach()}
        if self.consistency is not None:
            with self.main_autocast():
                term = self.consistency(self.run_D, real, real_c, real_logits, fake, gen_c, fake_logits)
            self.logged["loss/consistency"] = term.detach()
            loss = loss + term
        return loss

    def discriminator_regularization_loss(self, real: torch.Tensor, real_c: torch.Tensor) -> torch.Tensor:
        """``Dreg``: ``gamma / 2 * mean(regularizer.penalty(...))`` (before the interval gain).

        The penalty gets D on images as given and the augmentation apart, so R1 takes its gradient
        w.r.t. the *un-augmented* reals through the augmentation, as in the reference.
        """
        loss, penalty = self.regularizer.loss(self.D, self.augment_images, real, real_c)
        self.logged = {f"loss/{self.regularizer.log_name}": penalty.detach()}
        return loss


class DiscriminatorReadings:
    """What the augmentation-strength callbacks read of a StyleGAN2 module's D, outside its phases.

    Mixed into :class:`~lightning_genaug.models.stylegan2.StyleGAN2ADA`: it reads ``D``, ``G``,
    ``device``, ``loss`` and ``class_condition`` of the module.
    """

    @torch.no_grad()
    def score_reals(self, images: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """D's logits ``(B, 1)`` for un-augmented real ``images`` ``(B, C, H, W)``, without gradient.

        The clean reading of the augmentation-strength callbacks (``heuristic="rt_clean"``).
        """
        return self.D(images, self.class_condition(labels, images.shape[0]))

    @torch.no_grad()
    def score_fakes(self, n: int, real_labels: torch.Tensor | None = None) -> torch.Tensor:
        """D's logits ``(n, 1)`` for ``n`` images of the training generator ``G``, un-augmented, no gradient.

        Labels are drawn from ``real_labels`` as in training. Read by ``heuristic="rv"`` (``r_v``); it draws
        from the global random generator and leaves ``G``'s running average of ``w`` alone.
        """
        c = self.loss.generated_condition(real_labels, n)
        ws = self.G.mapping(torch.randn(n, self.G.z_dim, device=self.device), c, update_emas=False)
        return self.D(self.G.synthesis(ws), c)


__all__ = ["DiscriminatorReadings", "StyleGAN2Loss"]
