"""Small models covering the operations the model adapters must map (imported by tests)."""

import torch
import torch.nn.functional as F
from torch import nn


def _randomize_batch_norm(model: nn.Module, seed: int = 0) -> nn.Module:
    gen = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            c = m.num_features
            m.running_mean.copy_(torch.rand(c, generator=gen) * 0.2 - 0.1)
            m.running_var.copy_(torch.rand(c, generator=gen) + 0.5)
            m.weight.data.copy_(torch.rand(c, generator=gen) + 0.5)
            m.bias.data.copy_(torch.rand(c, generator=gen) * 0.2)
    return model


class MLP(nn.Module):
    """Flatten into dense layers, with dropout."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(64, 24)
        self.fc2 = nn.Linear(24, 16)
        self.drop = nn.Dropout(0.3)
        self.out = nn.Linear(16, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(x, 1)
        x = F.relu(self.fc1(x))
        return self.out(self.drop(torch.tanh(self.fc2(x))))


class ResCNN(nn.Module):
    """Conv + BN stem, a residual block with a depthwise conv, a concat of grouped and 1x1 convs."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.c1 = nn.Conv2d(8, 8, 3, padding=1, bias=False)
        self.b1 = nn.BatchNorm2d(8)
        self.dw = nn.Conv2d(8, 8, 3, padding=1, groups=8)
        self.b2 = nn.BatchNorm2d(8)
        self.grouped = nn.Conv2d(8, 8, 3, padding=1, groups=2)
        self.point = nn.Conv2d(8, 4, 1)
        self.fc = nn.Linear(12 * 4 * 4, 10)
        _randomize_batch_norm(self)
        with torch.no_grad():
            self.b1.weight[3] = 0.0  # a pruned channel (network slimming): no incoming edges

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.bn(self.stem(x))), 2)
        x = F.relu(self.b2(self.dw(F.relu(self.b1(self.c1(x))))) + x)
        x = torch.cat([F.relu(self.grouped(x)), F.relu(self.point(x))], dim=1)
        x = F.avg_pool2d(x, 2)
        return self.fc(torch.flatten(x, 1))


class ShuffleNetish(nn.Module):
    """Grouped conv, a channel shuffle by reshape/transpose, padding, global average pooling."""

    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(3, 12, 3, padding=1)
        self.g = nn.Conv2d(12, 12, 1, groups=3)
        self.bn = nn.BatchNorm2d(12)
        self.c2 = nn.Conv2d(12, 6, 3, stride=2, dilation=1)
        self.head = nn.Linear(6, 4)
        _randomize_batch_norm(self, seed=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.leaky_relu(self.c1(x), 0.1)
        x = self.bn(self.g(x))
        n, c, h, w = x.shape
        x = x.reshape(n, 3, c // 3, h, w).transpose(1, 2).reshape(n, c, h, w)  # channel shuffle
        x = F.pad(F.relu(x), (1, 1, 1, 1))
        x = torch.sigmoid(self.c2(x))
        x = F.adaptive_avg_pool2d(x, 1).flatten(1)
        return self.head(x)


ZOO = {
    "mlp": (MLP, (1, 8, 8)),
    "rescnn": (ResCNN, (1, 16, 16)),
    "shufflenetish": (ShuffleNetish, (3, 12, 12)),
}


def build(name: str, seed: int = 0) -> tuple[nn.Module, tuple[int, ...]]:
    torch.manual_seed(seed)
    cls, shape = ZOO[name]
    return cls().eval(), shape
