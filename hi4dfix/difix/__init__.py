"""DiFix (Difix3D, CVPR 2025): model, checkpoints, inference and fine-tuning.

Modules (import them directly; this package imports nothing heavy):

* ``config``: ``DifixConfig`` (presets ``tiny`` / ``sd-turbo``), architecture dictionaries;
* ``model``: ``DifixModel`` and builders (skip-connected LoRA VAE, multi-view UNet attention);
* ``checkpoint``: ``load_model(spec)`` from any format: ``official_pkl`` (the official
  ``model_*.pkl`` format), ``pretrained_dir`` (``nvidia/difix_ref``-style folders, Hub ids), over
  ``checkpoint_base`` (errors, the accepted formats, loading weights);
* ``data`` / ``losses``: triplet data, L2 + LPIPS + Gram;
* ``train_config`` / ``runs`` / ``train_setup`` / ``train``: the tuning settings (each saying
  whether it decides the weights), run folders by fingerprint and resumption, the model and
  optimizer set-up, and the loop with its entry point ``python -m hi4dfix.difix.train``
  (``launch``: under ``accelerate launch``, one process per GPU);
* ``ood_scenes`` / ``pretrain``: out-of-domain multi-view renders and the tiny base model;
* ``infer``: ``load_difix(spec, device, dtype)``, ``fix_images(model, images, refs, batch_size)``
  and the pipeline's fixer ``difix_fixer`` (config ``difix.inference``: ``InferenceConfig``);
* ``memory_format``: channels-last weights, activations and group norms for compiled GPU runs;
* ``compile_cache``: the study compile cache, compiled graphs shared by the study's GPU jobs.
"""
