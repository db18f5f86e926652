"""Bottom floor: the CDR contract, the numbering plan and every feature definition.

Nothing here imports ``models``, ``streaming`` or ``pipeline``.
"""
