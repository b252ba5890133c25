import typer

from bodydance_export.pipeline import main

typer.run(main)
