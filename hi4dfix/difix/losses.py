"""Difix training losses: L2 + LPIPS + Gram (VGG16 style) with a Gram warm-up.

The terms follow the released ``train_difix.py`` / ``loss.py``: L2 and LPIPS over every view
of every sample (the reference view's target is the reference itself); the Gram term on one
random square crop shared by all views, after ``gram_warmup_steps`` completed steps, with the
views of a sample stacked into one Gram matrix (see ``gram_loss``).

LPIPS and the Gram loss need ImageNet-pretrained backbones (VGG16 / AlexNet) that
torchvision keeps in the torch hub cache.  They are never downloaded here and never
replaced by something else: a loss with weight > 0 whose backbone is not in the cache
fails with an error naming the setting and the file to provide.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

# Layers of torchvision's vgg16().features after which Difix takes Gram matrices, and
# their weights (relu1_2 ... relu5_3), as in the released loss.
GRAM_LAYERS = {3: 1.0 / 2.6, 8: 1.0 / 4.8, 15: 1.0 / 3.7, 22: 1.0 / 5.6, 29: 10.0 / 1.5}
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

BACKBONE_URLS = {
    "vgg": "https://download.pytorch.org/models/vgg16-397923af.pth",
    "alex": "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth",
}
LPIPS_NETS = ("vgg", "alex")


@dataclass
class LossConfig:
    """lambda_*: weights (0 switches a term off); gram_warmup_steps: the Gram term is on once
    more than this many steps are done (Difix's ``global_step > gram_loss_warmup_steps``, its
    ``global_step`` counting completed steps: with 2000 the term first counts at the 2002nd
    step); lpips_net: LPIPS backbone; gram_crop: side of the random square crop the Gram term
    sees (clipped to the image; Difix: 400)."""

    lambda_l2: float = 1.0
    lambda_lpips: float = 1.0
    lambda_gram: float = 1.0
    gram_warmup_steps: int = 2000
    lpips_net: str = "vgg"
    gram_crop: int = 400

    def __post_init__(self) -> None:
        for name in ("lambda_l2", "lambda_lpips", "lambda_gram"):
            if getattr(self, name) < 0:
                raise ValueError(f"LossConfig.{name} must be >= 0, got {getattr(self, name)}")
        if self.lpips_net not in LPIPS_NETS:
            raise ValueError(f"LossConfig.lpips_net must be one of {LPIPS_NETS}, got {self.lpips_net!r}")
        if self.gram_crop < 16:
            raise ValueError(f"LossConfig.gram_crop must be >= 16, got {self.gram_crop}")


class BackboneUnavailable(RuntimeError):
    """A pretrained loss backbone is not in the local torch hub cache."""


def cached_backbone_path(net: str) -> Path:
    """Where torchvision keeps the ImageNet weights of ``net`` (honours TORCH_HOME)."""
    name = BACKBONE_URLS[net].rsplit("/", 1)[-1]
    return Path(torch.hub.get_dir()) / "checkpoints" / name


def load_cached_backbone_state(net: str, setting: str) -> dict[str, torch.Tensor]:
    path = cached_backbone_path(net)
    if not path.is_file():
        raise BackboneUnavailable(
            f"{setting} > 0 needs the pretrained {net.upper()} weights, not found at {path}. "
            f"Set {setting} to 0 to train without this loss, or put the file there "
            f"(download {BACKBONE_URLS[net]} where the internet is reachable; TORCH_HOME moves the cache)."
        )
    return torch.load(path, map_location="cpu", weights_only=True)


def _frozen(module: torch.nn.Module) -> torch.nn.Module:
    module.eval()
    module.requires_grad_(False)
    return module


def build_vgg16_features(setting: str = "lambda_gram") -> torch.nn.Module:
    """torchvision's VGG16 ``features`` with ImageNet weights from the local cache."""
    from torchvision.models import vgg16

    state = load_cached_backbone_state("vgg", setting)
    features = vgg16(weights=None).features
    # Only the convolutional trunk is used; the classifier weights are not needed.
    features.load_state_dict({k[len("features.") :]: v for k, v in state.items() if k.startswith("features.")})
    return _frozen(features)


def build_lpips(net: str = "vgg", setting: str = "lambda_lpips") -> torch.nn.Module:
    """LPIPS whose backbone weights come from the local cache (its linear heads ship with lpips)."""
    import lpips

    state = load_cached_backbone_state(net, setting)
    with warnings.catch_warnings():  # lpips still passes torchvision's deprecated ``pretrained``
        warnings.simplefilter("ignore", UserWarning)
        model = lpips.LPIPS(net=net, pnet_rand=True, verbose=False)
    features = {k[len("features.") :]: v for k, v in state.items() if k.startswith("features.")}
    # lpips splits torchvision's ``features`` into slices whose children keep their indices.
    loaded = 0
    with torch.no_grad():
        for slice_module in model.net.children():
            for index, layer in slice_module.named_children():
                if isinstance(layer, torch.nn.Conv2d):
                    layer.weight.copy_(features[f"{index}.weight"])
                    layer.bias.copy_(features[f"{index}.bias"])
                    loaded += 1
    if loaded == 0:
        raise BackboneUnavailable(f"no {net} convolution weights found for LPIPS")
    return _frozen(model)


