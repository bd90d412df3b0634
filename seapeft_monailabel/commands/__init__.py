"""One module per ``seapeft`` verb; see :mod:`seapeft_monailabel.cli`."""
