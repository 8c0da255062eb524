"""bnutils: the code behind the executable book on why batch normalization works.

Modules follow the book's concepts: ``bn`` (the transform and its variants), ``data``,
``models``, ``train``, one module per measurement, ``plotting``, ``profiles``, ``report``,
``cache`` and ``cli`` (``python -m bnutils``).
"""
__version__ = "0.1.0"
