"""Self-attention for convolutional GANs (Zhang, Goodfellow, Metaxas & Odena, "Self-Attention
Generative Adversarial Networks", ICML 2019, §3 Eq. 1-3).

Every position ``j`` of a feature map attends to all positions ``i``:
``β_{j,i} = softmax_i(f(x_i)ᵀ g(x_j))``, ``o_j = v(Σ_i β_{j,i} h(x_i))`` and ``y = x + γ o``,
with ``g`` (the query, at the output position ``j``), ``f`` (the key, at ``i``), ``h``
(the value) and ``v`` 1x1 convolutions. ``γ`` starts at 0,
so a freshly built block is the identity and the network first relies on local cues.
The query/key width is ``C/8`` and the value width ``C/2``, as in the SAGAN release.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["SelfAttention2d"]


class SelfAttention2d(nn.Module):
    """SAGAN self-attention block ``y = x + γ · v(attention(f(x), g(x), h(x)))`` (Zhang et al.
    2019, Eq. 1-3); insertable at any resolution; ``γ`` initialised to 0."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        inner, value = max(channels // 8, 1), max(channels // 2, 1)
        self.query = nn.Conv2d(channels, inner, 1, bias=False)
        self.key = nn.Conv2d(channels, inner, 1, bias=False)
        self.value = nn.Conv2d(channels, value, 1, bias=False)
        self.out = nn.Conv2d(value, channels, 1, bias=False)
        self.gamma = nn.Parameter(torch.zeros(()))

    def forward(self, x: Tensor, c: Tensor | None = None) -> Tensor:
        n, _, h, w = x.shape
        q = self.query(x).flatten(2)  # g(x_j): (N, C/8, HW)
        k = self.key(x).flatten(2)  # f(x_i): (N, C/8, HW)
        v = self.value(x).flatten(2)  # h(x_i): (N, C/2, HW)
        beta = torch.softmax(q.transpose(1, 2) @ k, dim=-1)  # β[j, i], softmax over i
        o = (v @ beta.transpose(1, 2)).view(n, -1, h, w)
        return x + self.gamma * self.out(o)
