"""The terminal summary printed at the end of ``compress search``."""

from __future__ import annotations

from typing import Any

__all__ = ["print_summary"]


def print_summary(result: Any) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table
    from rich.text import Text

    console = Console()
    card = result.card
    run_dir = escape(str(result.run_dir))  # a user's path may hold rich markup such as "[/x]"
    console.print(f"run directory: {run_dir}  ·  {len(result.trials)} trials  ·  front {len(result.front)}")
    if card is None:
        console.print(f"chosen trial {result.chosen['trial']} (not finalized)")
        return
    table = Table(
        title=Text(f"chosen model (trial {card['trial']}): quality {card['quality']['aggregate']:.1f}")
    )
    for col in ("device", "latency ms", "budget", "peak memory MB", "disk MB", "source"):
        table.add_column(col)
    for device, d in card["devices"].items():
        src = d["source"] + (f" ±{d['error_pct']:.0f}%" if d.get("error_pct") is not None else "")
        table.add_row(
            escape(device),
            f"{d['latency_ms']:.2f}",
            "ok" if d["within_budget"] else "OVER",
            f"{d['peak_memory_mb']:.1f}",
            f"{d['disk_mb']:.2f}",
            src,
        )
    console.print(table)
    console.print(Text(card["arch"]))
    base = card.get("baseline")
    if base:
        console.print(
            f"on the test split ({card.get('quality_split', 'test')}), both trained "
            f"{card['training']['steps']} steps from the supernet: chosen {card['quality']['aggregate']:.1f} vs "
            f"{base['name']} {base['quality']:.1f} ({base['worst_latency_ms']:.2f} ms) — {card['verdict']}",
            markup=False,
        )
    else:
        console.print("no hand-scaled MobileNetV3 baseline meets the budget")
    backbone = card.get("backbone") or {}
    if backbone.get("tagging_map_zero_shot") is not None:
        console.print(
            f"backbone pretrained on captions: tagging mAP {100 * backbone['tagging_map_zero_shot']:.1f} zero-shot "
            f"from '{backbone['prompt']}' beside {100 * backbone['tagging_map_trained_head']:.1f} with the trained "
            "head (the chosen architecture unpruned, float weights, test split)"
        )
    if backbone.get("tagging_map_zero_shot_shipped") is not None:
        console.print(
            f"shipped model's image_embedding output: tagging mAP {100 * backbone['tagging_map_zero_shot_shipped']:.1f} "
            "zero-shot with chosen/text_embeddings.safetensors (float weights, test split)"
        )
    for step, err in card.get("errors", {}).items():
        if not step.endswith(".trace"):
            console.print(Text(f"warning: {step} failed: {err}", style="yellow"))
    console.print(f"artifacts: {run_dir}/chosen  (next: compress report {run_dir})")
