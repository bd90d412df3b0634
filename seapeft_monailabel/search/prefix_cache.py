"""Audit toggles that recompute only what a unit can change.

An audit compares the network with the current gates against the same gates with one site changed
(a unit off, or a sibling level in its place). Every module that finished computing before that
site's host started has the same input and weights in both forwards, so its output is the same: the
toggled forward can take it from the baseline forward instead of recomputing it: for a unit deep in a
UNet, the encoder levels before it (the layers after it, the full-resolution head included, always run).

:class:`PrefixCache` records, during the baseline forward of one batch, the outputs of the modules
that finish before each host of interest starts; :meth:`PrefixCache.toggled` then runs the network
with those modules answering from the record. The network runs in eval mode with deterministic
control flow (no module's call order depends on the gates outside the hosts), so the toggled output
equals a full forward's (tested). Modules inside a host (its base module, its units) are never
cached, nor any module called more than once per forward, nor an output that a later operation of the
baseline forward writes into in place (MONAI's blocks use in-place activations); a host inside another
host reuses what precedes the outer one.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import torch
from torch import nn

from ..peft.host import UnitHost


class PrefixCache:
    """Baseline outputs of the modules that precede given hosts, for one input batch at a time.

    Args:
        network: the network (its hosts are :class:`~seapeft_monailabel.peft.host.UnitHost`).
    """

    def __init__(self, network: nn.Module):
        self.network = network
        inside = {id(m) for _, host in network.named_modules() if isinstance(host, UnitHost)
                  for m in host.modules() if m is not host}
        self._modules = {name: m for name, m in network.named_modules() if name and id(m) not in inside}
        self._hosts = {name for name, m in self._modules.items() if isinstance(m, UnitHost)}
        self._cuts: dict[str, list[str]] | None = None
        self._outputs: dict[str, object] = {}

    def _trace(self, x: torch.Tensor) -> dict[str, list[str]]:
        """Per host: the outermost modules that end before it starts (from one forward of ``x``)."""
        start: dict[str, int] = {}
        end: dict[str, int] = {}
        calls: dict[str, int] = {}
        clock = iter(range(10**9))
        handles = []
        for name, module in self._modules.items():
            def before(_m, _a, name=name):
                calls[name] = calls.get(name, 0) + 1
                start[name] = next(clock)

            def after(_m, _a, _o, name=name):
                end[name] = next(clock)
            handles += [module.register_forward_pre_hook(before), module.register_forward_hook(after)]
        try:
            self.network(x)
        finally:
            for handle in handles:
                handle.remove()
        once = [n for n in self._modules if calls.get(n) == 1]
        cuts = {}
        for host in self._hosts:
            if calls.get(host) != 1:
                cuts[host] = []
                continue
            done = {n for n in once if end[n] < start[host]}
            cuts[host] = [n for n in done if n.rpartition(".")[0] not in done]
        return cuts

    def cut(self, host: str) -> list[str]:
        """The modules answered from the record when only ``host`` differs from the baseline.

        A host inside another one (a site within a block that a block unit wraps) changes what the outer
        host computes, so it reuses what precedes the outer host."""
        if self._cuts is None:
            raise RuntimeError("PrefixCache.record must run before cut")
        outer = next((h for h in self._cuts if host == h or host.startswith(h + ".")), None)
        if outer is None:
            raise KeyError(f"PrefixCache: '{host}' is not a unit host of the network")
        return self._cuts[outer]

    def record(self, x: torch.Tensor, hosts: Iterable[str]) -> torch.Tensor:
        """Baseline forward of ``x`` ``(B, C, *patch)``, keeping the outputs the toggles of ``hosts`` reuse."""
        if self._cuts is None:
            self._cuts = self._trace(x)
        wanted = {n for h in hosts for n in self.cut(h)}
        kept = {}  # name -> (output, the versions of its tensors when the module returned it)
        handles = [self._modules[n].register_forward_hook(
            lambda _m, _a, out, n=n: kept.__setitem__(n, (out, _versions(out)))) for n in wanted]
        try:
            y = self.network(x)
        finally:
            for handle in handles:
                handle.remove()
        # an output a later operation wrote into in place (MONAI's blocks apply in-place activations and sums)
        # is not what the module returned: that module is recomputed; so is one whose output holds no tensors
        self._outputs = {n: (out, versions) for n, (out, versions) in kept.items()
                         if versions is not None and _versions(out) == versions}
        return y

    @contextmanager
    def _answering(self, names: list[str]) -> Iterator[None]:
        """Inside the block the named modules that have a usable record return it without computing."""
        names = [n for n in names if n in self._outputs]
        for n in names:
            output, versions = self._outputs[n]
            if _versions(output) != versions:  # written into in place since the record
                raise RuntimeError(f"PrefixCache: the recorded output of '{n}' was modified in place")
            self._modules[n].forward = lambda *_a, _out=output, **_k: _out
        try:
            yield
        finally:
            for n in names:
                del self._modules[n].forward

    def toggled(self, x: torch.Tensor, host: str) -> torch.Tensor:
        """Forward of the batch last recorded, under the current gates, which differ from it only at ``host``."""
        with self._answering(self.cut(host)):
            return self.network(x)


def _versions(output) -> tuple[int, ...] | None:
    """The in-place write counters of a module output (a tensor, or a tuple or list of tensors); None for
    anything else (it cannot be checked, so it is not reused)."""
    tensors = [output] if isinstance(output, torch.Tensor) else list(output) if isinstance(output, (tuple, list)) else []
    if not tensors or not all(isinstance(t, torch.Tensor) for t in tensors):
        return None
    return tuple(t._version for t in tensors)
