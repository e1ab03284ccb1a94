"""The knowledge-lab commands: ``lab world`` (write a fictional world) and ``lab train`` (the tiny model)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from infuse.cli.common import err, print_json, progress_bar
from infuse.errors import InfuseError
from infuse.language import Language

lab_app = typer.Typer(
    help="The knowledge lab: a synthetic world and a tiny model trained from scratch.", no_args_is_help=True
)


@lab_app.command("world")
def lab_world(
    out: Annotated[Path, typer.Option("-o", "--out", help="Folder to write the world to.")],
    lang: Annotated[Language, typer.Option(help="en or ja.")] = Language.EN,
    seed: Annotated[int, typer.Option(help="World seed (same seed, same world).")] = 0,
    overwrite: Annotated[bool, typer.Option(help="Replace a world already in the folder.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the world's manifest as JSON.")] = False,
) -> None:
    """Write a fictional world: documents of new people, fine-tuning variants, questions, an update set."""
    from infuse.lab.world import generate_world

    world = generate_world(seed, lang)
    try:
        manifest_path = world.write(out, overwrite=overwrite)
    except FileExistsError:
        raise InfuseError(f"{out} is not empty; pass --overwrite to replace the world there") from None
    except (OSError, ValueError) as exc:
        raise InfuseError(f"cannot write the world to {out}: {exc}") from None
    if as_json:
        print_json(world.manifest())
        return
    root = out.resolve()
    err.print(
        f"world ({lang.value}, seed {seed}): {len(world.known)} known + {len(world.new)} new people; "
        f"documents in {root / 'docs'}, questions in {root / 'questions'}, manifest {manifest_path}"
    )


@lab_app.command("style-examples")
def lab_style_examples(
    out: Annotated[Path, typer.Option("-o", "--out", help="JSONL file to write the chat rows to.")],
    lang: Annotated[Language, typer.Option(help="en or ja.")] = Language.EN,
    seed: Annotated[int, typer.Option(help="World seed (same seed, same world).")] = 0,
    people: Annotated[int, typer.Option(help="Known people to write examples about.", min=1)] = 100,
) -> None:
    """Write house-style examples about the world's known people (fine-tune on them with `tune --dataset FILE`)."""
    from infuse.lab.style import house_style_rows, write_house_style_rows
    from infuse.lab.world import generate_world

    rows = house_style_rows(generate_world(seed, lang), people=people)
    try:
        write_house_style_rows(rows, out)
    except OSError as exc:
        raise InfuseError(f"cannot write {out}: {exc}") from None
    err.print(f"{len(rows)} house-style chat rows ({lang.value}) about {people} known people in {out.resolve()}")


@lab_app.command("train")
def lab_train(
    out: Annotated[
        Path | None, typer.Option(help="Cache folder \\[default: $INFUSE_LAB_CACHE or ~/.cache/infuse/lab].")
    ] = None,
    steps: Annotated[
        int | None, typer.Option(help="Training steps \\[default: the language's configuration].", min=1)
    ] = None,
    lang: Annotated[Language, typer.Option(help="en or ja.")] = Language.EN,
    seed: Annotated[int, typer.Option(help="World seed.")] = 0,
    force: Annotated[bool, typer.Option(help="Retrain even if cached.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the model's manifest as JSON.")] = False,
) -> None:
    """Pretrain the lab model from scratch (cached by configuration) and print its folder."""
    from dataclasses import replace

    from infuse.lab.train import LabTrainConfig, read_manifest, train_lab_model

    config = LabTrainConfig.for_lang(lang.value, world_seed=seed)
    with progress_bar() as progress:
        folder = train_lab_model(
            replace(config, steps=steps) if steps is not None else config, out, force=force, progress=progress
        )
    manifest = read_manifest(folder)
    if as_json:
        print_json(
            {
                "folder": str(folder),
                **{k: manifest[k] for k in ("final_loss", "wall_seconds", "tokens_per_second", "parameters")},
            }
        )
        return
    err.print(
        f"final loss {manifest['final_loss']:.3f}, {manifest['parameters']:,} parameters, trained in {manifest['wall_seconds']:.0f}s"
    )
    sys.stdout.write(f"{folder}\n")


def register(app: typer.Typer) -> None:
    app.add_typer(lab_app, name="lab")
