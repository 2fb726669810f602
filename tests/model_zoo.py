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


# -- transformers and the blocks of today's conv nets (issue: models people actually train) ---------------


class Attention(nn.Module):
    """Multi-head self-attention written out: qkv projection, heads by reshape/transpose, softmax, output."""

    def __init__(self, dim: int, heads: int, causal: bool = False, fused: bool = False) -> None:
        super().__init__()
        self.heads, self.causal, self.fused = heads, causal, fused
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(x).reshape(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4).unbind(0)
        if self.fused:
            o = F.scaled_dot_product_attention(q, k, v, is_causal=self.causal)
        else:
            s = (q @ k.transpose(-2, -1)) * (d // self.heads) ** -0.5
            if self.causal:
                mask = torch.ones(t, t, dtype=torch.bool, device=x.device).tril()
                s = s.masked_fill(~mask, float("-inf"))
            o = s.softmax(-1) @ v
        return self.proj(o.transpose(1, 2).reshape(b, t, d))


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(ln(x)), then x + mlp(ln(x)) with GELU."""

    def __init__(self, dim: int, heads: int, causal: bool = False, fused: bool = False) -> None:
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = Attention(dim, heads, causal, fused)
        self.fc1, self.fc2 = nn.Linear(dim, 2 * dim), nn.Linear(2 * dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x))
        return x + self.fc2(F.gelu(self.fc1(self.ln2(x))))


class ViT(nn.Module):
    """A small vision transformer: patch-embedding conv, CLS token, learned positions, 2 blocks, a head."""

    def __init__(self, dim: int = 12, heads: int = 2, patch: int = 4, size: int = 8, classes: int = 5) -> None:
        super().__init__()
        self.embed = nn.Conv2d(3, dim, patch, stride=patch)
        tokens = (size // patch) ** 2
        self.cls = nn.Parameter(torch.randn(1, 1, dim) * 0.5)
        self.pos = nn.Parameter(torch.randn(1, tokens + 1, dim) * 0.5)
        self.blocks = nn.Sequential(Block(dim, heads), Block(dim, heads, fused=True))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.embed(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], dim=1) + self.pos
        x = self.norm(self.blocks(x))
        return self.head(x[:, 0])


class GPT(nn.Module):
    """A small GPT-style decoder: token + position embeddings, causal self-attention, GELU MLP, tied head."""

    def __init__(self, vocab: int = 17, dim: int = 12, heads: int = 2, context: int = 6) -> None:
        super().__init__()
        self.wte = nn.Embedding(vocab, dim)
        self.wpe = nn.Embedding(context, dim)
        self.blocks = nn.Sequential(Block(dim, heads, causal=True), Block(dim, heads, causal=True, fused=True))
        self.ln = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, vocab, bias=False)
        self.head.weight = self.wte.weight  # tied

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        pos = torch.arange(idx.shape[1], device=idx.device)
        x = self.wte(idx) + self.wpe(pos)
        return self.head(self.ln(self.blocks(x)))


class Mixer(nn.Module):
    """An MLP-mixer block: token mixing across patches (transposed Linear), channel mixing, a gating product."""

    def __init__(self, dim: int = 8, tokens: int = 4, classes: int = 3) -> None:
        super().__init__()
        self.embed = nn.Linear(12, dim)
        self.ln1, self.ln2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.tok = nn.Linear(tokens, tokens)
        self.ch1, self.ch2 = nn.Linear(dim, 2 * dim), nn.Linear(2 * dim, dim)
        self.gate = nn.Linear(dim, dim)
        self.head = nn.Linear(dim, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: [B, tokens, 12]
        x = self.embed(x)
        x = x + self.tok(self.ln1(x).transpose(1, 2)).transpose(1, 2)
        h = self.ln2(x)
        x = x + self.ch2(F.gelu(self.ch1(h))) * torch.sigmoid(self.gate(h))  # activation x activation
        return self.head(x.mean(1))


class SEBlock(nn.Module):
    """Inverted residual with SiLU and squeeze-excitation (EfficientNet / MixNet style)."""

    def __init__(self, c: int = 6) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, c, 3, padding=1)
        self.expand = nn.Conv2d(c, 2 * c, 1)
        self.bn = nn.BatchNorm2d(2 * c)
        self.dw = nn.Conv2d(2 * c, 2 * c, 3, padding=1, groups=2 * c)
        self.se1, self.se2 = nn.Conv2d(2 * c, 3, 1), nn.Conv2d(3, 2 * c, 1)
        self.project = nn.Conv2d(2 * c, c, 1)
        self.head = nn.Linear(c, 4)
        _randomize_batch_norm(self, seed=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.silu(self.stem(x))
        h = F.silu(self.bn(self.expand(x)))
        h = F.hardswish(self.dw(h))
        s = torch.sigmoid(self.se2(F.silu(self.se1(h.mean((2, 3), keepdim=True)))))
        x = x + self.project(h * s)
        return self.head(x.mean((2, 3)))


class LayerNorm2d(nn.Module):
    """ConvNeXt's channels-first LayerNorm, written out (a mean and a variance over channels)."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.weight, self.bias = nn.Parameter(torch.rand(c) + 0.5), nn.Parameter(torch.rand(c) * 0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u = x.mean(1, keepdim=True)
        s = (x - u).pow(2).mean(1, keepdim=True)
        x = (x - u) / torch.sqrt(s + 1e-6)
        return self.weight[:, None, None] * x + self.bias[:, None, None]


class ConvNeXtBlock(nn.Module):
    """A ConvNeXt block: depthwise 7x7, LayerNorm over channels, pointwise MLP with GELU, layer scale."""

    def __init__(self, c: int = 8) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, c, 2, stride=2)
        self.norm0 = LayerNorm2d(c)
        self.dw = nn.Conv2d(c, c, 7, padding=3, groups=c)
        self.norm = nn.LayerNorm(c)
        self.pw1, self.pw2 = nn.Linear(c, 4 * c), nn.Linear(4 * c, c)
        self.gamma = nn.Parameter(torch.rand(c) + 0.5)
        self.head = nn.Linear(c, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm0(self.stem(x))
        h = self.dw(x).permute(0, 2, 3, 1)
        h = self.pw2(F.gelu(self.pw1(self.norm(h)), approximate="tanh")) * self.gamma
        x = x + h.permute(0, 3, 1, 2)
        return self.head(x.mean((2, 3)))


class SplitAttention(nn.Module):
    """ResNeSt split attention: radix-2 grouped conv, a sum over the radix axis, softmax across it."""

    def __init__(self, c: int = 4, radix: int = 2) -> None:
        super().__init__()
        self.c, self.radix = c, radix
        self.stem = nn.Conv2d(3, c, 3, padding=1)
        self.conv = nn.Conv2d(c, c * radix, 3, padding=1, groups=radix)
        self.fc1, self.fc2 = nn.Conv2d(c, 6, 1), nn.Conv2d(6, c * radix, 1)
        self.head = nn.Linear(c, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.stem(x))
        h = F.relu(self.conv(x))
        b = h.shape[0]
        splits = h.reshape(b, self.radix, self.c, h.shape[2], h.shape[3])
        gap = splits.sum(1).mean((2, 3), keepdim=True)  # a sum over the radix axis (dim 1)
        att = self.fc2(F.relu(self.fc1(gap))).reshape(b, self.radix, self.c, 1, 1).softmax(1)
        out = (splits * att).sum(1)
        return self.head(out.mean((2, 3)))


ZOO.update({
    "vit": (ViT, (3, 8, 8)),
    "mixer": (Mixer, (4, 12)),
    "se": (SEBlock, (3, 8, 8)),
    "convnext": (ConvNeXtBlock, (3, 8, 8)),
    "splitattn": (SplitAttention, (3, 6, 6)),
})
#: Models whose input is token ids: name -> (class, (tokens,), vocabulary)
TOKEN_ZOO = {"gpt": (GPT, (6,), 17)}


def build_tokens(name: str, seed: int = 0) -> tuple[nn.Module, tuple[int, ...], int]:
    torch.manual_seed(seed)
    cls, shape, vocab = TOKEN_ZOO[name]
    return cls().eval(), shape, vocab


# -- full-size conv nets for neuron-level counting (benchmarks and a smoke test) ---------------------------

class BasicBlock(nn.Module):
    """ResNet's two-conv residual block, with a strided 1x1 projection when the shape changes."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.b1 = nn.BatchNorm2d(cout)
        self.c2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.b2 = nn.BatchNorm2d(cout)
        self.down = None
        if stride != 1 or cin != cout:
            self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.b2(self.c2(F.relu(self.b1(self.c1(x)))))
        return F.relu(y + (x if self.down is None else self.down(x)))


class ResNet18(nn.Module):
    """ResNet-18 (He et al. 2016): 7x7/2 stem, 3x3/2 max-pool (overlapping), 4 stages of 2 blocks."""

    def __init__(self, classes: int = 1000, width: int = 64) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, width, 7, 2, 3, bias=False)
        self.bn = nn.BatchNorm2d(width)
        blocks, cin = [], width
        for i, cout in enumerate([width, 2 * width, 4 * width, 8 * width]):
            blocks += [BasicBlock(cin, cout, 1 if i == 0 else 2), BasicBlock(cout, cout, 1)]
            cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(cin, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.bn(self.stem(x))), 3, 2, 1)
        x = self.blocks(x)
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


class VGG11(nn.Module):
    """VGG-11 (configuration A) with batch norm, for 32x32 inputs: 8 conv layers, 5 max-pools, 3 dense layers."""

    CFG = (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M")

    def __init__(self, classes: int = 10, cin: int = 3) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for v in self.CFG:
            if v == "M":
                layers.append(nn.MaxPool2d(2))
            else:
                layers += [nn.Conv2d(cin, v, 3, padding=1), nn.BatchNorm2d(v), nn.ReLU()]
                cin = v
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(),
                                        nn.Linear(512, classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).flatten(1))
