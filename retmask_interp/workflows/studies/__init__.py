"""The studies: each a sequence of resumable stages (``core.stages``) run into one directory, with its settings as
a config dataclass (the ``retmask study`` commands are generated from it)."""