def gram_matrices(features: torch.Tensor, num_views: int = 1) -> torch.Tensor:
    """Gram matrices (B, V*C, V*C) of (B*V, C, H, W) features whose views of a sample are
    consecutive: the ``V`` feature maps of a sample are stacked into one (V*C, H*W) matrix, as
    the released ``gram_matrix`` stacks its whole input, so the off-diagonal blocks hold the
    cross-view products."""
    bv, c, h, w = features.shape
    if bv % num_views:
        raise ValueError(f"{bv} feature maps are not a multiple of num_views={num_views}")
    flat = features.reshape(bv // num_views, num_views * c, h * w).float()
    return flat @ flat.transpose(1, 2)


def gram_loss(
    pred: torch.Tensor, target: torch.Tensor, vgg_features: torch.nn.Module, num_views: int = 1
) -> torch.Tensor:
    """Difix's Gram (style) loss of ImageNet-normalised (B*V, 3, H, W) images, views of a sample
    consecutive.

    Per VGG16 relu layer (relu1_2 ... relu5_3, weights ``GRAM_LAYERS``): the squared difference
    of the two Gram matrices of a sample (``gram_matrices``: its V views stacked), averaged over
    the (V*C)^2 entries, divided by C*H*W of one view's feature map, times the layer weight; the
    sum over layers, averaged over the B samples.  For batch size 1 (Difix's recipe, one sample
    per GPU) this is exactly the released ``gram_loss`` on the fixed image and its reference.
    With B > 1 the released code stacks the whole batch into one matrix, which adds
    cross-sample blocks (a sample's loss then depends on its batch mates); here every sample
    has its own matrix.
    """
    last = max(GRAM_LAYERS)
    total = pred.new_zeros((), dtype=torch.float32)
    x, y = pred, target
    for index, layer in enumerate(vgg_features):
        x, y = layer(x), layer(y)
        if index in GRAM_LAYERS:
            _, c, h, w = y.shape
            diff = gram_matrices(x, num_views) - gram_matrices(y, num_views)
            # mean over each sample's (V*C)^2 entries, then over samples (equal sizes: one mean)
            total = total + GRAM_LAYERS[index] * diff.square().mean() / (c * h * w)
        if index >= last:
            break
    return total


def imagenet_normalise(images: torch.Tensor) -> torch.Tensor:
    """[-1, 1] images -> ImageNet-normalised."""
    mean = images.new_tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = images.new_tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (images * 0.5 + 0.5 - mean) / std


def random_crop_box(height: int, width: int, size: int, generator: torch.Generator | None) -> tuple[int, int, int, int]:
    ch, cw = min(size, height), min(size, width)
    device = generator.device if generator is not None else "cpu"
    top = int(torch.randint(0, height - ch + 1, (1,), generator=generator, device=device))
    left = int(torch.randint(0, width - cw + 1, (1,), generator=generator, device=device))
    return top, left, ch, cw


class DifixLoss(torch.nn.Module):
    """Weighted sum of the Difix terms; ``forward`` returns every term and ``total``."""

    def __init__(self, config: LossConfig) -> None:
        super().__init__()
        self.config = config
        self.lpips = build_lpips(config.lpips_net) if config.lambda_lpips > 0 else None
        self.vgg = build_vgg16_features() if config.lambda_gram > 0 else None

    def gram_active(self, step: int) -> bool:
        """Whether the Gram term counts at the 1-based ``step``: Difix tests its count of
        completed steps (``step - 1``) against the warm-up."""
        return self.vgg is not None and step - 1 > self.config.gram_warmup_steps

    def forward(
        self,
        pred: torch.Tensor,
        target: torch.Tensor,
        step: int,
        generator: torch.Generator | None = None,
        mask: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """pred, target: (B, V, 3, H, W) views of B samples, or (N, 3, H, W) single views, in
        [-1, 1]; step: the 1-based optimisation step.

        ``mask`` ((B, V, 1, H, W) or (N, 1, H, W), 1 where the loss looks; ``loss_region: person``):
        outside it the prediction is replaced by the target, so no term sees or moves those pixels;
        L2 is then the mean over the mask's pixels."""
        cfg = self.config
        num_views = 1
        if pred.ndim == 5:
            num_views = pred.shape[1]
            pred, target = pred.flatten(0, 1), target.flatten(0, 1)
            mask = None if mask is None else mask.flatten(0, 1)
        pred32, target32 = pred.float(), target.float()
        zero = pred32.new_zeros(())
        if mask is not None:
            mask = mask.to(pred32)
            pred32 = mask * pred32 + (1.0 - mask) * target32
            l2 = ((pred32 - target32).square().sum() / (mask.sum() * 3).clamp(min=1.0)) if cfg.lambda_l2 > 0 else zero
        else:
            l2 = F.mse_loss(pred32, target32) if cfg.lambda_l2 > 0 else zero
        lp = self.lpips(pred32, target32).mean() if self.lpips is not None else zero
        if self.gram_active(step):
            top, left, ch, cw = random_crop_box(pred.shape[-2], pred.shape[-1], cfg.gram_crop, generator)
            crop = (slice(None), slice(None), slice(top, top + ch), slice(left, left + cw))
            gram = gram_loss(imagenet_normalise(pred32)[crop], imagenet_normalise(target32)[crop], self.vgg, num_views)
        else:
            gram = zero
        terms = {"l2": cfg.lambda_l2 * l2, "lpips": cfg.lambda_lpips * lp, "gram": cfg.lambda_gram * gram}
        terms["total"] = terms["l2"] + terms["lpips"] + terms["gram"]
        return terms
