"""TarFlow-style transformer autoregressive blocks with rational-quadratic splines.

A row of ``d`` features is read as a sequence of ``T`` *tokens* of ``p``
features each (one feature per token for tabular data, one patch per token
for images; :func:`token_layout`).  A :class:`TransformerBlock` runs a causal
transformer over the sequence shifted right by one position behind a learned
*start* token, so its output at position ``t`` has seen tokens ``< t`` only;
a zero-initialised linear head turns it into the parameters of a monotone
rational-quadratic spline for each of the ``p`` features of token ``t``.  The
Jacobian is block triangular with diagonal blocks, so ``log|det J|`` is the sum
of the splines' log-derivatives, and every token, the first included (it is
conditioned on the start token), is transformed.  :func:`transformer_stack`
stacks blocks, reversing the token order every other block.

The forward direction (data -> latent, what training evaluates) is one
transformer pass; the inverse decodes token by token, ``T`` steps of one
position each, reusing the keys and values of the positions already decoded
(a key/value cache), so one inverse costs about as many operations as one
forward pass, but in ``T`` sequential steps per block.

References: Zhai et al., "Normalizing Flows are Capable Generative Models"
(TarFlow), arXiv:2412.06329; Durkan et al., "Neural Spline Flows",
arXiv:1906.04032.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from .elementwise import ElementwiseMap, soft_clamp
from .transforms import ActNorm, Transform

__all__ = [
    "CONDITIONER_INPUT_BOUND",
    "ATTENTION_ELEMENTS",
    "token_layout",
    "CausalTransformer",
    "TransformerBlock",
    "transformer_stack",
]

# The transformer sees ``c tanh(x / c)`` of its inputs, never ``x`` itself: a point far
# beyond the data (|x| ~ 1e3 standardised) would otherwise drive the attention and
# the spline parameters of every later token to extremes, and the inverse would have to
# invert splines it was never trained on.  The conditioner need not be invertible, so the
# flow stays a bijection; at |x| <= 3 the clamp is within 12% of the identity.
CONDITIONER_INPUT_BOUND = 5.0
# Standard deviation of the initial embedding and attention/MLP weights (GPT-2's choice).
INIT_STD = 0.02
# Without gradients, a forward pass goes through the transformer in chunks of rows whose
# attention weights (rows * heads * T^2 values) stay below this many: ~128 MB in float64,
# e.g. 8192 rows at 16 tokens but 1024 rows at 64.  (The inverse needs no chunks: one
# decoding step attends from a single position.)
ATTENTION_ELEMENTS = 2**24
# Width of the transformer's feed-forward layer relative to the embedding.
MLP_RATIO = 4


def token_layout(
    features: int,
    image_shape: Sequence[int] | None = None,
    patch_shape: Sequence[int] | None = None,
) -> Tensor:
    """Which features make up each token: a ``(n_tokens, token_size)`` index table.

    Parameters
    ----------
    features : int
        Number of features ``d`` of a row.
    image_shape : sequence of int, optional
        Shape of the array that a row is a C-order flattening of, e.g.
        ``(8, 8)`` for sklearn's digits.  Required with ``patch_shape``.
    patch_shape : sequence of int, optional
        Shape of one patch (one token), dividing ``image_shape`` dimension by
        dimension.  ``None``: one token per feature.

    Returns
    -------
    layout : LongTensor of shape (n_tokens, token_size)
        ``layout[t]`` lists the features of token ``t``; tokens go in C order
        over the patch grid, features in C order within a patch.

    Examples
    --------
    >>> token_layout(4, (2, 2), (1, 2)).tolist()
    [[0, 1], [2, 3]]
    >>> token_layout(3).tolist()
    [[0], [1], [2]]
    """
    if patch_shape is None:
        if image_shape is not None and math.prod(image_shape) != features:
            raise ValueError(f"image_shape {tuple(image_shape)} does not hold {features} features.")
        return torch.arange(features).unsqueeze(1)
    if image_shape is None:
        raise ValueError("patch_shape needs image_shape (the shape of one row as an image).")
    image_shape, patch_shape = tuple(int(s) for s in image_shape), tuple(int(s) for s in patch_shape)
    if math.prod(image_shape) != features:
        raise ValueError(f"image_shape {image_shape} does not hold {features} features.")
    if len(patch_shape) != len(image_shape) or any(
        p < 1 or s % p for s, p in zip(image_shape, patch_shape)
    ):
        raise ValueError(f"patch_shape {patch_shape} does not tile image_shape {image_shape}.")
    grid = [s // p for s, p in zip(image_shape, patch_shape)]
    split = [v for pair in zip(grid, patch_shape) for v in pair]
    index = torch.arange(features).reshape(split)
    n = len(image_shape)
    # (g0, p0, g1, p1, ...) -> (g0, g1, ..., p0, p1, ...)
    index = index.permute(*range(0, 2 * n, 2), *range(1, 2 * n, 2))
    return index.reshape(math.prod(grid), math.prod(patch_shape))


class _KeyValueCache:
    """Keys and values of the positions decoded so far, for one attention layer."""

    def __init__(self) -> None:
        self.keys: Tensor | None = None
        self.values: Tensor | None = None
        self.length = 0

    def extend(self, keys: Tensor, values: Tensor, capacity: int) -> tuple[Tensor, Tensor]:
        """Append one position; return the keys and values of all positions so far."""
        if torch.is_grad_enabled():
            # Writing into a buffer would modify tensors saved for the backward pass.
            self.keys = keys if self.keys is None else torch.cat([self.keys, keys], dim=2)
            self.values = values if self.values is None else torch.cat([self.values, values], dim=2)
            self.length = self.keys.shape[2]
            return self.keys, self.values
        if self.keys is None:
            # Preallocated: concatenating at every step would copy O(T^2) entries.
            shape = keys.shape[:2] + (capacity,) + keys.shape[3:]
            self.keys, self.values = keys.new_empty(shape), values.new_empty(shape)
        self.keys[:, :, self.length] = keys[:, :, 0]
        self.values[:, :, self.length] = values[:, :, 0]
        self.length += 1
        return self.keys[:, :, : self.length], self.values[:, :, : self.length]


class _SelfAttention(nn.Module):
    def __init__(self, width: int, n_heads: int) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)

    def forward(self, h: Tensor, cache: _KeyValueCache | None = None, capacity: int = 0) -> Tensor:
        n, length, width = h.shape
        q, k, v = self.qkv(h).view(n, length, 3, self.n_heads, width // self.n_heads).permute(2, 0, 3, 1, 4)
        if cache is None:
            out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            # One new position, which may attend to itself and every cached one.
            k, v = cache.extend(k, v, capacity)
            out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(n, length, width))


class _Layer(nn.Module):
    """Pre-norm transformer layer: causal self-attention, then a GELU MLP."""

    def __init__(self, width: int, n_heads: int) -> None:
        super().__init__()
        self.norm_attention = nn.LayerNorm(width)
        self.attention = _SelfAttention(width, n_heads)
        self.norm_mlp = nn.LayerNorm(width)
        hidden = MLP_RATIO * width
        self.mlp = nn.Sequential(nn.Linear(width, hidden), nn.GELU(), nn.Linear(hidden, width))

    def forward(self, h: Tensor, cache: _KeyValueCache | None = None, capacity: int = 0) -> Tensor:
        h = h + self.attention(self.norm_attention(h), cache, capacity)
        return h + self.mlp(self.norm_mlp(h))


class CausalTransformer(nn.Module):
    """Tokens ``(n, T, p)`` -> parameters ``(n, T, p, n_params)`` of token ``t`` from tokens ``< t``.

    The sequence is shifted right by one position behind a learned start
    embedding, gets a learned position embedding, and goes through ``depth``
    pre-norm causal transformer layers; a final LayerNorm and a
    zero-initialised linear head give the parameters (all zero at first).

    Parameters
    ----------
    n_tokens, token_size : int
        Sequence length ``T`` and features per token ``p``.
    n_params : int
        Parameters per feature (``3K - 1`` for a spline with ``K`` bins).
    embed_dim : int
        Embedding width; a multiple of ``n_heads``.
    depth : int
        Number of transformer layers.
    n_heads : int
        Attention heads.
    generator : torch.Generator, optional
        Seeds the initialisation.
    """

    def __init__(
        self,
        n_tokens: int,
        token_size: int,
        n_params: int,
        embed_dim: int = 64,
        depth: int = 2,
        n_heads: int = 4,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        if embed_dim % n_heads:
            raise ValueError(f"embed_dim={embed_dim} is not a multiple of n_heads={n_heads}.")
        self.n_tokens, self.token_size, self.n_params = n_tokens, token_size, n_params
        self.embed = nn.Linear(token_size, embed_dim)
        self.start = nn.Parameter(torch.zeros(embed_dim))
        self.position = nn.Parameter(torch.zeros(n_tokens, embed_dim))
        self.layers = nn.ModuleList(_Layer(embed_dim, n_heads) for _ in range(depth))
        self.norm = nn.LayerNorm(embed_dim)
        self.head = nn.Linear(embed_dim, token_size * n_params)
        with torch.no_grad():
            for name, p in self.named_parameters():
                if "norm" in name:
                    continue  # LayerNorms start at (1, 0)
                if name.endswith("bias"):
                    p.zero_()
                    continue
                std = INIT_STD
                if name.endswith("proj.weight") or name.endswith("mlp.2.weight"):
                    # Residual branches scaled down with depth (GPT-2), so the sum stays O(1).
                    std = INIT_STD / math.sqrt(2 * depth)
                p.normal_(0.0, std, generator=generator)
            # Zero head => zero spline parameters => every block starts as the identity.
            self.head.weight.zero_()
            self.head.bias.zero_()

    @staticmethod
    def _bounded(tokens: Tensor) -> Tensor:
        return soft_clamp(tokens, CONDITIONER_INPUT_BOUND)

    def _out(self, h: Tensor) -> Tensor:
        params = self.head(self.norm(h))
        return params.unflatten(-1, (self.token_size, self.n_params))

    def forward(self, tokens: Tensor) -> Tensor:
        n = tokens.shape[0]
        shifted = self.embed(self._bounded(tokens[:, :-1]))
        h = torch.cat([self.start.expand(n, 1, -1), shifted], dim=1) + self.position
        for layer in self.layers:
            h = layer(h)
        return self._out(h)

    def new_cache(self) -> list[_KeyValueCache]:
        """Empty key/value caches, one per layer, for :meth:`step`."""
        return [_KeyValueCache() for _ in self.layers]

    def step(self, previous: Tensor | None, position: int, cache: list[_KeyValueCache], n: int) -> Tensor:
        """Parameters ``(n, p, n_params)`` of token ``position``, given token ``position - 1``.

        ``previous`` is ``None`` at position 0 (the start token is used);
        ``cache`` holds the keys and values of positions ``< position``, and
        is extended with this one.
        """
        if previous is None:
            h = self.start.expand(n, 1, -1)
        else:
            h = self.embed(self._bounded(previous)).unsqueeze(1)
        h = h + self.position[position]
        for layer, layer_cache in zip(self.layers, cache):
            h = layer(h, layer_cache, self.n_tokens)
        return self._out(h)[:, 0]

    def extra_repr(self) -> str:
        return f"n_tokens={self.n_tokens}, token_size={self.token_size}, n_params={self.n_params}"


class TransformerBlock(Transform):
    """``y_t = f(x_t; theta_t(x_{<t}))`` over tokens, with a causal transformer conditioner.

    Parameters
    ----------
    layout : LongTensor of shape (n_tokens, token_size)
        The features of each token, in autoregressive order (a permutation of
        all features, see :func:`token_layout`).
    elementwise_map : ElementwiseMap
        The scalar bijection ``f``, e.g. ``SplineMap(8, 3.0)``.
    embed_dim, depth, n_heads : int
        Size of the :class:`CausalTransformer`.
    generator : torch.Generator, optional
        Seeds the initialisation.

    Examples
    --------
    >>> import torch
    >>> from skflow.engine.elementwise import SplineMap
    >>> block = TransformerBlock(token_layout(6, (2, 3), (1, 3)), SplineMap(4), embed_dim=16, n_heads=2)
    >>> y, ladj = block(torch.randn(5, 6))
    >>> y.shape, ladj.shape
    (torch.Size([5, 6]), torch.Size([5]))
    """

    def __init__(
        self,
        layout: Tensor,
        elementwise_map: ElementwiseMap,
        embed_dim: int = 64,
        depth: int = 2,
        n_heads: int = 4,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        layout = torch.as_tensor(layout, dtype=torch.long)
        flat = layout.flatten()
        if layout.dim() != 2 or not torch.equal(torch.sort(flat).values, torch.arange(flat.numel())):
            raise ValueError("layout must be a 2-D table holding every feature exactly once.")
        self.register_buffer("order", flat)
        self.register_buffer("inverse_order", torch.argsort(flat))
        self.n_tokens, self.token_size = layout.shape
        self.map = elementwise_map
        self.conditioner = CausalTransformer(
            self.n_tokens, self.token_size, elementwise_map.n_params, embed_dim, depth, n_heads, generator
        )

    def _tokens(self, x: Tensor) -> Tensor:
        return x[:, self.order].view(x.shape[0], self.n_tokens, self.token_size)

    def _untokens(self, tokens: Tensor) -> Tensor:
        return tokens.reshape(tokens.shape[0], -1)[:, self.inverse_order]

    def _chunked(self, fn: Callable[[Tensor], tuple[Tensor, Tensor]], x: Tensor) -> tuple[Tensor, Tensor]:
        n_heads = self.conditioner.layers[0].attention.n_heads if len(self.conditioner.layers) else 1
        rows = max(1, ATTENTION_ELEMENTS // (n_heads * self.n_tokens**2))
        if torch.is_grad_enabled() or x.shape[0] <= rows:
            return fn(x)
        parts = [fn(chunk) for chunk in x.split(rows)]
        return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])

    def _forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        tokens = self._tokens(x)
        y, ladj = self.map(tokens, self.conditioner(tokens))
        return self._untokens(y), ladj.flatten(1).sum(dim=1)

    def _inverse(self, y: Tensor) -> tuple[Tensor, Tensor]:
        tokens = self._tokens(y)
        n = y.shape[0]
        cache = self.conditioner.new_cache()
        decoded, ladj, previous = [], y.new_zeros(n), None
        # Step t reads tokens < t only, all exact by then, so token t's parameters (and
        # its log-derivative) are final once computed.
        for t in range(self.n_tokens):
            params = self.conditioner.step(previous, t, cache, n)
            previous, ladj_t = self.map.inverse(tokens[:, t], params)
            decoded.append(previous)
            ladj = ladj + ladj_t.sum(dim=1)
        return self._untokens(torch.stack(decoded, dim=1)), ladj

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return self._chunked(self._forward, x)

    def inverse(self, y: Tensor) -> tuple[Tensor, Tensor]:
        return self._inverse(y)

    def extra_repr(self) -> str:
        return f"n_tokens={self.n_tokens}, token_size={self.token_size}"


def transformer_stack(
    features: int,
    n_layers: int,
    layout: Tensor,
    elementwise_map_factory: Callable[[], ElementwiseMap],
    embed_dim: int = 64,
    depth: int = 2,
    n_heads: int = 4,
    generator: torch.Generator | None = None,
) -> list[Transform]:
    """The layers of a transformer spline flow: ``n_layers`` x (ActNorm, block).

    Every other block reverses the token order, so each token is conditioned
    on the tokens before it in one block and on those after it in the next.

    Parameters
    ----------
    features : int
        Data dimension.
    n_layers : int
        Number of :class:`TransformerBlock` s.
    layout : LongTensor of shape (n_tokens, token_size)
        Token layout of the first block (see :func:`token_layout`).
    elementwise_map_factory : callable ``() -> ElementwiseMap``
        Builds the element-wise bijection of one block.
    embed_dim, depth, n_heads : int
        Size of each block's transformer.
    generator : torch.Generator, optional
        Seeds the initialisation.

    Examples
    --------
    >>> from skflow.engine.elementwise import SplineMap
    >>> layers = transformer_stack(4, 2, token_layout(4), lambda: SplineMap(4), embed_dim=8, n_heads=2)
    >>> [type(t).__name__ for t in layers]
    ['ActNorm', 'TransformerBlock', 'ActNorm', 'TransformerBlock']
    """
    layout = torch.as_tensor(layout, dtype=torch.long)
    layers: list[Transform] = []
    for i in range(n_layers):
        layers.append(ActNorm(features))
        order = layout.flip(0) if i % 2 else layout
        block = TransformerBlock(order, elementwise_map_factory(), embed_dim, depth, n_heads, generator)
        layers.append(block)
    return layers
