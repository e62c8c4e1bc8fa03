"""Running a built accelerator on a board from the host."""
