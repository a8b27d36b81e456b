"""The command line, ``deepz <command>`` or ``python -m deepz_core <command>``: one module per
command group; commands are registered here only."""
