"""Mixed precision that still learns at lr 1e-6, and the module settings training needs.

bf16 has 8 bits of mantissa: a weight of 0.02 moves in steps of ~1.2e-4, so an Adam update
of ~1e-6 rounds back to the same value (measured: after 10 steps at lr 1e-6, 98.5% of bf16
weights unchanged). Two ways out, both kept here:

- parameters in fp32 and the forward pass under bf16 autocast: the optimizer updates fp32
  values directly (16 bytes per parameter: weights, grads, two Adam moments);
- parameters in bf16 for compute and memory, with an fp32 *master copy* the optimizer owns
  (`MasterWeightOptimizer`): gradients are copied up to fp32, the step runs on the master,
  and the result is rounded back into the bf16 parameters. Small updates accumulate in the
  master until they move the bf16 value. The master and the optimizer state can live on the
  CPU (`offload=True`) to keep the GPU for the model, activations and the rollout engine.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import torch

OptimizerFactory = Callable[[Iterable[torch.nn.Parameter]], torch.optim.Optimizer]


class MasterWeightOptimizer:
    """An optimizer over fp32 master copies of (typically bf16) model parameters.

    Usage is that of a torch optimizer: `zero_grad()`, backward on the model, then
    `clip_grad_norm(max_norm)` and `step()`.
    """

    def __init__(self, params: Iterable[torch.nn.Parameter], factory: OptimizerFactory, *,
                 offload: bool = False) -> None:
        self.params = [p for p in params if p.requires_grad]
        self.offload = offload
        self.master: list[torch.nn.Parameter] = []
        for p in self.params:
            device = torch.device("cpu") if offload else p.device
            master = torch.nn.Parameter(p.detach().to(device=device, dtype=torch.float32,
                                                      copy=True))
            if offload and device.type == "cpu" and torch.cuda.is_available():
                master.data = master.data.pin_memory()
            self.master.append(master)
        self.inner = factory(self.master)
        self._gathered = False

    @property
    def param_groups(self) -> list[dict[str, Any]]:
        return self.inner.param_groups

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.params:
            p.grad = None
        for m in self.master:
            m.grad = None
        self._gathered = False

    def _gather_grads(self) -> None:
        if self._gathered:
            return
        self._gathered = True
        for p, m in zip(self.params, self.master, strict=True):
            if p.grad is None:
                m.grad = None
                continue
            m.grad = p.grad.detach().to(device=m.device, dtype=torch.float32, non_blocking=True)
            # The low-precision grad is no longer needed: free it before the step.
            p.grad = None

    def clip_grad_norm(self, max_norm: float) -> float:
        """Collect the gradients into fp32 and clip them; returns the pre-clip norm."""
        self._gather_grads()
        grads = [m for m in self.master if m.grad is not None]
        if not grads:
            return 0.0
        return float(torch.nn.utils.clip_grad_norm_(grads, max_norm))

    @torch.no_grad()
    def step(self) -> None:
        self._gather_grads()
        self.inner.step()
        for p, m in zip(self.params, self.master, strict=True):
            p.copy_(m.to(device=p.device, dtype=p.dtype, non_blocking=True))
        self._gathered = False

    def state_dict(self) -> dict[str, Any]:
        return self.inner.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.inner.load_state_dict(state)


class DirectOptimizer:
    """A torch optimizer on the parameters themselves (fp32 parameters: they *are* the
    master weights); same interface as `MasterWeightOptimizer`."""

    def __init__(self, params: Iterable[torch.nn.Parameter], factory: OptimizerFactory) -> None:
        self.params = [p for p in params if p.requires_grad]
        self.inner = factory(self.params)

    @property
    def param_groups(self) -> list[dict[str, Any]]:
        return self.inner.param_groups

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.inner.zero_grad(set_to_none=set_to_none)

    def clip_grad_norm(self, max_norm: float) -> float:
        return float(torch.nn.utils.clip_grad_norm_(self.params, max_norm))

    def step(self) -> None:
        self.inner.step()

    def state_dict(self) -> dict[str, Any]:
        return self.inner.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.inner.load_state_dict(state)


TrainOptimizer = MasterWeightOptimizer | DirectOptimizer


def build_optimizer(model: torch.nn.Module, factory: OptimizerFactory, *,
                    offload: bool = False) -> TrainOptimizer:
    """fp32 parameters are stepped directly (unless offloading); anything narrower gets an
    fp32 master copy."""
    params = [p for p in model.parameters() if p.requires_grad]
    if all(p.dtype == torch.float32 for p in params) and not offload:
        return DirectOptimizer(params, factory)
    return MasterWeightOptimizer(params, factory, offload=offload)


def adamw_factory(lr: float, weight_decay: float, betas: tuple[float, float] = (0.9, 0.999),
                  eps: float = 1e-8) -> OptimizerFactory:
    def make(params: Iterable[torch.nn.Parameter]) -> torch.optim.Optimizer:
        params = list(params)
        # The fused CUDA kernel when every tensor is on a GPU; the foreach one otherwise.
        fused = bool(params) and all(p.is_cuda for p in params)
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, betas=betas,
                                 eps=eps, fused=fused or None)

    return make


def disable_dropout(model: torch.nn.Module) -> None:
    """Rollouts and the update must score the same distribution: no dropout, even in
    train mode (which gradient checkpointing needs)."""
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
        for name in ("attention_dropout", "dropout", "attn_dropout", "resid_dropout"):
            value = getattr(module, name, None)
            if isinstance(value, float):
                setattr(module, name, 0.0)
    config = getattr(model, "config", None)
    for name in ("attention_dropout", "hidden_dropout", "resid_pdrop", "embd_pdrop",
                 "attn_pdrop", "dropout", "attention_probs_dropout_prob",
                 "hidden_dropout_prob"):
        if config is not None and isinstance(getattr(config, name, None), float):
            setattr(config, name, 0.0)


def enable_gradient_checkpointing(model: Any) -> bool:
    """Recompute each decoder layer in the backward pass instead of storing its
    activations; False when the model does not support it."""
    if not getattr(model, "supports_gradient_checkpointing", False):
        return False
    kwargs = {"use_reentrant": False}
    if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5.x
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
    return True


def autocast(device: torch.device, param_dtype: torch.dtype,
             compute_dtype: torch.dtype) -> AbstractContextManager[Any]:
    """bf16/fp16 autocast when the compute dtype is narrower than the parameters."""
    if compute_dtype == param_dtype:
        return nullcontext()
    return torch.autocast(device_type=device.type, dtype=compute_dtype)
