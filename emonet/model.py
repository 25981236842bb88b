"""EmoNet (Toisoul et al., Nature Machine Intelligence 2021), written from its published structure.

The network is a two-stack Face Alignment Network (Bulat & Tzimiropoulos) whose heatmaps drive an
attention mask over its features, followed by an emotion branch that predicts expression logits,
valence and arousal. Module names and registration order reproduce the released state dicts
(`emonet_8.pth`, `emonet_5.pth`) exactly, so those files load with `load_state_dict(strict=True)`.

Every normalisation layer is BatchNorm, as in the released weights.
"""
import torch
import torch.nn.functional as F
from torch import nn

from .constants import FEATURE_DIM, NUM_LANDMARKS

NUM_STACKS = 2
HOURGLASS_DEPTH = 4
HOURGLASS_FEATURES = 256

# The emotion branch; every other child (conv1..conv4, m*, top_m_*, conv_last*, bn_end*, l*, bl*, al*) is
# the face-alignment part ("backbone") that `--freeze_backbone` keeps exactly as loaded.
EMOTION_MODULES = ("conv1x1_input_emo_2", "emo_net_2", "emo_fc_2")


def _conv3x3(in_planes: int, out_planes: int) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=1, padding=1, bias=False)


class ConvBlock(nn.Module):
    """Pre-activation multi-scale residual block: three 3x3 convs (out/2, out/4, out/4) concatenated."""

    def __init__(self, in_planes: int, out_planes: int):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = _conv3x3(in_planes, out_planes // 2)
        self.bn2 = nn.BatchNorm2d(out_planes // 2)
        self.conv2 = _conv3x3(out_planes // 2, out_planes // 4)
        self.bn3 = nn.BatchNorm2d(out_planes // 4)
        self.conv3 = _conv3x3(out_planes // 4, out_planes // 4)
        if in_planes != out_planes:
            self.downsample = nn.Sequential(
                nn.BatchNorm2d(in_planes),
                nn.ReLU(inplace=True),
                nn.Conv2d(in_planes, out_planes, kernel_size=1, stride=1, bias=False),
            )
        else:
            self.downsample = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # In place where a fresh tensor is modified (each BatchNorm's output, the concatenation): the same values,
        # fewer passes over memory (4 % of a CPU forward, measured with benchmarks/bench_predict.py's machine).
        out1 = self.conv1(F.relu(self.bn1(x), inplace=True))
        out2 = self.conv2(F.relu(self.bn2(out1), inplace=True))
        out3 = self.conv3(F.relu(self.bn3(out2), inplace=True))
        residual = x if self.downsample is None else self.downsample(x)
        return torch.cat((out1, out2, out3), dim=1).add_(residual)


class HourGlass(nn.Module):
    """Recursive hourglass; level `d` registers b1_d, b2_d, (level d-1 | b2_plus_1), b3_d in that order."""

    def __init__(self, depth: int, num_features: int):
        super().__init__()
        self.depth = depth
        self._build(depth, num_features)

    def _build(self, level: int, num_features: int) -> None:
        self.add_module(f"b1_{level}", ConvBlock(num_features, num_features))
        self.add_module(f"b2_{level}", ConvBlock(num_features, num_features))
        if level > 1:
            self._build(level - 1, num_features)
        else:
            self.add_module(f"b2_plus_{level}", ConvBlock(num_features, num_features))
        self.add_module(f"b3_{level}", ConvBlock(num_features, num_features))

    def _forward(self, level: int, x: torch.Tensor) -> torch.Tensor:
        upper = self._modules[f"b1_{level}"](x)
        low = self._modules[f"b2_{level}"](F.max_pool2d(x, 2, stride=2))
        if level > 1:
            low = self._forward(level - 1, low)
        else:
            low = self._modules[f"b2_plus_{level}"](low)
        low = self._modules[f"b3_{level}"](low)
        return upper.add_(F.interpolate(low, scale_factor=2, mode="nearest"))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._forward(self.depth, x)


class EmoNet(nn.Module):
    """EmoNet with `n_expression` expression classes (8 or 5 in the released checkpoints).

    Input: float N x 3 x 256 x 256, RGB (or another colour space mapped to [0, 1]), values in [0, 1].
    `forward` returns a dict with `heatmap` (N x 68 x 64 x 64), `expression` (N x n_expression logits),
    `valence` and `arousal` (N, on EmoNet's [-1, 1] scale once trained) and `features` (N x 256: the
    input of `emo_fc_2`, from the same pass).
    """

    def __init__(self, n_expression: int = 8):
        super().__init__()
        self.n_expression = n_expression
        self.backbone_frozen = False
        self.stand_in = False  # the project's stand-in weights (`checkpoint.load_emonet` says so)

        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3)
        self.bn1 = nn.BatchNorm2d(64)
        self.conv2 = ConvBlock(64, 128)
        self.conv3 = ConvBlock(128, 128)
        self.conv4 = ConvBlock(128, HOURGLASS_FEATURES)
        for i in range(NUM_STACKS):
            self.add_module(f"m{i}", HourGlass(HOURGLASS_DEPTH, HOURGLASS_FEATURES))
            self.add_module(f"top_m_{i}", ConvBlock(HOURGLASS_FEATURES, HOURGLASS_FEATURES))
            self.add_module(f"conv_last{i}", nn.Conv2d(HOURGLASS_FEATURES, HOURGLASS_FEATURES, kernel_size=1))
            self.add_module(f"bn_end{i}", nn.BatchNorm2d(HOURGLASS_FEATURES))
            self.add_module(f"l{i}", nn.Conv2d(HOURGLASS_FEATURES, NUM_LANDMARKS, kernel_size=1))
            if i < NUM_STACKS - 1:
                self.add_module(f"bl{i}", nn.Conv2d(HOURGLASS_FEATURES, HOURGLASS_FEATURES, kernel_size=1))
                self.add_module(f"al{i}", nn.Conv2d(NUM_LANDMARKS, HOURGLASS_FEATURES, kernel_size=1))

        # Emotion branch: [hourglass input, attended features of both stacks] = 3 x 256 channels.
        self.conv1x1_input_emo_2 = nn.Conv2d((NUM_STACKS + 1) * HOURGLASS_FEATURES, FEATURE_DIM, kernel_size=1)
        emo_layers = []
        for _ in range(4):  # 64 -> 4 pixels
            emo_layers += [ConvBlock(FEATURE_DIM, FEATURE_DIM), nn.MaxPool2d(2, 2)]
        self.emo_net_2 = nn.Sequential(*emo_layers)
        self.avg_pool_2 = nn.AvgPool2d(4)
        self.emo_fc_2 = nn.Sequential(
            nn.Linear(FEATURE_DIM, 128),
            nn.BatchNorm1d(128),
            nn.ReLU(inplace=True),
            nn.Linear(128, n_expression + 2),
        )

    # -- the two halves of the forward pass -------------------------------------------------------
    def forward_backbone(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Face-alignment part: returns (hourglass input, features of both stacks, last heatmaps)."""
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.max_pool2d(self.conv2(x), 2, stride=2)
        x = self.conv4(self.conv3(x))

        previous = x
        stack_features = []
        for i in range(NUM_STACKS):
            ll = self._modules[f"top_m_{i}"](self._modules[f"m{i}"](previous))
            ll = F.relu(self._modules[f"bn_end{i}"](self._modules[f"conv_last{i}"](ll)))
            heatmap = self._modules[f"l{i}"](ll)
            if i < NUM_STACKS - 1:
                ll = self._modules[f"bl{i}"](ll)
                previous = previous + ll + self._modules[f"al{i}"](heatmap)
            stack_features.append(ll)
        return x, torch.cat(stack_features, dim=1), heatmap

    def forward_emotion(self, x: torch.Tensor, stack_features: torch.Tensor, heatmap: torch.Tensor) -> dict:
        """Emotion branch on the backbone's outputs; see `forward` for the returned dict."""
        # The summed heatmaps act as a spatial attention mask over the alignment features.
        mask = heatmap.sum(dim=1, keepdim=True)
        emo = self.conv1x1_input_emo_2(torch.cat((x, stack_features * mask), dim=1))
        features = torch.flatten(self.avg_pool_2(self.emo_net_2(emo)), 1)
        out = self.emo_fc_2(features)
        return {
            "heatmap": heatmap,
            "expression": out[:, : self.n_expression],
            "valence": out[:, self.n_expression],
            "arousal": out[:, self.n_expression + 1],
            "features": features,
        }

    def forward(self, x: torch.Tensor) -> dict:
        if self.backbone_frozen and torch.is_grad_enabled():
            # Frozen backbone: no graph through it, so memory and time go to the emotion branch only.
            with torch.no_grad():
                parts = self.forward_backbone(x)
        else:
            parts = self.forward_backbone(x)
        return self.forward_emotion(*parts)

    # -- freezing -----------------------------------------------------------------------------------
    def backbone_modules(self) -> list[nn.Module]:
        return [m for name, m in self.named_children() if name not in EMOTION_MODULES + ("avg_pool_2",)]

    def freeze_backbone(self) -> "EmoNet":
        """Keep the face-alignment part exactly as loaded: no gradients, BatchNorm statistics fixed."""
        self.backbone_frozen = True
        for module in self.backbone_modules():
            module.requires_grad_(False)
        return self.train(self.training)

    def train(self, mode: bool = True) -> "EmoNet":
        super().train(mode)
        if self.backbone_frozen:
            # A frozen network whose BatchNorm running statistics move is not frozen.
            for module in self.backbone_modules():
                module.eval()
        return self
