"""Where a benchmark candidate's time goes, by torch.profiler: CPU time per kind of operator.

    from profiling import breakdown, print_breakdowns
    print_breakdowns({"sweep": lambda: sweep(...), "torchcam": lambda: torchcam(...)})

Operators are grouped by what they are (convolution forward, convolution backward, batch
norm, pooling, upsampling, the rest; the frozen copy's fused convolutions count as convolution
forward); each group's self CPU time is summed over ``repeats``
runs and divided by them. The profiler adds a little time per operator, so the groups add up
to a little more than the unprofiled run: read them as shares, side by side.
"""

from __future__ import annotations

from collections.abc import Callable

from torch.profiler import ProfilerActivity, profile

GROUPS = (  # (group, substrings of operator names), first match wins
    ("conv backward", ("convolution_backward",)),
    ("conv forward", ("convolution", "conv2d")),
    ("batch norm", ("batch_norm",)),
    ("pooling", ("pool",)),
    ("upsampling", ("upsample", "interpolate")),
    ("relu / add", ("relu", "threshold", "add", "clamp")),
)


EXACT = {  # operators known by their whole name
    # the frozen TorchScript copy (gradcam_edu.inference): its fused convolutions (batch norm
    # folded in) run inside the graph's own frame, which the profiler shows as one operator
    "forward": "conv forward",
}


def group_of(name: str) -> str:
    if name in EXACT:
        return EXACT[name]
    for group, needles in GROUPS:
        if any(n in name for n in needles):
            return group
    return "other"


def breakdown(fn: Callable[[], object], repeats: int = 2) -> dict[str, float]:
    """Milliseconds of self CPU time per operator group, per run of ``fn`` (after one
    unprofiled warm-up run)."""
    fn()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(repeats):
            fn()
    out: dict[str, float] = {}
    for event in prof.key_averages():
        group = group_of(event.key)
        out[group] = out.get(group, 0.0) + event.self_cpu_time_total / 1000.0 / repeats
    return out


def print_breakdowns(candidates: dict[str, Callable[[], object]], repeats: int = 2,
                     title: str = "profile") -> dict[str, dict[str, float]]:
    """One line per candidate: total, then each group in ms and as a share of the total."""
    found = {name: breakdown(fn, repeats) for name, fn in candidates.items()}
    order = [g for g, _ in GROUPS] + ["other"]
    print(f"{title} (torch.profiler, self CPU time per run, mean of {repeats}):")
    for name, groups in found.items():
        total = sum(groups.values())
        parts = "  ".join(f"{g} {groups[g]:.1f} ({100 * groups[g] / total:.0f}%)"
                          for g in order if groups.get(g, 0.0) >= 0.05)
        print(f"  {name:12s} total {total:.1f} ms: {parts}", flush=True)
    return found
