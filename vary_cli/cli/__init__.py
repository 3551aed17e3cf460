"""The `vary` command line: the Typer app (`app.py`) and one module per command group. The only
folder that prints or exits; everything below it returns values and raises `VaryError`.
"""
