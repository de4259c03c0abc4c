"""After-training tools: generate, style-mix, interpolate, project and export a trained network.

Each is a ``lightning-genaug`` subcommand (:mod:`lightning_genaug.tools.commands`) over one loader,
:func:`~lightning_genaug.models.load_network`, and a Python function:
:func:`~lightning_genaug.tools.generate.generate_stylegan`,
:func:`~lightning_genaug.tools.style_mix.style_mixing_grid`,
:func:`~lightning_genaug.tools.interpolate.interpolation_frames`,
:func:`~lightning_genaug.tools.project.project`,
:func:`~lightning_genaug.tools.export.export_generator`.
"""
