"""DiFix (Difix3D, CVPR 2025): model, checkpoints, inference and fine-tuning.

Modules (import them directly; this package imports nothing heavy):

* ``config``: ``DifixConfig`` (presets ``tiny`` / ``sd-turbo``), architecture dictionaries;
* ``model``: ``DifixModel`` and builders (skip-connected LoRA VAE, multi-view UNet attention);
* ``checkpoint``: official ``model_*.pkl`` layout, ``nvidia/difix_ref``-style folders, Hub ids,
  ``load_model(spec)``;
* ``data`` / ``losses`` / ``train``: triplet data, L2 + LPIPS + Gram, the training entry point
  ``python -m hi4dfix.difix.train``;
* ``ood_scenes`` / ``pretrain``: out-of-domain multi-view renders and the tiny base model;
* ``infer``: ``load_difix(spec, device, dtype)`` and ``fix_images(model, images, refs, batch_size)``.
* ``layout``: channels-last weights, activations and group norms for compiled GPU runs;
* ``compile_cache``: the study compile cache, compiled graphs shared by the study's GPU jobs.
"""
