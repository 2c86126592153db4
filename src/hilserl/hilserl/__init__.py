"""hilserl bring-up: graph descriptions, the process runner, launch support, the `hilserl` command."""
